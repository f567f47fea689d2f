"""Laws of the plan, checked by property-based tests.

Pure: for any declaration and any stored state, ``plan_sync`` never touches another owner's
points, and simulating its changes gives a state equal to the declaration, on which planning
again gives only skips. Real: the same laws hold when the engine applies plans to Qdrant.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowreg.embed import HashingEmbedder
from flowreg.flow import DeclaredFlows, Flow, StoredPoint, SyncPolicy, point_id
from flowreg.plan import Plan, VectorSource, plan_sync
from flowreg.store import FlowStore, PointWrite, payload_of
from flowreg.sync import SyncEngine
from tests.support.stores import backends, drop, open_backend

_NO_DEADLINE = settings(deadline=None)
"""The laws hold whatever a busy machine makes of an example's time; a deadline would only
measure the machine."""

AGENT, OWNER, OTHER = "agent", "ns/mine", "ns/theirs"
EMBEDDER = "hashing-v1/384"
NAMES = st.sampled_from([f"f{i}" for i in range(8)])
TEXTS = st.sampled_from(["pay a bill", "check balance", "refund", "freeze card"])


@st.composite
def flows(draw: st.DrawFn) -> Flow:
    return Flow(name=draw(NAMES), description=draw(TEXTS),
                examples=tuple(draw(st.lists(TEXTS, max_size=2))),
                conditions=tuple(draw(st.lists(st.sampled_from(["a", "b"]), max_size=1))))


def registries(owner: str = OWNER) -> st.SearchStrategy[DeclaredFlows]:
    return st.lists(flows(), max_size=6, unique_by=lambda f: f.name).map(
        lambda fs: DeclaredFlows(AGENT, owner, tuple(fs)))


@st.composite
def stored_points(draw: st.DrawFn, declared: DeclaredFlows | None = None) -> list[StoredPoint]:
    """Points of any owner, agent, model and id; with ``declared``, many hold a declared flow
    as it is declared (the state a plan skips, unless owner, agent, model or id say no)."""
    points = []
    source = flows() if declared is None or not declared.flows \
        else flows() | st.sampled_from(declared.flows)
    for _ in range(draw(st.integers(0, 8))):
        flow = draw(source)
        owner = draw(st.sampled_from([OWNER, OWNER, OTHER, None]))
        canonical = draw(st.booleans())
        agent = draw(st.sampled_from([AGENT, AGENT, "other-agent"]))
        points.append(StoredPoint(
            id=point_id(agent, flow.name) if canonical else str(uuid.uuid4()),
            agent_id=agent,
            name=flow.name, owner=owner, checksum=flow.content_checksum,
            text_checksum=flow.text_checksum,
            embedder=draw(st.sampled_from([EMBEDDER, EMBEDDER, "old-model/384"]))))
    # One point per id, as in a real collection.
    return list({p.id: p for p in points}.values())


@st.composite
def states(draw: st.DrawFn) -> tuple[DeclaredFlows, list[StoredPoint]]:
    """A declaration and a store that may already hold some of it."""
    registry = draw(registries())
    return registry, draw(stored_points(registry))


def simulate(plan: Plan, points: list[StoredPoint]) -> list[StoredPoint]:
    """The stored points after the plan's changes."""
    by_id = {p.id: p for p in points}
    for removal in plan.deletes:
        by_id.pop(removal.point_id, None)
    for write in plan.writes:
        by_id[write.point_id] = StoredPoint(
            write.point_id, plan.agent_id, write.flow.name, plan.owner,
            write.flow.content_checksum, write.flow.text_checksum, plan.embedder)
    return list(by_id.values())


IDS = pytest.mark.parametrize("verify_ids", [True, False], ids=["verify-ids", "trust-ids"])


