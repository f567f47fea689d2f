"""Operation counts users depend on, counted at the store seam (on every backend) and the
embedder."""

from __future__ import annotations

from collections import Counter

import pytest

from flowreg.embed import HashingEmbedder
from flowreg.errors import DeletionGuard
from flowreg.flow import DeclaredFlows, Flow, SyncPolicy, point_id
from flowreg.store import FlowStore, PointWrite
from flowreg.sync import SyncEngine


def registry(n: int, *, salt: str = "", owner: str = "ns/reg") -> DeclaredFlows:
    return DeclaredFlows("agent", owner, tuple(
        Flow(f"flow_{i:05d}", f"do thing {i}{salt}", (f"please do {i}",), ("signed in",),
             {"version": 1, "steps": [{"id": "a", "handler": "h.a"}]})
        for i in range(n)))


def replace_flow(reg: DeclaredFlows, index: int, **changes) -> DeclaredFlows:
    flows = list(reg.flows)
    f = flows[index]
    fields = {"name": f.name, "description": f.description, "examples": f.examples,
              "conditions": f.conditions, "blueprint": f.blueprint, **changes}
    flows[index] = Flow(**fields)
    return DeclaredFlows(reg.agent_id, reg.owner, tuple(flows))


class Renamed(HashingEmbedder):
    @property
    def identity(self) -> str:
        return "hashing-v2/384"


WRITES = ("upsert", "delete", "batch_update_points", "overwrite_payload")


def writes(calls: Counter[str]) -> int:
    return sum(calls[name] for name in WRITES)


@pytest.fixture
def counted(store: FlowStore) -> tuple[FlowStore, Counter[str]]:
    return store, store.stats.calls


async def vector_and_payload(store: FlowStore, pid: str) -> tuple[list[float], dict]:
    return (await store.vectors([pid]))[pid], (await store.payloads([pid]))[pid]


async def test_first_apply_is_one_write_and_one_embedding_per_batch(counted):
    store, calls = counted
    engine = SyncEngine(store, HashingEmbedder(), batch_size=100)
    report = await engine.apply(registry(1000))
    assert writes(calls) == 10 and calls["upsert"] == 10
    assert engine.embedder.calls == 10 and engine.embedder.texts == 1000
    # and, after the last batch, the registry's digest (there was none to clear)
    assert calls["write_digest"] == 1 and calls["clear_digest"] == 0
    assert report.store_writes == 11 and report.points_written == 1000


async def test_second_apply_of_an_unchanged_registry_writes_and_embeds_nothing(counted):
    store, calls = counted
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(1000))
    before, emb = calls.copy(), (engine.embedder.calls, engine.embedder.texts)
    report = await engine.apply(registry(1000))
    delta = calls - before
    assert writes(delta) == 0 and report.store_writes == 0
    assert delta["scroll"] == 0 and delta["read_digest"] == 1 and report.digest == "matched"
    assert report.store_calls <= 3
    assert (engine.embedder.calls, engine.embedder.texts) == emb
    assert len(report.skipped) == 1000 and report.change_count == 0


async def test_without_its_digest_an_unchanged_registry_costs_one_paged_scroll(counted):
    store, calls = counted
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(1000))
    await store.clear_digest("agent", "ns/reg")
    before = calls.copy()
    report = await engine.apply(registry(1000))
    delta = calls - before
    assert delta["scroll"] == 1  # the whole snapshot in one page
    assert writes(delta) == 0 and delta["write_digest"] == 1 and report.digest == "written"
    assert len(report.skipped) == 1000 and report.change_count == 0


async def test_a_registry_reads_its_own_points_and_others_only_under_its_names(store):
    engine = SyncEngine(store, HashingEmbedder())
    big = registry(300, owner="ns/big")
    await engine.apply(big)
    small = DeclaredFlows("agent", "ns/small", (*(Flow(f"small_{i}", f"small thing {i}")
                                             for i in range(5)), big.flows[0]))
    await engine.apply(small)
    read = store.stats.points_read
    report = await engine.apply(small)
    assert report.change_count == 0 and report.store_writes == 0
    assert [c["flow"] for c in report.conflicts] == ["flow_00000"]
    # Its 5 points and the one of ns/big under a declared name; a backend that cannot filter
    # reads the whole collection (ns/big's digest included).
    # (a conflict leaves no digest: the registry is compared in full until it is resolved)
    assert report.digest == "none"
    assert store.stats.points_read - read == (6 if store.scroll_filters_by_agent else 306)
    assert len(await store.snapshot("agent")) == 305


async def test_changing_one_flow_of_a_thousand_embeds_exactly_one_text(counted):
    store, calls = counted
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(1000))
    before, texts = calls.copy(), engine.embedder.texts
    report = await engine.apply(replace_flow(registry(1000), 500, description="new words"))
    assert engine.embedder.texts - texts == 1 and report.embedding_calls == 1
    assert writes(calls - before) == 1 and report.updated == ["flow_00500"]
    assert (calls - before)["clear_digest"] == 1 and (calls - before)["write_digest"] == 1


