"""Selection lint against real misroutes: do the pairs ``flowreg lint`` flags predict them?

Usage::

    python -m bench.selection_lint                       # both labelled sets, hashing+wordllama
    python -m bench.selection_lint --margins 0,0.05,0.1,0.15,0.2 --duplicates 0.8,0.85,0.9

For each embedder the example registry is applied to a fresh in-memory store and every
labelled query (bench/selection_queries.yaml, bench/selection_queries_alt.yaml) is run through
``SyncEngine.query``: a query whose first flow is not its label is a *misroute*, of the pair
{label, chosen}. The lint is run with the same embedder for each threshold setting; its
*flagged pairs* are the pairs of confusable examples and of near-duplicate flows. Prints, per
embedder, set and setting: the misroutes, how many fall on a flagged pair (coverage), the
flagged pairs, and how many of them caused no misroute (idle).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import yaml

from flowreg import lint, manifest
from flowreg.embed.factory import make_embedder
from flowreg.store import open_store
from flowreg.sync import SyncEngine

REPO = Path(__file__).resolve().parents[1]
SETS = ("selection_queries.yaml", "selection_queries_alt.yaml")


async def misroutes(kind: str, labelled: dict[str, Any]) -> tuple[int, list[tuple[str, str]]]:
    [decl] = manifest.load([str(REPO / labelled["manifest"])])
    engine = SyncEngine(open_store(":memory:"), make_embedder({"kind": kind}))
    await engine.apply(decl.registry)
    total, wrong = 0, []
    for expected, queries in labelled["queries"].items():
        for query in queries:
            [hit] = await engine.query(labelled["agent"], query, 1)
            total += 1
            if hit.payload["name"] != expected:
                wrong.append((expected, hit.payload["name"]))
    await engine.store.close()
    await engine.embedder.aclose()
    return total, wrong


async def flagged(kind: str, manifest_path: str,
                  settings: list[tuple[float, float]]) -> dict[tuple[float, float], set[Any]]:
    [decl] = manifest.load([str(REPO / manifest_path)])
    embedder = make_embedder({"kind": kind})
    flows = await embedder.embed([f.embedding_text for f in decl.registry.flows])
    examples = await embedder.embed(lint.example_texts(decl.registry))
    await embedder.aclose()
    out = {}
    for margin, duplicate in settings:
        options = lint.LintOptions(duplicate=duplicate, margin=margin, limit=10_000)
        report = lint.lint(decl.registry, flows, examples, options)
        out[(margin, duplicate)] = {frozenset(p.flows) for p in report.pairs}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--embedders", default="hashing,wordllama")
    parser.add_argument("--margins", default="0,0.05,0.1,0.15,0.2,0.25")
    parser.add_argument("--duplicates", default="0.8,0.9")
    args = parser.parse_args()
    settings = [(float(m), float(d)) for m in args.margins.split(",")
                for d in args.duplicates.split(",")]
    sets = [yaml.safe_load((REPO / "bench" / name).read_text()) for name in SETS]
    print(f"{'embedder':<10} {'set':<28} {'margin':>6} {'dup':>5} {'misroutes':>9} "
          f"{'covered':>8} {'flagged':>7} {'idle':>5}")
    for kind in args.embedders.split(","):
        pairs = asyncio.run(flagged(kind, sets[0]["manifest"], settings))
        routed = [asyncio.run(misroutes(kind, labelled)) for labelled in sets]
        for (margin, duplicate), flags in pairs.items():
            rows = [(name, total, wrong) for name, (total, wrong) in zip(SETS, routed,
                                                                        strict=True)]
            rows.append(("both", sum(t for _, t, _ in rows), [w for _, _, ws in rows
                                                                for w in ws]))
            for name, total, wrong in rows:
                hit = {frozenset(w) for w in wrong}
                covered = sum(frozenset(w) in flags for w in wrong)
                idle = len(flags - hit)
                print(f"{kind:<10} {name:<28} {margin:>6.2f} {duplicate:>5.2f} "
                      f"{len(wrong):>4}/{total:<4} {covered:>8} {len(flags):>7} {idle:>5}")
        for name, (_, wrong) in zip(SETS, routed, strict=True):
            print(f"  {kind} {name} misroutes: "
                  + ", ".join(f"{a}->{b}" for a, b in wrong))


if __name__ == "__main__":
    main()
