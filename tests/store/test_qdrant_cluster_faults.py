"""Node faults on a real three-peer Qdrant cluster (tests/support/qdrant_cluster.py): a peer
SIGKILLed mid-sync, a shard with its only replica down, a frozen peer, and a peer that rejoins
with a stale replica. In every case: no point lost, none duplicated, the report true."""

from __future__ import annotations

import asyncio
import time

import pytest

from flowreg.embed import HashingEmbedder
from flowreg.errors import StoreUnavailable
from flowreg.flow import DeclaredFlows, Flow
from flowreg.store import CollectionSettings, FlowStore, open_store
from flowreg.sync import SyncEngine
from tests.support.qdrant_cluster import QdrantCluster, cluster_available
from tests.support.qdrant_server import server_binary

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not cluster_available(),
                                 reason="no Qdrant server binary: run hack/qdrant.sh")]

COLLECTION = "flows"
RF2 = CollectionSettings(shards=3, replication_factor=2)


def registry(n: int, *, salt: str = "") -> DeclaredFlows:
    return DeclaredFlows("agent", "ns/reg", tuple(
        Flow(f"flow_{i:05d}", f"do thing {i}{salt if i % 10 == 0 else ''}", (f"please do {i}",))
        for i in range(n)))


@pytest.fixture
def cluster():
    binary = server_binary()
    assert binary is not None
    running = QdrantCluster(binary).start()
    yield running
    running.remove()


def store_on(cluster: QdrantCluster, settings: CollectionSettings | None = RF2, *,
             peer: int = 0, timeout: float = 30.0) -> FlowStore:
    node = cluster.nodes[peer]
    return open_store(f"http://127.0.0.1:{node.http_port}", COLLECTION, api_key=node.api_key,
                      settings=settings, timeout=timeout)


async def held(store: FlowStore) -> tuple[int, int, int]:
    """(points, distinct names, duplicate points) the store holds for the agent."""
    snapshot = await store.snapshot("agent")
    return len(snapshot), len({p.name for p in snapshot}), len(snapshot.more)


def assert_replicas_agree(cluster: QdrantCluster, total: int) -> None:
    """Every peer's local copy of every shard holds the same points, and the shards add up to
    ``total`` flows plus the registry's digest point: none lost, none twice."""
    per_shard: dict[int, set[int]] = {}
    for shards in cluster.local_counts(COLLECTION).values():
        for shard, count in shards.items():
            per_shard.setdefault(shard, set()).add(count)
    assert all(len(counts) == 1 for counts in per_shard.values()), per_shard
    assert sum(next(iter(c)) for c in per_shard.values()) == total + 1, per_shard
    copies = sum(len(s) for s in cluster.local_counts(COLLECTION).values())
    assert copies == 2 * len(per_shard)  # two replicas of each shard, each on its own peer


async def test_rf2_a_peer_killed_mid_sync_loses_nothing_and_the_next_sync_converges(cluster):
    reg = registry(5_000)
    store = store_on(cluster)
    engine = SyncEngine(store, HashingEmbedder(), batch_size=100)
    killed_at = []

    def kill_midway(checkpoint) -> None:
        if checkpoint.done >= 2_000 and not killed_at:
            killed_at.append(checkpoint.done)
            cluster.kill(2)

    try:
        first = await engine.apply(reg, progress=kill_midway)
        assert len(first.created) == 5_000 and first.points_written == 5_000
    except StoreUnavailable as exc:
        assert repr(COLLECTION) in str(exc)
    assert killed_at
    cluster.restart(2)
    cluster.wait_active(COLLECTION)
    embedded_before = engine.embedder.texts
    second = await engine.apply(reg)
    # whatever the first run wrote is not embedded again
    assert second.embedded_texts == len(second.created)
    assert engine.embedder.texts - embedded_before == len(second.created)
    assert len(second.created) + len(second.skipped) == 5_000
    assert await held(store) == (5_000, 5_000, 0)
    cluster.wait_active(COLLECTION)
    assert_replicas_agree(cluster, 5_000)
    await store.close()