async def test_a_blueprint_only_change_rewrites_the_payload_and_keeps_the_vector(counted):
    store, calls = counted
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(10))
    pid = point_id("agent", "flow_00003")
    old_vector, _ = await vector_and_payload(store, pid)
    new_blueprint = {"version": 1, "steps": [{"id": "b", "handler": "h.b"}]}
    before = calls.copy()
    report = await engine.apply(replace_flow(registry(10), 3, blueprint=new_blueprint))
    assert report.updated == ["flow_00003"] and report.embedded_texts == 0
    assert writes(calls - before) == 1 and (calls - before)["retrieve"] == 0
    assert (calls - before)["read_digest"] == 1
    new_vector, new_payload = await vector_and_payload(store, pid)
    assert new_vector == pytest.approx(old_vector) and new_payload["blueprint"] == new_blueprint


async def test_changing_the_embedding_model_re_embeds_everything(counted):
    store, _ = counted
    await SyncEngine(store, HashingEmbedder()).apply(registry(50))
    engine = SyncEngine(store, Renamed())
    report = await engine.apply(registry(50))
    assert len(report.updated) == 50 and report.embedded_texts == 50
    again = await engine.apply(registry(50))
    assert again.embedded_texts == 0 and again.change_count == 0


async def test_too_many_deletions_are_refused_before_any_write(counted):
    store, calls = counted
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(300))
    before = calls.copy()
    with pytest.raises(DeletionGuard, match="refusing to delete 250 flow"):
        await engine.apply(registry(50), SyncPolicy(max_deletions=100))
    assert writes(calls - before) == 0
    assert await store.count() == 300


async def test_an_empty_registry_deletes_nothing_unless_allowed(counted):
    store, calls = counted
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(5))
    before = calls.copy()
    with pytest.raises(DeletionGuard, match="declares no flows"):
        await engine.apply(registry(0), SyncPolicy(max_deletions=None))
    assert writes(calls - before) == 0
    report = await engine.apply(registry(0), SyncPolicy(allow_empty=True))
    assert len(report.deleted) == 5 and await store.count() == 0


async def test_prune_off_keeps_undeclared_flows(counted):
    store, _ = counted
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(5))
    report = await engine.apply(registry(3), SyncPolicy(prune=False))
    assert report.deleted == [] and report.kept == ["flow_00003", "flow_00004"]
    assert await store.count() == 5


async def test_deep_check_repairs_a_point_altered_behind_our_back(counted):
    store, _ = counted
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(5))
    pid = point_id("agent", "flow_00002")
    _, payload = await vector_and_payload(store, pid)
    await store.write([PointWrite(pid, {**payload, "description": "tampered"})], [])
    shallow = await engine.apply(registry(5))
    assert shallow.change_count == 0  # checksums in the payload still match
    deep = await engine.apply(registry(5), deep=True)
    assert deep.updated == ["flow_00002"] and deep.embedded_texts == 1
    _, payload = await vector_and_payload(store, pid)
    assert payload["description"] == "do thing 2"


async def test_deep_check_moves_a_point_written_off_its_id_without_embedding(counted):
    store, _ = counted
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry(3))
    pid = point_id("agent", "flow_00001")
    vector, payload = await vector_and_payload(store, pid)
    stray = "00000000-0000-4000-8000-000000000001"
    await store.write([PointWrite(stray, payload, vector)], [pid])
    shallow = await engine.apply(registry(3))
    assert shallow.change_count == 0  # one current point of ours: trusted where it is
    deep = await engine.apply(registry(3), deep=True)
    assert deep.embedded_texts == 0 and deep.duplicates_removed == ["flow_00001"]
    ids = {p.id for p in await store.snapshot("agent")}
    assert pid in ids and stray not in ids and len(ids) == 3


async def test_syncs_running_at_once_on_one_engine_each_report_their_own_work(counted):
    """As the operator runs them: many registries at once, one store, one embedder."""
    import asyncio

    store, calls = counted
    engine = SyncEngine(store, HashingEmbedder(), batch_size=10)
    a, b = registry(95, owner="ns/a"), DeclaredFlows("agent_b", "ns/b", registry(45).flows)
    first, second = await asyncio.gather(engine.apply(a), engine.apply(b))
    assert first.embedded_texts == 95 and first.embedding_calls == 10
    assert second.embedded_texts == 45 and second.embedding_calls == 5
    assert first.store_writes == 11 and second.store_writes == 6  # batches, then the digest
    assert first.points_written == 95 and second.points_written == 45
    assert first.store_calls + second.store_calls == sum(calls.values())
    assert engine.embedder.texts == 140
