"""Benchmark: flowreg on one Qdrant server against a three-peer cluster, replication factor 2.

Usage::

    python -m bench.bench_cluster --sizes 10000,50000
    python -m bench.bench_cluster --sizes 10000 --orderings weak,medium,strong

Both run the binary hack/qdrant.sh builds (``$FLOWREG_QDRANT_BIN``) on loopback, started here:
one server, and three peers in cluster mode (tests/support/qdrant_cluster.py) with a
collection of three shards of two replicas, read with majority consistency and written with
medium ordering (flowreg's defaults on a cluster). For each N, on the same data and the hashing
embedder: first apply, no-op re-apply, 1%-changed re-apply (every hundredth flow gets a new
description), and the bare scroll as the no-op's floor (the payload subset flowreg reads, its
page size and read consistency). ``--orderings`` also times the first apply on the cluster with
each write ordering (at the smallest size), ``--reads`` runs the cluster's phases with other read
consistencies too. Prints one table and the targets' ratios
(cluster / single: no-op and first apply at most 2).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

from flowreg.embed import HashingEmbedder
from flowreg.flow import DeclaredFlows, Flow
from flowreg.store import SNAPSHOT_FIELDS, CollectionSettings, open_store
from flowreg.sync import SyncEngine

CLUSTER = CollectionSettings(shards=3, replication_factor=2)


def registry(n: int, salt: str = "") -> DeclaredFlows:
    return DeclaredFlows("agent", "bench/reg", tuple(
        Flow(f"flow_{i:06d}", f"Handle request kind {i}{salt if i % 100 == 0 else ''}",
             (f"please do thing {i}", f"I want {i} done"), ("user is authenticated",))
        for i in range(n)))


async def phases(url: str, key: str, n: int, settings: CollectionSettings | None,
                 ) -> dict[str, float]:
    store = open_store(url, f"bench_{uuid.uuid4().hex[:8]}", api_key=key, settings=settings,
                       timeout=120)
    engine = SyncEngine(store, HashingEmbedder())
    out: dict[str, float] = {}
    try:
        for name, reg in (("first", registry(n)), ("noop", registry(n)),
                          ("changed", registry(n, " v2"))):
            started = time.perf_counter()
            report = await engine.apply(reg)
            out[name] = time.perf_counter() - started
            out[f"{name}_writes"] = report.store_writes
        out["scroll"] = await bare_scroll(store)
    finally:
        client: Any = getattr(store, "client", None)
        if client is not None:
            await client.delete_collection(store.collection)
        await store.close()
    return out


async def bare_scroll(store: Any) -> float:
    """The whole collection's snapshot fields, flowreg's page size and read consistency."""
    read = await store._read()  # the consistency flowreg asks for on this server
    started = time.perf_counter()
    offset: Any = None
    while True:
        records, offset = await store.client.scroll(
            store.collection, limit=store.page_size, offset=offset, with_payload=SNAPSHOT_FIELDS,
            with_vectors=False, **read)
        del records
        if offset is None:
            return time.perf_counter() - started


async def first_apply(url: str, key: str, n: int, ordering: str) -> float:
    settings = CollectionSettings(shards=3, replication_factor=2, write_ordering=ordering)
    store = open_store(url, f"bench_{uuid.uuid4().hex[:8]}", api_key=key, settings=settings,
                       timeout=120)
    try:
        started = time.perf_counter()
        await SyncEngine(store, HashingEmbedder()).apply(registry(n))
        return time.perf_counter() - started
    finally:
        await store.client.delete_collection(store.collection)  # type: ignore[attr-defined]
        await store.close()


def main() -> None:
    from tests.support.qdrant_cluster import QdrantCluster
    from tests.support.qdrant_server import QdrantServer, server_binary

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,50000")
    parser.add_argument("--reads", default="",
                        help="comma-separated read consistencies (besides the default, "
                             "majority) to run the cluster's phases with too, e.g. 1,quorum")
    parser.add_argument("--orderings", default="",
                        help="comma-separated write orderings to time on the cluster")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    binary = server_binary()
    if binary is None:
        raise SystemExit("no Qdrant binary: run hack/qdrant.sh and set FLOWREG_QDRANT_BIN")
    single = QdrantServer(binary).start()
    cluster = QdrantCluster(binary).start()
    print(f"cluster of {len(cluster.nodes)} peers ready in {cluster.startup_seconds:.1f} s")
    rows: list[tuple[str, int, dict[str, float]]] = []
    try:
        for n in sizes:
            extra = [(f"cluster-rf2 reads {r}", cluster.endpoint,
                      CollectionSettings(shards=3, replication_factor=2,
                                         read_consistency=int(r) if r.isdigit() else r))
                     for r in args.reads.split(",") if r]
            for name, endpoint, settings in (("single", single.endpoint, None),
                                             ("cluster-rf2", cluster.endpoint, CLUSTER),
                                             *extra):
                result = asyncio.run(phases(endpoint.url, endpoint.api_key or "", n, settings))
                rows.append((name, n, result))
                print(f"{name:<22} N={n:>6}  first {result['first']:7.2f} s  "
                      f"no-op {result['noop']:6.3f} s  1% changed {result['changed']:6.3f} s  "
                      f"bare scroll {result['scroll']:6.3f} s", flush=True)
        for ordering in [o for o in args.orderings.split(",") if o]:
            for n in sizes[:1]:  # the smallest size only
                seconds = asyncio.run(first_apply(cluster.endpoint.url,
                                                  cluster.endpoint.api_key or "", n, ordering))
                print(f"cluster-rf2 write ordering {ordering:<6} N={n:>6}  first apply "
                      f"{seconds:7.2f} s", flush=True)
    finally:
        cluster.remove()
        single.remove()
    print("\ntargets (cluster / single, at most 2):")
    for n in sizes:
        one = next(r for name, size, r in rows if name == "single" and size == n)
        three = next(r for name, size, r in rows if name == "cluster-rf2" and size == n)
        for phase in ("first", "noop", "changed", "scroll"):
            print(f"  N={n:>6} {phase:<8} {three[phase] / one[phase]:5.2f}x")


if __name__ == "__main__":
    main()
