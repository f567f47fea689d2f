"""The reconciler without Kubernetes: status and events it produces, against real Qdrant local.

These check the status contract (kstatus conditions, bounded report, no rewrite when nothing
changed); the operator itself is tested end to end on a real apiserver in tests/e2e.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid

import pytest

from flowreg.controller.config import parse_config, parse_duration
from flowreg.controller.reconcile import Reconciler
from flowreg.errors import InvalidSpec
from tests.support.builders import make_flows, registry_doc
from tests.support.qdrant_server import server_available, session_server
from tests.support.reconciler import RecordingSink, body_of, ready


async def test_first_sync_is_ready_with_counts(reconciler):
    body = body_of(make_flows(5))
    outcome = await reconciler.reconcile(body, trigger="change")
    assert outcome.ready and outcome.reason == "Synced"
    assert ready(body)["status"] == "True" and ready(body)["observedGeneration"] == 1
    assert [c["type"] for c in body["status"]["conditions"]] == ["Ready"]
    assert body["status"]["lastSync"]["created"] == 5
    assert body["status"]["flowCount"] == 5
    assert reconciler.sink.events[0][:2] == ("Normal", "Synced")


async def test_unchanged_registry_rewrites_no_status(reconciler):
    body = body_of(make_flows(5))
    await reconciler.reconcile(body, trigger="change")
    patches, events = len(reconciler.sink.patches), len(reconciler.sink.events)
    await reconciler.reconcile(body, trigger="drift")
    await reconciler.reconcile(body, trigger="resume")
    assert len(reconciler.sink.patches) == patches
    assert len(reconciler.sink.events) == events


async def test_status_stays_small_for_large_registries(reconciler):
    body = body_of(make_flows(2000))
    await reconciler.reconcile(body, trigger="change")
    assert len(json.dumps(body["status"])) < 4096
    assert len(body["status"]["lastSync"]["names"]["created"]) == 20
    assert body["status"]["lastSync"]["created"] == 2000


async def test_invalid_spec_stalls_and_writes_nothing(reconciler):
    flows = make_flows(3)
    flows[2]["checksum"] = "sha256:" + "a" * 64
    body = body_of(flows)
    outcome = await reconciler.reconcile(body, trigger="change")
    assert outcome.reason == "InvalidSpec" and outcome.stalled
    types = {c["type"]: c["status"] for c in body["status"]["conditions"]}
    assert types == {"Ready": "False", "Stalled": "True"}
    assert 'flow "flow_00002"' in ready(body)["message"]
    assert reconciler.sink.events[-1][:2] == ("Warning", "InvalidSpec")
    engine = reconciler.engines.get("default")
    assert engine is None or await engine.store.count() == 0


async def test_unknown_store_is_invalid_spec(reconciler):
    body = body_of(make_flows(1), store="elsewhere")
    outcome = await reconciler.reconcile(body, trigger="change")
    assert outcome.reason == "InvalidSpec" and "store 'elsewhere' is not configured" in \
        outcome.message


async def test_suspend_writes_nothing(reconciler):
    body = body_of(make_flows(2), suspend=True)
    outcome = await reconciler.reconcile(body, trigger="change")
    assert outcome.reason == "Suspended" and not reconciler.engines


async def test_conflict_names_the_owner(reconciler):
    await reconciler.reconcile(body_of(make_flows(2)), trigger="change")
    other = registry_doc(make_flows(3), name="other", namespace="team-b")
    other["metadata"].update(uid="uid-2", generation=1)
    outcome = await reconciler.reconcile(other, trigger="change")
    assert outcome.reason == "Conflict" and "owned by team-a/reg" in outcome.message
    assert other["status"]["conflicts"][0]["owner"] == "team-a/reg"
    assert other["status"]["lastSync"]["created"] == 1


async def test_condition_transition_time_moves_only_on_flips(reconciler):
    body = body_of(make_flows(2))
    await reconciler.reconcile(body, trigger="change")
    first = ready(body)["lastTransitionTime"]
    body["spec"]["flows"].append(make_flows(3)[2])
    body["metadata"]["generation"] = 2
    await reconciler.reconcile(body, trigger="change")
    assert ready(body)["lastTransitionTime"] == first
    assert ready(body)["observedGeneration"] == 2


async def test_deletion_policy(reconciler):
    body = body_of(make_flows(3))
    await reconciler.reconcile(body, trigger="change")
    orphan = copy.deepcopy(body)
    orphan["spec"]["deletionPolicy"] = "Orphan"
    assert await reconciler.finalize(orphan) == 0
    assert await reconciler.engines["default"].store.count() == 3
    assert await reconciler.finalize(body) == 3
    assert await reconciler.engines["default"].store.count() == 0


@pytest.mark.skipif(not server_available(), reason="no Qdrant server built")
async def test_a_store_with_a_grpc_port_is_synced_over_grpc_on_that_port(monkeypatch):
    endpoint = session_server()
    assert endpoint.grpc_port is not None
    monkeypatch.setenv("FLOWREG_TEST_QDRANT_KEY", endpoint.api_key or "")

    async def sync_over(grpc_port: int) -> str:
        collection = f"t_{uuid.uuid4().hex[:12]}"
        config = parse_config({"stores": {"default": {
            "location": endpoint.url, "collection": collection, "timeout": 3,
            "apiKeyEnv": "FLOWREG_TEST_QDRANT_KEY", "grpcPort": grpc_port}}})
        reconciler = Reconciler(config, RecordingSink())
        try:
            outcome = await reconciler.reconcile(body_of(make_flows(3)), trigger="change")
            if outcome.ready:
                await reconciler.engines["default"].store.client.delete_collection(collection)
            return outcome.reason
        finally:
            await reconciler.close()

    assert await sync_over(endpoint.grpc_port) == "Synced"
    # the REST port named as the gRPC one: nothing answers gRPC there, so gRPC is what is used
    assert await sync_over(int(endpoint.url.rsplit(":", 1)[1])) == "StoreUnavailable"


def test_a_grpc_port_is_only_for_a_qdrant_server():
    assert parse_config({"stores": {"s": {"location": "http://q:6333", "grpcPort": 6334}}}
                        ).stores["s"].grpc_port == 6334
    assert parse_config({"stores": {"s": {"location": "http://q:6333"}}}
                        ).stores["s"].grpc_port is None
    with pytest.raises(ValueError, match=r"^stores\.s\.grpcPort: gRPC is spoken only"):
        parse_config({"stores": {"s": {"location": "/var/lib/flows", "grpcPort": 6334}}})


def test_config_rejects_inline_keys_and_unknown_settings():
    with pytest.raises(ValueError, match="apiKeyEnv"):
        parse_config({"stores": {"default": {"apiKey": "x"}}})
    with pytest.raises(ValueError, match="unknown setting"):
        parse_config({"stores": {"default": {"url": "x"}}})
    with pytest.raises(InvalidSpec):
        parse_config({}).store("nope")


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("10m", 600), ("1h30m", 5400),
                                               ("500ms", 0.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


async def test_metrics_count_syncs_operations_and_texts():
    from prometheus_client import CollectorRegistry

    from flowreg.controller.metrics import Metrics

    registry = CollectorRegistry()
    rec = Reconciler(parse_config({}), RecordingSink(), Metrics(registry))
    try:
        await rec.reconcile(body_of(make_flows(3)), trigger="change")
        value = registry.get_sample_value
        assert value("flowreg_syncs_total", {"result": "Synced"}) == 1
        assert value("flowreg_embedded_texts_total") == 3
        assert value("flowreg_store_operations_total",
                     {"operation": "upsert"}) == 1
        assert value("flowreg_flow_changes_total", {"action": "create"}) == 3
        assert value("flowreg_sync_duration_seconds_count") == 1
    finally:
        await rec.close()


async def test_a_drift_check_queued_behind_a_sync_does_not_sync_again():
    """On start-up every registry is resumed while the drift timer ticks: one sync, not two."""
    import asyncio

    from prometheus_client import CollectorRegistry

    from flowreg.controller.metrics import Metrics

    registry = CollectorRegistry()
    rec = Reconciler(parse_config({}), RecordingSink(), Metrics(registry))
    body = body_of(make_flows(50), interval="10s")
    try:
        assert not rec.due(body)  # never synced by this process: its resume handler will
        assert await rec.check_drift(body) is None
        change = asyncio.create_task(rec.reconcile(body, trigger="resume"))
        await asyncio.sleep(0)  # the resume holds the registry's lock
        assert await rec.check_drift(body) is None
        assert (await change).reason == "Synced"
        assert registry.get_sample_value("flowreg_syncs_total", {"result": "Synced"}) == 1
        assert not rec.due(body)
        [checked] = rec._checked.values()
        checked.at -= 9.5  # not yet: 10s is the interval
        assert not rec.due(body)
        checked.at -= 0.5  # the interval has passed
        assert rec.due(body)
        assert (await rec.check_drift(body)).reason == "Synced"
        assert registry.get_sample_value("flowreg_syncs_total", {"result": "Synced"}) == 2
    finally:
        await rec.close()


async def test_an_interval_below_the_minimum_never_makes_deep_checks_more_frequent():
    """The CRD refuses intervals under 10s; an object stored before that is synced, at 10s."""
    rec = Reconciler(parse_config({}), RecordingSink())
    body = body_of(make_flows(1), interval="1s")
    try:
        assert (await rec.reconcile(body, trigger="change")).reason == "Synced"
        [checked] = rec._checked.values()
        checked.at -= 5
        assert not rec.due(body)
        checked.at -= 5
        assert rec.due(body)
    finally:
        await rec.close()


def test_logs_never_show_api_keys(caplog, monkeypatch):
    import logging

    from flowreg.controller.run import RedactSecrets

    logger = logging.getLogger("flowreg.test-redaction")
    for handler in [caplog.handler]:
        handler.addFilter(RedactSecrets(["sk-live-0123456789"]))
    with caplog.at_level(logging.INFO, logger="flowreg.test-redaction"):
        logger.info("connecting with %s", "sk-live-0123456789")
    assert "sk-live" not in caplog.text and "[REDACTED]" in caplog.text


async def test_a_sync_queued_behind_another_keeps_the_report_of_the_one_that_wrote(reconciler):
    # Two triggers for a new registry (resume and create, say), each with its own copy of the
    # object as it was before any sync: the first holds the registry while its embedder is
    # slow; the second runs after it, finds nothing to do, and must not replace the first's
    # report (created: 50) with its own (skipped: 50).
    flows = make_flows(50)
    first_body, second_body = body_of(flows), body_of(flows)
    engine = await reconciler.engine(reconciler.config.store("default"))
    gate = asyncio.Event()
    embed = engine.embedder.inner.embed

    async def held(texts):
        await gate.wait()
        return await embed(texts)

    engine.embedder.inner.embed = held
    first = asyncio.create_task(reconciler.reconcile(first_body, trigger="resume"))
    while not reconciler._lock(first_body).locked():
        await asyncio.sleep(0)
    second = asyncio.create_task(reconciler.reconcile(second_body, trigger="change"))
    await asyncio.sleep(0.05)
    assert not first.done() and not second.done()
    gate.set()
    await asyncio.gather(first, second)
    reports = [p["lastSync"] for p in reconciler.sink.patches if p.get("lastSync")]
    assert [r["created"] for r in reports] == [50]  # written once, by the sync that created
    assert engine.embedder.texts == 50


async def test_an_unexpected_error_is_said_in_status_and_retried(reconciler, monkeypatch,
                                                                  caplog):
    async def broken(store):
        raise ImportError("libstdc++.so.6: cannot open shared object file")

    monkeypatch.setattr(reconciler, "engine", broken)
    body = body_of(make_flows(2))
    outcome = await reconciler.reconcile(body, trigger="change")
    assert outcome.reason == "InternalError" and outcome.reconciling and not outcome.ready
    types = {c["type"]: c["status"] for c in body["status"]["conditions"]}
    assert types == {"Ready": "False", "Reconciling": "True"}
    assert "ImportError: libstdc++.so.6" in ready(body)["message"]
    assert "Traceback" in caplog.text  # the whole story is in the operator's log
    assert reconciler._checked["uid-1"].transient  # retried with backoff, not at the interval


async def test_interval_re_syncs_trust_the_digest_and_the_deep_check_reads_everything():
    """A point deleted behind the operator's back survives interval re-syncs (one digest read
    each) until the registry's deep check is due, which restores it."""
    from flowreg.flow import point_id

    rec = Reconciler(parse_config({"deepCheckInterval": "1h"}), RecordingSink())
    body = body_of(make_flows(5), interval="10s")
    try:
        await rec.reconcile(body, trigger="change")
        store = rec.engines["default"].store
        await store.write([], [point_id("agent_1", "flow_00001")])
        rec.deep._next["uid-1"] = float("inf")
        [checked] = rec._checked.values()
        checked.at -= 10
        calls = store.stats.total
        assert (await rec.check_drift(body)).reason == "Synced"
        # one digest read: the collection found a moment ago is trusted (collection_recheck)
        assert store.stats.total - calls == 1 and store.stats.calls["read_digest"] == 2
        assert await store.count() == 4  # unseen: the documented window
        rec.deep._next["uid-1"] = 0.0  # the deep check is due
        rec._checked["uid-1"].at -= 10
        assert (await rec.check_drift(body)).reason == "Synced"
        assert await store.count() == 5
        assert rec.sink.events[-1][1] == "DriftRepaired"
        assert not rec.deep.due("uid-1")  # next one a whole interval away
    finally:
        await rec.close()


