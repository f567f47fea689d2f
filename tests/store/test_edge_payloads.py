"""Payloads on Qdrant Edge: six keys per flow (handing Edge a payload costs per key), read back
as written; points an earlier release wrote (a key per field) read the same and are not
rewritten or re-embedded."""

from __future__ import annotations

import orjson
import pytest

from flowreg.embed import HashingEmbedder
from flowreg.flow import DeclaredFlows, Flow, point_id
from flowreg.store import open_store, payload_of
from flowreg.store.edge import pack, pack_fields, unpack
from flowreg.sync import SyncEngine

FLOWS = tuple(Flow(f"flow_{i}", f"does {i}", (f"do {i}", "now"), ("signed in",),
                   {"version": 1, "steps": [{"id": "a", "handler": "h.a"}]}) for i in range(5))
REGISTRY = DeclaredFlows("agent", "ns/reg", FLOWS)


def test_a_flow_payload_is_six_keys_and_reads_back_as_written():
    payload = payload_of(FLOWS[0], "agent", "ns/reg", "hashing-v1/384")
    stored = pack(payload)
    assert sorted(stored) == ["agent_id", "flowreg", "flowreg_content", "flowreg_meta", "name",
                              "owner"]
    assert unpack(dict(stored)) == payload
    other = {"anything": "[1, 2]", "examples": "not json"}  # not a flow: left as it is
    assert unpack(pack(other)) == {"anything": "[1, 2]", "examples": "not json"}
    with pytest.raises(ValueError, match="reserved"):
        pack({"flowreg_meta": "x"})


def earlier_release_pack(payload: dict) -> dict:
    """How earlier releases stored a payload: examples, conditions, blueprint as JSON text."""
    out = dict(payload)
    for key in ("examples", "conditions", "blueprint"):
        out[key] = orjson.dumps(out[key]).decode()
    return out


async def test_points_of_an_earlier_release_read_the_same(tmp_path):
    import qdrant_edge as q

    store = open_store(str(tmp_path / "store"), "flows")
    engine = SyncEngine(store, HashingEmbedder())
    try:
        await store.ensure_collection(384)
        vectors = await engine.embedder.embed([f.embedding_text for f in FLOWS])
        store._shard.update(q.UpdateOperation.upsert_points([
            q.Point(point_id("agent", f.name), v,
                    earlier_release_pack(payload_of(f, "agent", "ns/reg", "hashing-v1/384")))
            for f, v in zip(FLOWS, vectors, strict=True)]))
        assert [f for f, _ in await store.read_flows("agent")] == [
            Flow(f.name, f.description, f.examples, f.conditions, f.blueprint,
                 f.content_checksum) for f in FLOWS]
        deep = await engine.apply(REGISTRY, deep=True)
        assert deep.change_count == 0 and deep.embedded_texts == 0 and len(deep.skipped) == 5
        assert await store.count() == 5
        changed = DeclaredFlows("agent", "ns/reg", (Flow("flow_0", "does 0 now"), *FLOWS[1:]))
        report = await engine.apply(changed)
        assert report.updated == ["flow_0"]
        payloads = await store.payloads([point_id("agent", "flow_0"),
                                         point_id("agent", "flow_1")])
        assert payloads[point_id("agent", "flow_0")]["description"] == "does 0 now"
        assert payloads[point_id("agent", "flow_1")]["examples"] == ["do 1", "now"]
    finally:
        await store.close()


def test_a_flow_payload_is_packed_as_any_payload_is():
    for flow in FLOWS:
        payload = payload_of(flow, "agent", "ns/reg", "hashing-v1/384")
        assert pack(payload) == pack_fields(payload)
        assert list(pack(payload)) == list(pack_fields(payload))
