"""Selection quality: how often a user's query selects the right flow, per embedder.

Usage::

    python -m bench.selection_quality
    FLOWREG_EMBEDDING_URL=http://127.0.0.1:11434/v1 FLOWREG_EMBEDDING_MODEL=nomic-embed-text \\
        python -m bench.selection_quality      # adds an OpenAI-compatible endpoint

For each embedder the example registry is applied to a fresh in-memory store, then every
labelled query of bench/selection_queries.yaml is run through ``SyncEngine.query``; prints top-1
and top-3 accuracy, the mean time per query, and the misses.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import yaml

from flowreg import manifest
from flowreg.embed.factory import make_embedder
from flowreg.store import open_store
from flowreg.sync import SyncEngine

REPO = Path(__file__).resolve().parents[1]


async def measure(kind: str, config: dict[str, Any], labelled: dict[str, Any]) -> dict[str, Any]:
    [decl] = manifest.load([str(REPO / labelled["manifest"])])
    engine = SyncEngine(open_store(":memory:"), make_embedder(config))
    await engine.apply(decl.registry)
    top1 = top3 = total = 0
    misses: list[str] = []
    started = time.perf_counter()
    for expected, queries in labelled["queries"].items():
        for query in queries:
            hits = [h.payload["name"] for h in await engine.query(labelled["agent"], query, 3)]
            total += 1
            top1 += hits[:1] == [expected]
            top3 += expected in hits
            if hits[:1] != [expected]:
                misses.append(f"{query!r} -> {hits[:1]} (want {expected})")
    per_query = (time.perf_counter() - started) / total
    await engine.store.close()
    await engine.embedder.aclose()
    return {"embedder": kind, "top1": top1 / total, "top3": top3 / total, "queries": total,
            "ms_per_query": per_query * 1000, "misses": misses}


def main() -> None:
    labelled = yaml.safe_load((REPO / "bench" / "selection_queries.yaml").read_text())
    embedders: list[tuple[str, dict[str, Any]]] = [("hashing", {"kind": "hashing"}),
                                                   ("wordllama", {"kind": "wordllama"})]
    url, model = os.environ.get("FLOWREG_EMBEDDING_URL"), os.environ.get("FLOWREG_EMBEDDING_MODEL")
    if url and model:
        embedders.append((f"openai:{model}", {"kind": "openai", "url": url, "model": model}))
    results = [asyncio.run(measure(kind, config, labelled)) for kind, config in embedders]
    print(f"{'embedder':<24} {'top-1':>6} {'top-3':>6} {'queries':>8} {'ms/query':>9}")
    for r in results:
        print(f"{r['embedder']:<24} {r['top1']:>6.0%} {r['top3']:>6.0%} {r['queries']:>8} "
              f"{r['ms_per_query']:>9.2f}")
    for r in results:
        print(f"\n{r['embedder']} top-1 misses ({len(r['misses'])}):")
        for miss in r["misses"]:
            print(f"  {miss}")


if __name__ == "__main__":
    main()