@IDS
@_NO_DEADLINE
@given(states())
def test_applying_a_plan_makes_the_store_equal_the_declaration(verify_ids, state):
    registry, points = state
    plan = plan_sync(registry, points, EMBEDDER, verify_ids=verify_ids)
    after = simulate(plan, points)
    conflicted = {c.name for c in plan.conflicts}
    # A declared name another owner holds is a conflict: nothing of that name is touched.
    ours = [p for p in after if p.owner == OWNER and p.agent_id == AGENT
            and p.name not in conflicted]
    expected = {f.name: f.content_checksum for f in registry.flows if f.name not in conflicted}
    assert {p.name: p.checksum for p in ours} == expected
    assert len(ours) == len(expected)
    if verify_ids:
        assert all(p.id == point_id(AGENT, p.name) for p in ours)
    else:  # a point off its id is trusted only as it was: current and alone under its name
        assert all(p.id == point_id(AGENT, p.name) or p in points for p in ours)
    before = sorted(p for p in points if p.name in conflicted and p.agent_id == AGENT)
    assert sorted(p for p in after if p.name in conflicted and p.agent_id == AGENT) == before


@IDS
@_NO_DEADLINE
@given(states())
def test_planning_again_after_applying_gives_only_skips(verify_ids, state):
    registry, points = state
    after = simulate(plan_sync(registry, points, EMBEDDER, verify_ids=verify_ids), points)
    again = plan_sync(registry, after, EMBEDDER, verify_ids=verify_ids)
    assert again.is_noop
    conflicted = {c.name for c in again.conflicts}
    assert set(again.skips) == {f.name for f in registry.flows} - conflicted


@IDS
@_NO_DEADLINE
@given(states())
def test_other_owners_and_agents_are_never_touched(verify_ids, state):
    registry, points = state
    plan = plan_sync(registry, points, EMBEDDER, verify_ids=verify_ids)
    foreign = {p.id for p in points if p.owner != OWNER or p.agent_id != AGENT}
    assert foreign.isdisjoint(r.point_id for r in plan.deletes)
    assert foreign.isdisjoint(w.point_id for w in plan.writes)
    held = {p.name for p in points if p.agent_id == AGENT and p.owner != OWNER}
    assert {c.name for c in plan.conflicts} == held & {f.name for f in registry.flows}


@IDS
@_NO_DEADLINE
@given(states())
def test_only_changed_text_or_model_is_embedded(verify_ids, state):
    registry, points = state
    plan = plan_sync(registry, points, EMBEDDER, verify_ids=verify_ids)
    vectors = {(p.text_checksum, p.embedder) for p in points
               if p.owner == OWNER and p.agent_id == AGENT}
    for write in plan.writes:
        if write.vector is VectorSource.EMBED:
            assert (write.flow.text_checksum, EMBEDDER) not in vectors


@_NO_DEADLINE
@given(states())
def test_an_empty_or_unpruned_plan_never_loses_undeclared_flows(state):
    registry, points = state
    plan = plan_sync(registry, points, EMBEDDER, SyncPolicy(prune=False))
    declared = {f.name for f in registry.flows}
    assert all(r.name in declared for r in plan.deletes)


def test_a_point_off_its_id_is_moved_by_a_verifying_plan_and_trusted_otherwise():
    flow = Flow("refund", "refund a payment")
    stray = StoredPoint(str(uuid.uuid4()), AGENT, "refund", OWNER, flow.content_checksum,
                        flow.text_checksum, EMBEDDER)
    registry = DeclaredFlows(AGENT, OWNER, (flow,))
    assert plan_sync(registry, [stray], EMBEDDER, verify_ids=False).skips == ("refund",)
    moved = plan_sync(registry, [stray], EMBEDDER)
    [write] = moved.creates
    assert write.point_id == point_id(AGENT, "refund") and write.copy_from == stray.id
    assert [r.point_id for r in moved.deletes] == [stray.id] and moved.embed_count == 0


