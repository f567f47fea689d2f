"""The Qdrant store on real qdrant-client local mode: layout, paging, errors."""

from __future__ import annotations

import uuid

import pytest
from qdrant_client import AsyncQdrantClient, models

from flowreg.embed import HashingEmbedder
from flowreg.errors import StoreIncompatible, StoreUnavailable
from flowreg.flow import Registry, point_id
from flowreg.manifest import parse_object
from flowreg.store import FlowStore
from flowreg.sync import SyncEngine
from tests.conftest import make_flows, registry_doc


def registry(n: int, **kw) -> Registry:
    return parse_object(registry_doc(make_flows(n), **kw)).registry


async def test_snapshot_reads_every_page_past_ten_thousand():
    client = AsyncQdrantClient(location=":memory:")
    store = FlowStore(client, "flows", local=True, page_size=4_000)
    await store.ensure_collection(4)
    points = [models.PointStruct(id=str(uuid.uuid4()), vector=[1.0, 0.0, 0.0, 0.0],
                                 payload={"agent_id": "a", "name": f"f{i}", "owner": "o"})
              for i in range(12_345)]
    await client.upsert("flows", points)
    await client.upsert("flows", [models.PointStruct(
        id=str(uuid.uuid4()), vector=[0.0, 1.0, 0.0, 0.0],
        payload={"agent_id": "other", "name": "x", "owner": "o"})])
    snap = await store.snapshot("a")
    assert len(snap) == 12_345
    assert store.stats.calls["scroll"] == 4  # ceil(12,346 / 4,000)
    await store.close()


async def test_vector_size_mismatch_is_a_clear_error():
    store = FlowStore.open(":memory:")
    await store.ensure_collection(384)
    engine = SyncEngine(store, HashingEmbedder(64))
    with pytest.raises(StoreIncompatible, match=r"384-dimensional .* 64-dimensional"):
        await engine.apply(registry(1))
    await store.close()


async def test_point_ids_are_deterministic_and_payload_is_complete():
    store = FlowStore.open(":memory:")
    engine = SyncEngine(store, HashingEmbedder())
    reg = registry(2)
    await engine.apply(reg)
    records = await store.client.retrieve(store.collection, [point_id("agent_1", "flow_00001")],
                                          with_payload=True)
    payload = records[0].payload
    flow = reg.flows[1]
    assert payload["name"] == "flow_00001" and payload["owner"] == "default/bot"
    assert payload["checksum"] == flow.content_checksum
    assert payload["embedder"] == "hashing-v1/384"
    assert payload["examples"] == list(flow.examples)
    [(read_back, owner)] = [p for p in await store.read_flows("agent_1")
                            if p[0].name == "flow_00001"]
    assert read_back.content_checksum == flow.content_checksum and owner == "default/bot"
    await store.close()


def test_a_local_store_in_use_is_reported_not_crashed(tmp_path):
    path = str(tmp_path / "q")
    first = FlowStore.open(path)
    with pytest.raises(StoreUnavailable, match="in use by another process"):
        FlowStore.open(path)
    import asyncio

    asyncio.run(first.close())
    FlowStore.open(path)


async def test_delete_owned_removes_exactly_the_owners_points():
    store = FlowStore.open(":memory:")
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(3, name="mine"))
    await engine.apply(registry(2, name="theirs", agent="agent_2"))
    assert await engine.delete_registry("agent_1", "default/mine") == 3
    assert await store.count() == 2
    await store.close()


async def test_a_point_without_an_owner_at_a_declared_flows_id_is_a_conflict_left_alone():
    store = FlowStore.open(":memory:")
    engine = SyncEngine(store, HashingEmbedder())
    await store.ensure_collection(engine.embedder.dimension)
    reg = registry(2)
    name = reg.flows[0].name
    pid = point_id(reg.agent_id, name)
    stranger = {"agent_id": reg.agent_id, "name": name, "note": "written by hand"}
    await store.client.upsert(store.collection, [models.PointStruct(
        id=pid, vector=[1.0] * engine.embedder.dimension, payload=stranger)])
    report = await engine.apply(reg)
    assert report.conflicts == [{"flow": name, "owner": None}]
    [record] = await store.client.retrieve(store.collection, [pid], with_payload=True)
    assert record.payload == stranger
    await store.close()
