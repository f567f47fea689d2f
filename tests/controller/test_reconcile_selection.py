"""The selection lint in the reconciler: Warn, Block, Ignore; no embedding call of its own."""

from __future__ import annotations

import copy

import pytest

from flowreg.controller.reconcile import Reconciler
from flowreg.controller.selection import MAX_PAIRS
from tests.support.reconciler import RecordingSink, body_of, ready


def twins(n: int) -> list[dict]:
    """``n`` pairs of flows whose embedded texts are the same (cosine 1), then one apart."""
    flows = []
    for i in range(n):
        text = {"description": f"Refund card payment number {i} to the customer",
                "examples": [f"refund payment {i}", f"give back charge {i}"]}
        flows += [{"name": f"refund_{i}", **text}, {"name": f"refund_{i}_again", **text}]
    flows.append({"name": "exchange_rate", "description": "Quote the euro to dollar rate",
                  "examples": ["how many yen for a pound", "franc to rupee"]})
    return flows


async def test_warn_keeps_ready_and_says_it_in_status_and_one_event(reconciler):
    body = body_of(twins(1))
    outcome = await reconciler.reconcile(body, trigger="change")
    assert outcome.ready and outcome.reason == "Synced"
    lint = body["status"]["selectionLint"]
    assert lint["count"] == 1 and lint["pairs"] == [
        {"flows": ["refund_0", "refund_0_again"], "score": 1.0}]
    warnings = [e for e in reconciler.sink.events if e[0] == "Warning"]
    assert [e[1] for e in warnings] == ["ConfusableFlows"]
    assert "refund_0 ~ refund_0_again (1.00)" in warnings[0][2]
    await reconciler.reconcile(body, trigger="drift")
    assert [e for e in reconciler.sink.events if e[0] == "Warning"] == warnings


async def test_the_lint_adds_no_embedding_call_and_reads_only_vectors_the_sync_did_not_write(
        reconciler):
    body = body_of(twins(3))
    await reconciler.reconcile(body, trigger="change")
    engine = reconciler.engines["default"]
    assert (engine.embedder.calls, engine.embedder.texts) == (1, 7)  # the sync's one batch
    assert engine.store.stats.calls["retrieve"] == 0  # every vector came from the sync
    body["spec"]["flows"][-1]["conditions"] = ["user is authenticated"]  # payload-only change
    body["metadata"]["generation"] = 2
    await reconciler.reconcile(body, trigger="change")
    await reconciler.reconcile(body, trigger="drift")
    assert (engine.embedder.calls, engine.embedder.texts) == (1, 7)
    assert engine.store.stats.calls["retrieve"] == 0  # texts unchanged: judged before
    assert body["status"]["selectionLint"]["count"] == 3
    body["spec"]["flows"][-1]["description"] = "Refund card payment number 0 to the customer"
    body["spec"]["flows"][-1]["examples"] = ["refund payment 0", "give back charge 0"]
    body["metadata"]["generation"] = 3
    await reconciler.reconcile(body, trigger="change")
    assert (engine.embedder.calls, engine.embedder.texts) == (1, 7)  # a stored twin's vector
    assert engine.store.stats.calls["retrieve"] == 2  # the donor's, then the 6 unwritten ones
    assert body["status"]["selectionLint"]["count"] == 5  # three alike: 3 pairs, 2 twins


async def test_status_holds_at_most_ten_pairs_worst_first(reconciler):
    flows = twins(12)
    flows[0]["examples"] = [*flows[0]["examples"], "something else entirely"]  # 0 < cosine < 1
    body = body_of(flows)
    await reconciler.reconcile(body, trigger="change")
    lint = body["status"]["selectionLint"]
    assert lint["count"] == 12 and len(lint["pairs"]) == MAX_PAIRS
    scores = [p["score"] for p in lint["pairs"]]
    assert scores == sorted(scores, reverse=True) and ["refund_0", "refund_0_again"] not in \
        [p["flows"] for p in lint["pairs"]]


async def test_block_keeps_ready_false_but_syncs(reconciler):
    body = body_of(twins(1), selectionLint="Block")
    outcome = await reconciler.reconcile(body, trigger="change")
    assert not outcome.ready and outcome.reason == "ConfusableFlows" and outcome.stalled
    assert {c["type"]: c["status"] for c in body["status"]["conditions"]} == {
        "Ready": "False", "Stalled": "True"}
    assert body["status"]["lastSync"]["created"] == 3
    assert await reconciler.engines["default"].store.count() == 3
    assert [e[1] for e in reconciler.sink.events if e[0] == "Warning"] == ["ConfusableFlows"]
    body["spec"]["flows"].pop(1)  # the twin removed: Ready again, the stanza gone
    body["metadata"]["generation"] = 2
    outcome = await reconciler.reconcile(body, trigger="change")
    assert outcome.ready and ready(body)["reason"] == "Synced"
    assert "selectionLint" not in body["status"]


async def test_ignore_checks_nothing(reconciler):
    body = body_of(twins(1), selectionLint="Ignore")
    outcome = await reconciler.reconcile(body, trigger="change")
    assert outcome.ready and "selectionLint" not in body["status"]
    assert reconciler.engines["default"].store.stats.calls["retrieve"] == 0
    assert not [e for e in reconciler.sink.events if e[0] == "Warning"]


async def test_an_unknown_mode_is_invalid(reconciler):
    body = body_of(twins(1), selectionLint="Off")
    outcome = await reconciler.reconcile(body, trigger="change")
    assert outcome.reason == "InvalidSpec" and "selectionLint" in outcome.message


@pytest.mark.parametrize("mode", ["Warn", "Block"])
async def test_after_a_restart_an_unchanged_registry_keeps_its_findings_and_reads_no_vectors(
        reconciler, mode):
    body = body_of(twins(2), selectionLint=mode)
    await reconciler.reconcile(body, trigger="change")
    engine = reconciler.engines["default"]
    written = copy.deepcopy(body["status"])
    assert written["selectionLint"]["count"] == 2

    restarted = Reconciler(reconciler.config, RecordingSink())  # a new operator process
    restarted.engines = reconciler.engines
    calls = dict(engine.store.stats.calls)
    await restarted.reconcile(body, trigger="resume")
    made = {k: v - calls.get(k, 0) for k, v in engine.store.stats.calls.items()}
    assert made.get("retrieve", 0) == 0 and sum(made.values()) <= 3
    assert body["status"] == written and restarted.sink.patches == []
    assert restarted.sink.events == []  # the warning is not said again

    flows = twins(2)[:-2] + twins(2)[-1:]  # the second pair gone
    changed = body_of(flows, generation=2, selectionLint=mode)
    changed["status"] = copy.deepcopy(written)
    await restarted.reconcile(changed, trigger="change")
    assert changed["status"]["selectionLint"]["count"] == 1  # judged again: it changed


async def test_a_status_judged_at_another_threshold_is_judged_again(reconciler):
    body = body_of(twins(1))
    await reconciler.reconcile(body, trigger="change")
    body["status"]["selectionLint"]["threshold"] = 0.5
    restarted = Reconciler(reconciler.config, RecordingSink())
    restarted.engines = reconciler.engines
    retrieves = reconciler.engines["default"].store.stats.calls["retrieve"]
    await restarted.reconcile(body, trigger="resume")
    assert reconciler.engines["default"].store.stats.calls["retrieve"] == retrieves + 1
    assert body["status"]["selectionLint"]["threshold"] != 0.5
