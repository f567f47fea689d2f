"""flowreg on its embedded default, Qdrant Edge in a directory, phase by phase.

Phases: first apply, no-op re-apply (median of ``repeat``, interleaved with the floor), 1%
changed, the floors (a bare scroll of the same payload subset straight from the shard, a bare
batched upsert of precomputed vectors into a new shard), and a cold open + snapshot of the
store in a fresh process (interpreter start-up excluded, imports included). With the hashing
embedder, no-op re-applies in fresh processes too: of the one registry, and of the same N flows
split into ``REGISTRIES`` registries of one agent (all of them in one process, and one of them
alone), each with the process's own peak RSS.
"""

from __future__ import annotations

import gc
import json
import resource
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.flows import as_read, change_one_percent, make_registry, split_registry
from bench.measure import Phase, make_embedder, median
from flowreg.embed.base import CountingEmbedder
from flowreg.flow import point_id
from flowreg.store import SNAPSHOT_FIELDS, open_store, payload_of
from flowreg.store.edge import pack
from flowreg.sync import SyncEngine

REGISTRIES = 5


async def several_registries(n: int) -> list[dict[str, Any]]:
    """No-op re-applies in fresh processes of ``n`` flows held by ``REGISTRIES`` registries."""
    with tempfile.TemporaryDirectory(prefix="bench-edge-several-",
                                     ignore_cleanup_errors=True) as location:
        return await _several_registries(n, location)


async def _several_registries(n: int, location: str) -> list[dict[str, Any]]:
    store = open_store(location)
    engine = SyncEngine(store, make_embedder("hashing", None))
    for registry in split_registry(make_registry(n), REGISTRIES):
        await engine.apply(registry)
    await store.close()
    results = []
    for scope in ("all", "one"):
        out = json.loads(subprocess.run(
            [sys.executable, "-m", "bench.edge_several", location, str(n), str(REGISTRIES), scope],
            capture_output=True, text=True, check=True).stdout)
        assert out["changes"] == 0
        what = (f"all {REGISTRIES} registries" if scope == "all"
                else f"1 of {REGISTRIES} registries")
        results.append({"phase": f"no-op, {what} (new process)", "wall": out["wall"],
                        "emb_calls": 0, "emb_texts": 0, "q_calls": 0, "q_writes": 0,
                        "rss_mib": out["rss_mib"]})
    return results


async def run_edge(n: int, embedder_kind: str, url: str | None, location: str,
                   page_sizes: Sequence[int] = (), repeat: int = 5) -> list[dict[str, Any]]:
    if location == ":memory:":  # a directory of its own, removed at the end
        with tempfile.TemporaryDirectory(prefix="bench-edge-",
                                         ignore_cleanup_errors=True) as location:
            return await run_edge(n, embedder_kind, url, location, page_sizes, repeat)
    store = open_store(location)
    counts = store.stats.calls
    emb = CountingEmbedder(make_embedder(embedder_kind, url))
    engine = SyncEngine(store, emb)
    registry = make_registry(n)
    with Phase("first apply", counts, emb) as first:
        await engine.apply(registry)
    results = [first.result()]
    noops: list[dict[str, Any]] = []
    floors: list[dict[str, Any]] = []
    readings: list[dict[str, Any]] = []
    shard: Any = store._shard  # the floor reads the engine's own shard, bypassing flowreg
    import qdrant_edge as q

    for _ in range(max(1, repeat)):
        registry = make_registry(n)
        with Phase("reading: content checksums", counts, emb) as phase:
            as_read(registry)
        readings.append(phase.result())
        with Phase("no-op re-apply", counts, emb) as phase:
            await engine.apply(registry)
        noops.append(phase.result())
        del registry
        gc.disable()
        with Phase("floor: bare scroll", counts, emb) as phase:
            offset: Any = None
            pages = []
            while True:
                records, offset = shard.scroll(q.ScrollRequest(
                    offset=offset, limit=store.page_size, with_payload=SNAPSHOT_FIELDS,
                    with_vector=False))
                pages.append([(str(r.id), r.payload) for r in records])
                if offset is None:
                    break
            read = sum(map(len, pages))
            del pages, records
        gc.enable()
        assert read == n + 1  # the flows and the registry's digest point
        floors.append(phase.result())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    registry = change_one_percent(make_registry(n))
    with Phase("1% changed", counts, emb) as phase:
        await engine.apply(registry)
    results += [{**median(noops), "rss_mib": rss}, phase.result(), median(floors),
                median(readings)]
    await store.close()
    cold = json.loads(subprocess.run([sys.executable, "-m", "bench.edge_cold", location,
                                      "bench_agent"],
                                     capture_output=True, text=True, check=True).stdout)
    assert cold["points"] == n
    results.append({"phase": "cold open + snapshot (new process)", "wall": cold["wall"],
                    "emb_calls": 0, "emb_texts": 0, "q_calls": 0, "q_writes": 0})
    if embedder_kind == "hashing":
        noop = json.loads(subprocess.run(
            [sys.executable, "-m", "bench.edge_noop", location, str(n)],
            capture_output=True, text=True, check=True).stdout)
        assert noop["changes"] == 0
        results.append({"phase": "no-op re-apply (new process)", "wall": noop["wall"],
                        "emb_calls": 0, "emb_texts": 0, "q_calls": 0, "q_writes": 0,
                        "rss_mib": noop["rss_mib"]})
        results.extend(await several_registries(n))
    registry = make_registry(n)
    vectors = await emb.inner.embed([f.embedding_text for f in registry.flows])
    points = [q.Point(point_id(registry.agent_id, f.name), v,
                      payload_of(f, registry.agent_id, registry.owner, emb.identity))
              for f, v in zip(registry.flows, vectors, strict=True)]
    floor = q.EdgeShard.create(str(Path(location) / "floor"), q.EdgeConfig(
        vectors=q.EdgeVectorParams(size=384, distance=q.Distance.Cosine)))
    with Phase("floor: bare batched upsert", counts, emb) as phase:
        for i in range(0, len(points), 100):
            floor.update(q.UpdateOperation.upsert_points(points[i:i + 100]))
    results.append(phase.result())
    floor.close()
    # The same with the points built inside the clock, from the vectors and the payloads as
    # flowreg stores them on Edge: what any client of Edge pays to hand it its data.
    ids = [point_id(registry.agent_id, f.name) for f in registry.flows]
    payloads = [pack(payload_of(f, registry.agent_id, registry.owner, emb.identity))
                for f in registry.flows]
    del points
    floor = q.EdgeShard.create(str(Path(location) / "floor-built"), q.EdgeConfig(
        vectors=q.EdgeVectorParams(size=384, distance=q.Distance.Cosine)))
    with Phase("floor: bare batched upsert, building the points", counts, emb) as phase:
        for i in range(0, len(ids), 100):
            floor.update(q.UpdateOperation.upsert_points([
                q.Point(pid, vector, payload) for pid, vector, payload in
                zip(ids[i:i + 100], vectors[i:i + 100], payloads[i:i + 100], strict=True)]))
    results.append(phase.result())
    floor.close()
    await emb.aclose()
    results[0]["rss_mib"] = rss
    return results
