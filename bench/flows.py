"""Synthetic, deterministic flow registries of realistic size for the benchmarks."""

from __future__ import annotations

import random

from flowreg.flow import DeclaredFlows, Flow

_TEXT = ("account balance payment refund card transfer invoice budget savings loan rate "
         "currency dispute limit statement deposit withdraw freeze replace confirm verify "
         "schedule cancel report summary tax receipt merchant subscription alert fraud")
WORDS = _TEXT.split()


def make_flow(i: int, rng: random.Random, salt: str = "") -> Flow:
    def sentence(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    steps = [{"id": f"s{k}", "handler": f"handlers.step_{k}",
              **({"next": f"s{k + 1}"} if k < 2 else {})} for k in range(3)]
    return Flow(
        name=f"flow_{i:06d}",
        description=f"{salt}Flow {i}: {sentence(15)}",
        examples=tuple(sentence(8) for _ in range(rng.randint(3, 5))),
        conditions=tuple(sentence(4) for _ in range(rng.randint(1, 2))),
        blueprint={"version": 1, "steps": steps},
    )


def make_registry(n: int, seed: int = 7, agent: str = "bench_agent") -> DeclaredFlows:
    rng = random.Random(seed)
    return DeclaredFlows(agent_id=agent, owner="bench/registry",
                    flows=tuple(make_flow(i, rng) for i in range(n)))


def as_read(registry: DeclaredFlows) -> DeclaredFlows:
    """``registry`` as a process holds it once it has read its manifest: every flow's content
    checksum computed (reading verifies each declared checksum against it, and a flow without
    one gets it there). What that costs is part of reading: ``reading_cost`` measures it, and
    ``bench_cli`` times whole processes."""
    for flow in registry.flows:
        flow.content_checksum  # noqa: B018 - computed and cached
    registry.names  # noqa: B018 - as reading gathers them
    registry.content_checksums  # noqa: B018
    return registry


def change_one_percent(registry: DeclaredFlows) -> DeclaredFlows:
    """Every hundredth flow gets a new description (so its text is re-embedded)."""
    flows = list(registry.flows)
    for i in range(0, len(flows), 100):
        f = flows[i]
        flows[i] = Flow(f.name, "changed: " + f.description, f.examples, f.conditions,
                        f.blueprint)
    return DeclaredFlows(registry.agent_id, registry.owner, tuple(flows))


def split_registry(registry: DeclaredFlows, k: int) -> list[DeclaredFlows]:
    """``registry``'s flows as ``k`` registries of the same agent (owners ``<owner>-<j>``)."""
    size = -(-len(registry.flows) // k)
    return [DeclaredFlows(registry.agent_id, f"{registry.owner}-{j}",
                     registry.flows[j * size:(j + 1) * size]) for j in range(k)]
