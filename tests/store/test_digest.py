"""The per-registry digest, on every backend: an unchanged registry is recognised with one read;
anything that changes what a sync would do (content, policy, embedder, owner) or the digest
itself (changed or deleted behind flowreg's back) means a full comparison, never a false no-op;
and no flow listing, count, export, query or owner deletion sees the digest point."""

from __future__ import annotations

from collections import Counter

import pytest

from flowreg.embed import HashingEmbedder
from flowreg.flow import DeclaredFlows, Flow, SyncPolicy, point_id
from flowreg.store import FlowStore, PointWrite
from flowreg.store.digest import DIGEST_KEY, digest_point_id
from flowreg.sync import SyncEngine
from tests.support.stores import asking


def registry(n: int, *, owner: str = "ns/reg", salt: str = "") -> DeclaredFlows:
    return DeclaredFlows("agent", owner, tuple(
        Flow(f"flow_{i:03d}", f"do thing {i}{salt}", (f"please do {i}",), ("signed in",))
        for i in range(n)))


class Renamed(HashingEmbedder):
    @property
    def identity(self) -> str:
        return "hashing-v2/384"


async def full(engine: SyncEngine, reg: DeclaredFlows, policy: SyncPolicy | None = None):
    """Apply and check the sync compared in full (a scroll, no digest match)."""
    scrolls = engine.store.stats.calls["scroll"]
    report = await engine.apply(reg, policy)
    assert report.digest != "matched"
    assert engine.store.stats.calls["scroll"] > scrolls
    return report


async def test_an_unchanged_registry_is_one_read_and_nothing_else(store: FlowStore):
    engine = SyncEngine(store, HashingEmbedder(), batch_size=10)
    await engine.apply(registry(40))
    calls = store.stats.calls.copy()
    report = await engine.apply(registry(40))
    delta = store.stats.calls - calls
    assert report.digest == "matched" and report.change_count == 0
    assert delta == asking(store) + Counter(read_digest=1)
    assert report.store_calls == delta.total() <= 3
    assert report.store_writes == 0 and report.embedding_calls == 0
    assert report.skipped == [f.name for f in registry(40).flows]


@pytest.mark.parametrize("change", ["content", "policy", "embedder", "owner", "one flow less"])
async def test_what_the_digest_covers_means_a_full_comparison(store: FlowStore, change):
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(5))
    if change == "content":
        report = await full(engine, registry(5, salt="!"))
        assert len(report.updated) == 5
    elif change == "policy":
        report = await full(engine, registry(5), SyncPolicy(max_deletions=3))
        assert report.change_count == 0
    elif change == "embedder":
        report = await full(SyncEngine(store, Renamed()), registry(5))
        assert len(report.updated) == 5
    elif change == "owner":
        report = await full(engine, registry(5, owner="ns/other"))
        assert len(report.conflicts) == 5
    else:
        report = await full(engine, registry(4))
        assert report.deleted == ["flow_004"]
    # One digest per registry, of its last sync: back to the first declaration means one more
    # full comparison, except after another owner's sync, which left this one's digest alone.
    again = await engine.apply(registry(5))
    assert again.digest == ("matched" if change == "owner" else "written")


@pytest.mark.parametrize("tamper", ["deleted", "changed", "another registry's"])
async def test_a_digest_altered_out_of_band_means_a_full_comparison(store: FlowStore, tamper):
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(5))
    await engine.apply(registry(0, owner="x"), SyncPolicy(allow_empty=True))
    pid = point_id("agent", "flow_002")
    mine = digest_point_id("agent", "ns/reg")
    # The store drifts behind flowreg's back, and the digest with it.
    [(_, payload, vector)] = await store._retrieve([pid], payload=True, vectors=True)
    await store.write([PointWrite(pid, {**payload, "checksum": "sha256:" + "0" * 64}, vector)],
                      [])
    if tamper == "deleted":
        await store.clear_digest("agent", "ns/reg")
    elif tamper == "changed":
        held = (await store.payloads([mine]))[mine]
        await store.write([PointWrite(mine, {**held, DIGEST_KEY: "sha256:" + "1" * 64})], [])
    else:  # the digest of another registry copied over this one's
        other = (await store.payloads([digest_point_id("agent", "x")]))[digest_point_id(
            "agent", "x")]
        await store.write([PointWrite(mine, other)], [])
    report = await full(engine, registry(5))
    assert report.updated == ["flow_002"] and report.digest == "written"
    assert (await engine.apply(registry(5))).digest == "matched"


async def test_flows_edited_out_of_band_are_found_by_the_deep_check(store: FlowStore):
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(5))
    pid = point_id("agent", "flow_001")
    await store.write([], [pid])  # deleted behind flowreg's back; the digest stays
    shallow = await engine.apply(registry(5))
    assert shallow.digest == "matched" and shallow.change_count == 0  # the documented window
    deep = await engine.apply(registry(5), deep=True)
    assert deep.created == ["flow_001"] and deep.digest == "written"
    assert len(await store.snapshot("agent")) == 5


async def test_prune_off_reports_kept_flows_from_the_digest(store: FlowStore):
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(5))
    first = await engine.apply(registry(3), SyncPolicy(prune=False))
    again = await engine.apply(registry(3), SyncPolicy(prune=False))
    assert again.digest == "matched"
    assert again.kept == first.kept == ["flow_003", "flow_004"]


async def test_no_listing_count_export_or_query_sees_the_digest(store: FlowStore):
    embedder = HashingEmbedder()
    engine = SyncEngine(store, embedder)
    await engine.apply(registry(3))
    assert (await store.payloads([digest_point_id("agent", "ns/reg")])) != {}
    assert await store.count() == 3
    assert len(await store.snapshot("agent")) == 3
    assert len(await store.snapshot("agent", deep=True)) == 3
    assert [f.name for f, _ in await store.read_flows("agent")] == [
        "flow_000", "flow_001", "flow_002"]
    [vector] = await embedder.embed(["anything"])
    hits = await store.search("agent", [1.0] + [0.0] * 383, limit=10)
    assert len(hits) == 3 and all("name" in h.payload for h in hits)
    assert len(await store.search("agent", vector, limit=10)) == 3


async def test_deleting_a_registry_deletes_its_digest(store: FlowStore):
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(3))
    assert await engine.delete_registry("agent", "ns/reg") == 3
    assert await store.payloads([digest_point_id("agent", "ns/reg")]) == {}
    # The same registry declared again is compared in full and written again.
    report = await full(engine, registry(3))
    assert len(report.created) == 3 and await store.count() == 3