def test_first_deep_checks_after_a_restart_are_spread_over_the_interval():
    import random

    from flowreg.controller.deepcheck import DeepCheckClock

    now = [1000.0]
    clock = DeepCheckClock(3600.0, clock=lambda: now[0], rng=random.Random(7))
    uids = [f"uid-{i}" for i in range(2000)]
    assert not any(clock.due(u) for u in uids)  # none at once on start-up
    due_at = sorted(clock._next.values())
    assert due_at[0] >= 1000.0 and due_at[-1] <= 4600.0
    # spread: each tenth of the interval holds about a tenth of them
    tenths = [sum(1 for t in due_at if 1000 + 360 * k <= t < 1000 + 360 * (k + 1))
              for k in range(10)]
    assert min(tenths) > 150
    now[0] = 4600.0
    assert all(clock.due(u) for u in uids)
    clock.done(uids[0])
    assert not clock.due(uids[0])


def test_deep_check_interval_is_configured():
    assert parse_config({}).deep_check_seconds == 3600.0
    assert parse_config({"deepCheckInterval": "6h"}).deep_check_seconds == 21600.0
    with pytest.raises(ValueError, match="deepCheckInterval"):
        parse_config({"deepCheckInterval": "0s"})


async def test_a_quick_sync_writes_its_outcome_only_and_a_slow_one_says_it_is_under_way():
    rec = Reconciler(parse_config({"progressEverySeconds": 0.1}), RecordingSink())
    try:
        quick = body_of(make_flows(5))
        await rec.reconcile(quick, trigger="change")
        assert len(rec.sink.patches) == 1  # no "Progressing" for a sync shorter than 0.1 s
        assert ready(quick)["reason"] == "Synced"

        embedder = rec.engines["default"].embedder.inner
        embed = embedder.embed

        async def slow(texts):
            await asyncio.sleep(0.5)
            return await embed(texts)

        embedder.embed = slow
        changed = copy.deepcopy(quick)
        changed["spec"]["flows"][0]["description"] = "A new description."
        changed["metadata"]["generation"] = 2
        await rec.reconcile(changed, trigger="change")
        under_way, outcome = rec.sink.patches[1], rec.sink.patches[-1]
        reasons = {c["type"]: c["reason"] for c in under_way["conditions"]}
        assert reasons == {"Ready": "Progressing", "Reconciling": "Progressing"}
        assert under_way["progress"]["total"] == 1
        assert outcome["progress"] is None and outcome["observedGeneration"] == 2
        written = len(rec.sink.patches)
        await asyncio.sleep(0.3)
        assert len(rec.sink.patches) == written  # nothing after the outcome
        assert [c["type"] for c in changed["status"]["conditions"]] == ["Ready"]
    finally:
        await rec.close()
