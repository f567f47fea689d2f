"""What a sync's snapshot reads, on every backend: the points its owner holds, and other owners'
points under the names it declares (a conflict), never the rest of the agent's points. A small
registry reads both in one filtered scroll; a large one counts the others first and reads them
only if there are any."""

from __future__ import annotations

import pytest

from flowreg.embed import HashingEmbedder
from flowreg.flow import DeclaredFlows, Flow
from flowreg.store import FlowStore, base
from flowreg.sync import SyncEngine


def registry(owner: str, numbers: range) -> DeclaredFlows:
    return DeclaredFlows("agent", owner, tuple(
        Flow(f"flow_{i}", f"do thing {i}", (f"please do {i}",), ()) for i in numbers))


def filters(store: FlowStore) -> bool:
    return bool(getattr(store, "scroll_filters_by_agent", True))


@pytest.mark.parametrize("one_scroll", [True, False], ids=["one scroll", "count first"])
async def test_a_sync_sees_its_own_points_and_others_under_its_names(
        store: FlowStore, monkeypatch: pytest.MonkeyPatch, one_scroll: bool):
    if not one_scroll:
        monkeypatch.setattr(base, "ONE_SCROLL_NAMES", 1)
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry("ns/other", range(0, 3)))
    await engine.apply(registry("ns/mine", range(5, 7)))
    snapshot = await store.snapshot("agent", owner="ns/mine",
                                    names=["flow_2", "flow_5", "flow_9"])
    assert sorted((p.name, p.owner) for p in snapshot) == [
        ("flow_2", "ns/other"), ("flow_5", "ns/mine"), ("flow_6", "ns/mine")]
    calls = store.stats.calls.copy()
    report = await engine.apply(registry("ns/mine", range(2, 6)))
    assert report.conflicts == [{"flow": "flow_2", "owner": "ns/other"}]
    assert sorted(report.created) == ["flow_3", "flow_4"] and report.deleted == ["flow_6"]
    read = store.stats.calls - calls
    if filters(store):
        assert (read["count"], read["scroll"]) == ((0, 1) if one_scroll else (1, 2))


async def test_a_large_registry_with_no_other_owner_reads_its_own_points_only(
        store: FlowStore, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(base, "ONE_SCROLL_NAMES", 1)
    engine = SyncEngine(store, HashingEmbedder())
    await engine.apply(registry("ns/mine", range(0, 3)))
    calls = store.stats.calls.copy()
    report = await engine.apply(registry("ns/mine", range(1, 4)))
    assert report.created == ["flow_3"] and report.deleted == ["flow_0"]
    read = store.stats.calls - calls
    if filters(store):
        assert (read["count"], read["scroll"]) == (1, 1)