async def test_rf1_with_a_shards_only_peer_down_is_store_unavailable_naming_the_collection(
        cluster):
    store = store_on(cluster, CollectionSettings(shards=3, replication_factor=1), timeout=10)
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(300))
    cluster.wait_active(COLLECTION)
    cluster.kill(2)
    texts = engine.embedder.texts
    with pytest.raises(StoreUnavailable) as failed:
        await engine.apply(registry(300, salt=" v2"))
    message = str(failed.value)
    assert f"collection {COLLECTION!r}" in message and "127.0.0.1" in message
    assert engine.embedder.texts == texts  # it failed reading: nothing embedded or reported
    cluster.restart(2)
    cluster.wait_active(COLLECTION)
    report = await engine.apply(registry(300, salt=" v2"))
    assert len(report.updated) == 30 and len(report.skipped) == 270
    assert await held(store) == (300, 300, 0)
    await store.close()


async def test_a_frozen_peer_gives_progress_or_a_clear_error_within_the_timeout(cluster):
    timeout = 5.0
    store = store_on(cluster, timeout=timeout)
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(1_000))
    cluster.wait_active(COLLECTION)
    cluster.freeze(2)
    started = time.monotonic()
    try:
        report = await engine.apply(registry(1_000, salt=" v2"))
        assert len(report.updated) == 100
    except StoreUnavailable as exc:
        assert f"collection {COLLECTION!r}" in str(exc)
    elapsed = time.monotonic() - started
    # each call waits at most the timeout; the plan reads in a few calls, the writes in one
    assert elapsed < 6 * timeout * cluster.slowdown
    cluster.thaw(2)
    cluster.wait_consensus()
    cluster.wait_active(COLLECTION)
    report = await engine.apply(registry(1_000, salt=" v2"))
    assert len(report.updated) + len(report.skipped) == 1_000
    again = await engine.apply(registry(1_000, salt=" v2"))
    assert again.change_count == 0 and again.store_writes == 0
    assert await held(store) == (1_000, 1_000, 0)
    await store.close()


async def test_a_peer_rejoining_with_a_stale_replica_leaves_a_no_op_a_no_op(cluster):
    store = store_on(cluster)
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(1_000))
    cluster.wait_active(COLLECTION)
    cluster.kill(2)
    # Written while peer 2 is down, by a writer reading from one replica (majority reads need
    # every replica of a shard to answer): peer 2's replicas miss these 100 updates.
    # With medium ordering, the first write to a shard whose ordering leader was peer 2 fails
    # once while a new leader is chosen; the next goes through.
    lenient = store_on(cluster, CollectionSettings(read_consistency=1), peer=0)
    writer = SyncEngine(lenient, HashingEmbedder())
    for _ in range(5):
        try:
            await writer.apply(registry(1_000, salt=" v2"))
            break
        except StoreUnavailable:
            await asyncio.sleep(1)
    assert (await writer.apply(registry(1_000, salt=" v2"))).change_count == 0
    await lenient.close()
    cluster.restart(2)
    outcomes = []
    deadline = time.monotonic() + 120 * cluster.slowdown
    while time.monotonic() < deadline:  # no-ops while peer 2 recovers, and once it has
        recovered = cluster.replicas_active(COLLECTION)
        texts = engine.embedder.texts
        try:
            report = await engine.apply(registry(1_000, salt=" v2"))
        except StoreUnavailable:
            outcomes.append("unavailable")
        else:
            outcomes.append("no-op")
            assert report.change_count == 0 and report.store_writes == 0, report.summary()
            assert report.embedding_calls == 0 and engine.embedder.texts == texts
            if recovered:
                break
    assert outcomes and outcomes[-1] == "no-op", outcomes
    assert_replicas_agree(cluster, 1_000)
    await store.close()
