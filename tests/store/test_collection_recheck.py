"""A store that trusts its collection for ``collection_recheck`` seconds (the operator's): an
unchanged registry's re-sync is one read, and a collection deleted behind its back is found and
recreated by the same sync."""

from __future__ import annotations

from typing import Any

import pytest

from flowreg import sync
from flowreg.embed import HashingEmbedder
from flowreg.errors import StoreIncompatible
from flowreg.flow import DeclaredFlows, Flow
from flowreg.store import FlowStore
from flowreg.sync import SyncEngine


def registry(n: int) -> DeclaredFlows:
    return DeclaredFlows("agent", "ns/reg", tuple(
        Flow(f"flow_{i:03d}", f"do thing {i}", (f"please do {i}",), ()) for i in range(n)))


async def test_a_trusted_collection_makes_a_noop_resync_one_read(store: FlowStore):
    store.collection_recheck = 60.0
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(10))
    calls = store.stats.calls.copy()
    report = await engine.apply(registry(10))
    assert report.digest == "matched"
    assert store.stats.calls - calls == {"read_digest": 1}


async def test_without_recheck_every_sync_asks(store: FlowStore):
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(3))
    calls = store.stats.calls.copy()
    await engine.apply(registry(3))
    assert (store.stats.calls - calls)["get_collection"] == 1


async def test_a_failed_call_makes_the_next_sync_ask_again(store: FlowStore):
    store.collection_recheck = 60.0
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(3))
    assert store.knows_collection(await engine.dimension())

    async def broken() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await store._call("scroll", broken())
    assert not store.knows_collection(await engine.dimension())
    calls = store.stats.calls.copy()
    await engine.apply(registry(3))
    assert (store.stats.calls - calls)["get_collection"] == 1


async def synced_then_deleted(store: FlowStore) -> tuple[SyncEngine, Any]:
    """An engine whose store trusts its collection, 5 flows synced, then the collection deleted
    by another client (that client returned). Skips on Edge, whose shard nothing else can
    touch."""
    client = getattr(store, "client", None)
    if client is None:
        pytest.skip("an embedded Edge store holds its shard: nothing else can delete it")
    store.collection_recheck = 60.0
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(5))
    await client.delete_collection(store.collection)
    return engine, client


async def test_a_collection_deleted_behind_its_back_is_recreated_by_the_same_sync(
        store: FlowStore):
    engine, _ = await synced_then_deleted(store)
    report = await engine.apply(registry(5))
    assert len(report.created) == 5 and report.digest == "written"
    assert await store.count() == 5


async def test_a_collection_recreated_with_another_size_is_refused_before_any_embedding(
        store: FlowStore, monkeypatch: pytest.MonkeyPatch):
    from qdrant_client import models

    monkeypatch.setattr(sync, "RECHECK_BEFORE_WRITE", 0.0)  # found long enough ago
    engine, client = await synced_then_deleted(store)
    await client.create_collection(store.collection, vectors_config=models.VectorParams(
        size=7, distance=models.Distance.COSINE))
    embedded = engine.embedder.calls
    with pytest.raises(StoreIncompatible):
        await engine.apply(registry(5))  # no digest there: about to write, it asks first
    assert engine.embedder.calls == embedded


async def test_recreated_within_seconds_of_a_check_it_is_refused_by_the_first_write(
        store: FlowStore):
    from qdrant_client import models

    engine, client = await synced_then_deleted(store)
    await client.create_collection(store.collection, vectors_config=models.VectorParams(
        size=7, distance=models.Distance.COSINE))
    with pytest.raises(StoreIncompatible):
        await engine.apply(registry(5))  # checked moments ago: the write finds out
    embedded = engine.embedder.calls
    with pytest.raises(StoreIncompatible):
        await engine.apply(registry(5))  # the failure made it ask again
    assert engine.embedder.calls == embedded


async def test_syncs_that_write_moments_apart_share_one_check(store: FlowStore):
    store.collection_recheck = 60.0
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(3))
    calls = store.stats.calls.copy()
    for n in (4, 5, 6):  # each one changes something
        await engine.apply(registry(n))
    asked = store.stats.calls - calls
    assert asked["get_collection"] == 0 and asked["collection_exists"] == 0
    assert asked["upsert"] == 3
