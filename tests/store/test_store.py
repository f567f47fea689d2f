"""The store seam on every backend: paging, layout errors, payloads, locks, owners, search."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from flowreg.embed import HashingEmbedder
from flowreg.errors import StoreIncompatible, StoreUnavailable
from flowreg.flow import DeclaredFlows, point_id
from flowreg.manifest import parse_object
from flowreg.store import FlowStore, PointWrite, open_store
from flowreg.sync import SyncEngine
from tests.support.builders import make_flows, registry_doc
from tests.support.stores import backends, drop, open_backend


def registry(n: int, **kw) -> DeclaredFlows:
    return parse_object(registry_doc(make_flows(n), **kw)).registry


def raw_point(agent: str, name: str, vector: list[float]) -> PointWrite:
    return PointWrite(str(uuid.uuid4()), {"agent_id": agent, "name": name, "owner": "o"}, vector)


@pytest.mark.parametrize("kind", backends())
async def test_snapshot_reads_every_page_past_ten_thousand(kind, tmp_path):
    store: FlowStore = open_backend(kind, tmp_path, page_size=4_000)
    await store.ensure_collection(4)
    points = [raw_point("a", f"f{i}", [1.0, 0.0, 0.0, 0.0]) for i in range(12_345)]
    for start in range(0, len(points), 2_000):
        await store.write(points[start:start + 2_000], [])
    await store.write([raw_point("other", "x", [0.0, 1.0, 0.0, 0.0])], [])
    before = store.stats.calls["scroll"]
    snap = await store.snapshot("a")
    assert len(snap) == 12_345
    pages = store.stats.calls["scroll"] - before
    # 12,345 points of "a" in pages of 4,000 (a backend that cannot filter reads "other" too)
    assert pages == 4
    await drop(store)


async def test_vector_size_mismatch_is_a_clear_error(store):
    await store.ensure_collection(384)
    engine = SyncEngine(store, HashingEmbedder(64))
    with pytest.raises(StoreIncompatible, match=r"384-dimensional .* 64-dimensional"):
        await engine.apply(registry(1))


async def test_point_ids_are_deterministic_and_payload_is_complete(store):
    engine = SyncEngine(store, HashingEmbedder())
    reg = registry(2)
    await engine.apply(reg)
    pid = point_id("agent_1", "flow_00001")
    payload = (await store.payloads([pid]))[pid]
    flow = reg.flows[1]
    assert payload["name"] == "flow_00001" and payload["owner"] == "default/bot"
    assert payload["checksum"] == flow.content_checksum
    assert payload["embedder"] == "hashing-v1/384"
    assert payload["examples"] == list(flow.examples)
    [(read_back, owner)] = [p for p in await store.read_flows("agent_1")
                            if p[0].name == "flow_00001"]
    assert read_back.content_checksum == flow.content_checksum and owner == "default/bot"


def test_an_embedded_store_in_use_is_reported_not_crashed(tmp_path):
    path = str(tmp_path / "q")
    first = open_store(path)
    asyncio.run(first.ensure_collection(4))
    with pytest.raises(StoreUnavailable, match="in use by another process"):
        open_store(path)
    asyncio.run(first.close())
    asyncio.run(open_store(path).close())


async def test_delete_owned_removes_exactly_the_owners_points(store):
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(3, name="mine"))
    await engine.apply(registry(2, name="theirs", agent="agent_2"))
    assert await engine.delete_registry("agent_1", "default/mine") == 3
    assert await store.count() == 2


async def test_a_point_without_an_owner_at_a_declared_flows_id_is_a_conflict_left_alone(store):
    engine = SyncEngine(store, HashingEmbedder())
    await store.ensure_collection(engine.embedder.dimension)
    reg = registry(2)
    name = reg.flows[0].name
    pid = point_id(reg.agent_id, name)
    stranger = {"agent_id": reg.agent_id, "name": name, "note": "written by hand"}
    await store.write([PointWrite(pid, stranger, [1.0] * engine.embedder.dimension)], [])
    report = await engine.apply(reg)
    assert report.conflicts == [{"flow": name, "owner": None}]
    assert (await store.payloads([pid]))[pid] == stranger


async def test_search_finds_the_flow_a_query_means_within_one_agent(store):
    embedder = HashingEmbedder()
    engine = SyncEngine(store, embedder)
    await engine.apply(registry(20))
    await engine.apply(registry(20, name="other", agent="agent_2"))
    [query] = await embedder.embed(["please do thing 7 I want 7 done"])
    hits = await store.search("agent_1", query, limit=3)
    assert len(hits) == 3 and hits[0].payload["name"] == "flow_00007"
    assert all(h.payload["agent_id"] == "agent_1" for h in hits)
    assert hits[0].score >= hits[1].score >= hits[2].score
    assert await store.search("nobody", query) == []


async def test_each_batch_is_one_counted_write_call_on_every_backend(store):
    engine = SyncEngine(store, HashingEmbedder(), batch_size=10)
    await engine.apply(registry(25))
    assert store.stats.calls["upsert"] == 3
    assert store.stats.writes == 4 and store.stats.calls["write_digest"] == 1
    assert store.stats.points_written == 25