def test_a_rename_moves_the_point_without_embedding():
    flow = Flow("old_name", "pay a bill", ("pay my bill",))
    stored = [StoredPoint(point_id(AGENT, "old_name"), AGENT, "old_name", OWNER,
                          flow.content_checksum, flow.text_checksum, EMBEDDER)]
    renamed = Flow("new_name", "pay a bill", ("pay my bill",))
    plan = plan_sync(DeclaredFlows(AGENT, OWNER, (renamed,)), stored, EMBEDDER)
    assert plan.renames == (("old_name", "new_name"),)
    [write] = plan.creates
    assert write.vector is VectorSource.COPY and write.copy_from == stored[0].id
    assert plan.embed_count == 0 and not plan.pruned


# --- the same laws on every store backend, through the engine ---------------------------


class Point:
    """A stored point as the laws compare it."""

    def __init__(self, id: str, payload: dict, vector: list[float]) -> None:
        self.id, self.payload, self.vector = id, payload, vector


async def _points(store: FlowStore) -> list[Point]:
    ids = [p.id for p in await store.snapshot(AGENT)]
    payloads, vectors = await store.payloads(ids), await store.vectors(ids)
    return [Point(i, payloads[i], [round(x, 5) for x in vectors[i]]) for i in ids]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=registries(), second=registries(), theirs=registries(OTHER),
       duplicates=st.lists(NAMES, max_size=3))
@pytest.mark.parametrize("kind", backends())
def test_engine_converges_and_never_touches_another_registry(kind, first, second, theirs,
                                                             duplicates):
    async def run(tmp: str) -> None:
        store = open_backend(kind, Path(tmp))
        engine = SyncEngine(store, HashingEmbedder(), batch_size=3)
        other = SyncEngine(store, HashingEmbedder())
        await other.apply(theirs)
        foreign = {str(r.id): (r.payload, r.vector) for r in await _points(store)}
        await engine.apply(first)
        # Extra points for one name, as a buggy writer could leave.
        decl = first.by_name()
        extra = [PointWrite(
            str(uuid.uuid4()), payload_of(decl[n], AGENT, OWNER, EMBEDDER),
            HashingEmbedder().embed_one(decl[n].embedding_text))
            for n in duplicates if n in decl]
        await store.write(extra, [])
        policy = SyncPolicy(max_deletions=None, allow_empty=True)
        report = await engine.apply(second, policy)
        records = await _points(store)
        conflicted = {c["flow"] for c in report.conflicts}
        mine = [r for r in records if r.payload["owner"] == OWNER
                and r.payload["name"] not in conflicted]
        expected = {f.name: f.content_checksum for f in second.flows if f.name not in conflicted}
        assert {r.payload["name"]: r.payload["checksum"] for r in mine} == expected
        assert len(mine) == len(expected)  # one point per name: duplicates removed
        assert all(str(r.id) == point_id(AGENT, r.payload["name"]) for r in mine)
        now = {str(r.id): (r.payload, r.vector) for r in records}
        assert all(now.get(pid) == before for pid, before in foreign.items())
        again = await engine.apply(second, policy)
        assert again.change_count == 0 and again.store_writes == 0
        assert again.embedded_texts == 0
        await drop(store)

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(tmp))


@pytest.mark.parametrize("kind", backends())
def test_engine_rename_reuses_the_vector(kind, tmp_path):
    async def run() -> None:
        store = open_backend(kind, tmp_path)
        engine = SyncEngine(store, HashingEmbedder())
        flow = Flow("old_name", "pay a bill", ("pay my bill",))
        await engine.apply(DeclaredFlows(AGENT, OWNER, (flow,)))
        [before] = await _points(store)
        renamed = Flow("new_name", flow.description, flow.examples)
        report = await engine.apply(DeclaredFlows(AGENT, OWNER, (renamed,)))
        assert report.renamed == [{"from": "old_name", "to": "new_name"}]
        assert report.embedded_texts == 0 and report.created == [] and report.deleted == []
        [after] = await _points(store)
        assert after.payload["name"] == "new_name" and after.vector == before.vector
        assert str(after.id) == point_id(AGENT, "new_name")
        await drop(store)

    asyncio.run(run())
