"""Where a first apply's time goes on Qdrant Edge, part by part, against the bare upsert.

Usage: ``python -m bench.edge_profile [N] [--repeat R]`` (default 10,000 flows, 3 runs).

Each run applies ``N`` new flows (``bench/flows.py``) into a new store and times, by wrapping
them, the parts of the engine's work: creating the shard and its payload indexes, planning
(snapshot, checksums, plan), the registry digest, embedding, building the Edge payloads, building
the ``Point`` objects (vectors and payloads handed to Edge), Edge's updates, and the rest (the
write loop, checkpoints, the free-space check). The wrappers cost about 1.6 microseconds a
call, and some are called once per flow: the apply itself (``first apply``, which the ratios
use) is timed in a run of its own without them, next to each timed run. Then the floors on the
same data: the bare batched upsert of ``bench_sync`` (points built before the clock starts,
with every payload field a key of its own), and the same with the points built from the vectors
and the payloads as stored in Edge inside the clock, with the part of it spent building the
points (the difference of the two floors is not that part: the first upserts larger payloads).
Prints each part's median wall and CPU seconds and its share of the parts' sum.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from bench.flows import make_registry
from bench.measure import make_embedder
from flowreg.embed.base import CountingEmbedder
from flowreg.flow import point_id
from flowreg.store import open_store, payload_of
from flowreg.store.edge import pack
from flowreg.sync import SyncEngine


class Timer:
    """Wall and CPU seconds spent in wrapped callables, by part (nested parts excluded)."""

    def __init__(self) -> None:
        self.wall: defaultdict[str, float] = defaultdict(float)
        self.cpu: defaultdict[str, float] = defaultdict(float)
        self._stack: list[str] = []

    def enter(self, part: str) -> tuple[float, float]:
        self._stack.append(part)
        return time.perf_counter(), time.process_time()

    def leave(self, started: tuple[float, float]) -> None:
        wall, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
        part = self._stack.pop()
        self.wall[part] += wall
        self.cpu[part] += cpu
        if self._stack:  # the enclosing part does not count it twice
            self.wall[self._stack[-1]] -= wall
            self.cpu[self._stack[-1]] -= cpu

    def sync(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = self.enter(part)
            try:
                return fn(*args, **kwargs)
            finally:
                self.leave(started)
        return timed

    def coro(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = self.enter(part)
            try:
                return await fn(*args, **kwargs)
            finally:
                self.leave(started)
        return timed


class _Edge:
    """The ``qdrant_edge`` module as the store sees it, with ``Point`` timed."""

    def __init__(self, module: Any, timer: Timer) -> None:
        self._module = module
        self.Point = timer.sync("build Edge points (vectors, payloads)", module.Point)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


class _Shard:
    """An Edge shard with ``update`` timed."""

    def __init__(self, shard: Any, timer: Timer) -> None:
        self._shard = shard
        self.update = timer.sync("Edge updates", shard.update)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._shard, name)


async def profiled_apply(n: int) -> tuple[float, float, Timer]:
    """One first apply of ``n`` flows into a new store: (wall, CPU, parts)."""
    timer = Timer()
    with tempfile.TemporaryDirectory(prefix="bench-edge-profile-",
                                     ignore_cleanup_errors=True) as location:
        return await _profiled_apply(n, open_store(location), timer)


async def _profiled_apply(n: int, store: Any, timer: Timer) -> tuple[float, float, Timer]:
    import flowreg.store.edge as edge_module
    import flowreg.sync as sync_module

    engine = SyncEngine(store, CountingEmbedder(make_embedder("hashing", None)))
    store._q = _Edge(store._q, timer)  # type: ignore[attr-defined]
    create = store._create  # type: ignore[attr-defined]

    async def create_shard(dimension: int) -> None:
        await create(dimension)
        store._shard = _Shard(store._shard, timer)  # type: ignore[attr-defined]

    store._create = timer.coro("create the shard and its indexes", create_shard)  # type: ignore
    engine._plan = timer.coro("plan (snapshot, checksums)", engine._plan)  # type: ignore
    engine.embedder.inner.embed = timer.coro(  # type: ignore[method-assign]
        "embed", engine.embedder.inner.embed)
    originals = (sync_module.registry_digest, sync_module.payload_of, edge_module.pack)
    sync_module.registry_digest = timer.sync("registry digest", sync_module.registry_digest)
    sync_module.payload_of = timer.sync("build payloads (payload_of, pack)",
                                        sync_module.payload_of)
    edge_module.pack = timer.sync("build payloads (payload_of, pack)", edge_module.pack)
    registry = make_registry(n)
    try:
        started = timer.enter("the rest (write loop, checkpoints, space check)")
        await engine.apply(registry)
        timer.leave(started)
    finally:
        sync_module.registry_digest, sync_module.payload_of, edge_module.pack = originals
        await store.close()
    return (sum(timer.wall.values()), sum(timer.cpu.values()), timer)


async def plain_apply(n: int) -> tuple[float, float]:
    """One first apply of ``n`` flows into a new store, nothing wrapped: (wall, CPU)."""
    registry = make_registry(n)
    with tempfile.TemporaryDirectory(prefix="bench-edge-profile-",
                                     ignore_cleanup_errors=True) as location:
        store = open_store(location)
        engine = SyncEngine(store, CountingEmbedder(make_embedder("hashing", None)))
        try:
            wall, cpu = time.perf_counter(), time.process_time()
            await engine.apply(registry)
            return time.perf_counter() - wall, time.process_time() - cpu
        finally:
            await store.close()


def floors(n: int) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
    """(wall, CPU) of the bare batched upsert with the points built before the clock starts
    (``bench_sync``'s floor: the payloads as ``payload_of`` makes them, every field a key),
    and with them built inside it from the vectors and the payloads as flowreg stores them
    in Edge (``pack``); then the part of the latter spent building the points."""
    import qdrant_edge as q

    registry = make_registry(n)
    embedder = make_embedder("hashing", None)
    vectors = embedder.embed_many([f.embedding_text for f in registry.flows])
    ids = [point_id(registry.agent_id, f.name) for f in registry.flows]
    raw = [payload_of(f, registry.agent_id, registry.owner, embedder.identity)
           for f in registry.flows]
    config = q.EdgeConfig(vectors=q.EdgeVectorParams(size=384, distance=q.Distance.Cosine))
    results = []
    building = [0.0, 0.0]
    for built_inside in (False, True):
        with tempfile.TemporaryDirectory(prefix="bench-edge-floor-",
                                         ignore_cleanup_errors=True) as location:
            shard = q.EdgeShard.create(location + "/floor", config)
            payloads = [pack(p) for p in raw] if built_inside else raw
            points = None if built_inside else [
                q.Point(i, v, p) for i, v, p in zip(ids, vectors, payloads, strict=True)]
            wall, cpu = time.perf_counter(), time.process_time()
            for start in range(0, n, 100):
                if points is not None:
                    batch = points[start:start + 100]
                else:
                    build = time.perf_counter(), time.process_time()
                    batch = [q.Point(i, v, p) for i, v, p in zip(ids[start:start + 100],
                                                                 vectors[start:start + 100],
                                                                 payloads[start:start + 100],
                                                                 strict=True)]
                    building[0] += time.perf_counter() - build[0]
                    building[1] += time.process_time() - build[1]
                shard.update(q.UpdateOperation.upsert_points(batch))
            results.append((time.perf_counter() - wall, time.process_time() - cpu))
            shard.close()
    return results[0], results[1], (building[0], building[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import numpy  # noqa: F401  (imported before the clock, as in bench_sync's process)

    runs: list[tuple[float, float, Timer]] = []
    plain: list[tuple[float, float]] = []
    floor: list[tuple[float, float]] = []
    built: list[tuple[float, float]] = []
    building: list[tuple[float, float]] = []
    for _ in range(max(1, args.repeat)):
        runs.append(asyncio.run(profiled_apply(args.n)))
        plain.append(asyncio.run(plain_apply(args.n)))
        bare, inside, points = floors(args.n)
        floor.append(bare)
        built.append(inside)
        building.append(points)
    timed = statistics.median(r[0] for r in runs)
    timed_cpu = statistics.median(r[1] for r in runs)
    wall = statistics.median(r[0] for r in plain)
    cpu = statistics.median(r[1] for r in plain)
    parts = sorted({p for r in runs for p in r[2].wall}, key=lambda p: -statistics.median(
        r[2].wall.get(p, 0.0) for r in runs))
    print(f"# first apply of {args.n} flows on Qdrant Edge, medians of {len(runs)} runs")
    print(f"{'part':52s} {'wall s':>8} {'share':>6} {'CPU s':>8}")
    for part in parts:
        w = statistics.median(r[2].wall.get(part, 0.0) for r in runs)
        c = statistics.median(r[2].cpu.get(part, 0.0) for r in runs)
        print(f"{part:52s} {w:8.3f} {w / timed:6.1%} {c:8.3f}")
    print(f"{'the parts (apply with the parts wrapped)':52s} {timed:8.3f} {1:6.0%} "
          f"{timed_cpu:8.3f}")
    print(f"{'first apply (nothing wrapped)':52s} {wall:8.3f} {'':6} {cpu:8.3f}")
    fw, fc = (statistics.median(x[i] for x in floor) for i in (0, 1))
    bw, bc = (statistics.median(x[i] for x in built) for i in (0, 1))
    print(f"{'floor: bare batched upsert (points built before)':52s} {fw:8.3f} {'':6} {fc:8.3f}")
    print(f"{'floor: bare batched upsert, building the points':52s} {bw:8.3f} {'':6} {bc:8.3f}")
    pw, pc = (statistics.median(x[i] for x in building) for i in (0, 1))
    print(f"{'  of which building the points':52s} {pw:8.3f} {'':6} {pc:8.3f}")
    print(f"first apply / bare upsert: {wall / fw:.2f}x wall, {cpu / fc:.2f}x CPU; "
          f"/ bare upsert building the points: {wall / bw:.2f}x wall, {cpu / bc:.2f}x CPU")


if __name__ == "__main__":
    main()
