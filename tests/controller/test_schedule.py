"""The operator's sync queue: bounded syncs, changes first, one clock for periodic re-syncs.

Against the real ``Reconciler`` on qdrant-client's emulation; the queue's clock is a number the
test moves, so nothing here waits for an interval to pass.
"""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import Iterator
from typing import Any

import pytest

from flowreg.controller.config import parse_config
from flowreg.controller.reconcile import Reconciler
from flowreg.controller.schedule import (
    MIN_STEP,
    PAUSED_STEP,
    RESUME_SPREAD,
    SMALL_FLOWS,
    SyncQueue,
    in_step,
)
from tests.support.builders import make_flows, registry_doc
from tests.support.controlplane import scaled
from tests.support.reconciler import RecordingSink


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fleet_body(i: int, flows: int = 3, interval: str = "10m") -> dict[str, Any]:
    doc = registry_doc(make_flows(flows), name=f"reg-{i:04d}", namespace="fleet",
                       interval=interval)
    doc["spec"]["agentId"] = f"agent_{i:04d}"
    doc["metadata"].update(uid=f"uid-{i:04d}", generation=1)
    return doc


class Traced:
    """Wraps ``Reconciler.reconcile``: the order of syncs, and how many ran at once."""

    def __init__(self, reconciler: Reconciler) -> None:
        self.order: list[tuple[str, str]] = []
        self.entered: list[str] = []
        self.running = 0
        self.most = 0
        self.gate: asyncio.Event | None = None
        inner = reconciler.reconcile

        async def reconcile(body: Any, *, trigger: str) -> Any:
            self.running += 1
            self.most = max(self.most, self.running)
            try:
                self.entered.append(body["metadata"]["name"])
                if self.gate is not None:
                    await self.gate.wait()
                self.order.append((body["metadata"]["name"], trigger))
                return await inner(body, trigger=trigger)
            finally:
                self.running -= 1

        reconciler.reconcile = reconcile  # type: ignore[method-assign]


@pytest.fixture
async def setup() -> Iterator[tuple[Reconciler, SyncQueue, Traced, Clock]]:
    reconciler = Reconciler(parse_config({"stores": {"default": {"location": ":memory:"}},
                                          "deepCheckInterval": "24h"}), RecordingSink())
    traced = Traced(reconciler)
    clock = Clock()
    queue = SyncQueue(reconciler, workers=3, tick=3600, clock=clock, rng=random.Random(5))
    queue.start()
    yield reconciler, queue, traced, clock
    await queue.stop()
    await reconciler.close()


async def drain(queue: SyncQueue, traced: Traced) -> None:
    while queue.waiting or traced.running:
        await asyncio.sleep(0.01)


async def test_no_more_syncs_run_at_once_than_workers_and_each_registry_syncs_once(setup):
    _reconciler, queue, traced, _ = setup
    traced.gate = asyncio.Event()
    bodies = [fleet_body(i) for i in range(30)]
    waiting = [asyncio.create_task(queue.sync(b, "change")) for b in bodies]
    await asyncio.sleep(0.05)
    assert traced.running == 3 and queue.waiting == 27
    traced.gate.set()
    outcomes = await asyncio.gather(*waiting)
    assert all(o.reason == "Synced" for o in outcomes)
    assert traced.most == 3
    assert sorted(name for name, _ in traced.order) == sorted(b["metadata"]["name"]
                                                              for b in bodies)
    assert all(b["status"]["observedGeneration"] == 1 for b in bodies)


async def test_large_registries_take_their_own_slots_and_small_ones_the_rest():
    reconciler = Reconciler(parse_config({"stores": {"default": {"location": ":memory:"}},
                                          "deepCheckInterval": "24h"}), RecordingSink())
    traced = Traced(reconciler)
    traced.gate = asyncio.Event()
    queue = SyncQueue(reconciler, workers=6, large=2, tick=3600, clock=Clock())
    queue.start()
    try:
        large = [fleet_body(i, flows=SMALL_FLOWS + 1) for i in range(4)]
        small = [fleet_body(10 + i, flows=SMALL_FLOWS) for i in range(6)]
        waiting = [asyncio.create_task(queue.sync(b, "change")) for b in large + small]
        await asyncio.sleep(0.1)
        names = {b["metadata"]["name"] for b in large}
        # two large syncs run; two more workers wait for a large slot, the other two run small
        # syncs
        assert sum(1 for n in traced.entered if n in names) == 2
        assert traced.running == 4 and queue.waiting == 4
        traced.gate.set()
        outcomes = await asyncio.gather(*waiting)
        assert all(o.reason == "Synced" for o in outcomes)
        assert traced.most <= 6
    finally:
        await queue.stop()
        await reconciler.close()


async def test_triggers_for_a_waiting_registry_merge_into_one_sync_of_the_newest(setup):
    reconciler, queue, traced, _ = setup
    traced.gate = asyncio.Event()
    blockers = [asyncio.create_task(queue.sync(fleet_body(i), "change")) for i in range(3)]
    await asyncio.sleep(0.05)  # every worker busy
    old, new = fleet_body(9, flows=2), fleet_body(9, flows=4)
    new["metadata"]["generation"] = 2
    first = asyncio.create_task(queue.sync(old, "change"))
    second = asyncio.create_task(queue.sync(new, "change"))
    await asyncio.sleep(0.05)
    assert queue.waiting == 1
    traced.gate.set()
    outcomes = await asyncio.gather(first, second, *blockers)
    assert outcomes[0] == outcomes[1] and outcomes[0].reason == "Synced"
    assert [t for name, t in traced.order if name == "reg-0009"] == ["change"]
    assert new["status"]["flowCount"] == 4 and new["status"]["observedGeneration"] == 2
    engine = reconciler.engines["default"]
    assert await engine.store.count() == 3 * 3 + 4


async def test_a_change_goes_before_every_periodic_re_sync_already_waiting(setup):
    _reconciler, queue, traced, clock = setup
    bodies = {f"reg-{i:04d}": fleet_body(i) for i in range(12)}
    await asyncio.gather(*(queue.sync(b, "change") for b in bodies.values()))
    traced.order.clear()
    traced.entered.clear()
    traced.gate = asyncio.Event()
    clock.now += 601  # every registry's interval (10m) has passed
    assert queue.tick_once() == 12
    await asyncio.sleep(0.05)
    assert len(traced.entered) == 3 and queue.waiting == 9  # three taken, nine waiting
    name = next(n for n in sorted(bodies) if n not in traced.entered)
    changed = copy.deepcopy(bodies[name])
    changed["spec"]["flows"] = make_flows(5)
    changed["metadata"]["generation"] = 2
    newcomer = fleet_body(50)
    late = [asyncio.create_task(queue.sync(changed, "change")),
            asyncio.create_task(queue.sync(newcomer, "change"))]
    await asyncio.sleep(0.05)
    traced.gate.set()
    assert [o.reason for o in await asyncio.gather(*late)] == ["Synced", "Synced"]
    await drain(queue, traced)
    assert traced.entered[3:5] == [name, "reg-0050"]  # right after the three running
    assert [t for n, t in traced.order if n == name] == ["change"]  # the re-sync merged in
    assert len(traced.order) == 13
    assert changed["status"]["flowCount"] == 5


async def test_periodic_re_syncs_come_at_the_interval_and_cost_one_digest_read(setup):
    reconciler, queue, traced, clock = setup
    bodies = [fleet_body(i, flows=20) for i in range(40)]
    await asyncio.gather(*(queue.sync(b, "change") for b in bodies))
    patches, events = len(reconciler.sink.patches), len(reconciler.sink.events)
    store = reconciler.engines["default"].store
    calls, scrolls = store.stats.total, store.stats.calls.get("scroll", 0)
    clock.now += 599
    assert queue.tick_once() == 0
    clock.now += 2
    assert queue.tick_once() == 40
    await drain(queue, traced)
    assert [t for _, t in traced.order[40:]] == ["drift"] * 40
    assert store.stats.total - calls <= 3 * 40  # the digest comparison, nothing scrolled
    assert store.stats.calls.get("scroll", 0) == scrolls
    assert len(reconciler.sink.patches) == patches  # nothing changed: no status written
    assert len(reconciler.sink.events) == events
    assert all(599 < queue.scheduled(b) - clock.now <= 601 for b in bodies)  # the next one


async def test_a_transient_failure_is_retried_with_backoff_not_at_the_interval(setup,
                                                                               monkeypatch):
    reconciler, queue, traced, clock = setup
    body = fleet_body(1)
    real_engine = reconciler.engine
    failures = [2]

    async def flaky(store):
        if failures[0]:
            failures[0] -= 1
            from flowreg.errors import StoreUnavailable
            raise StoreUnavailable("store is down")
        return await real_engine(store)

    monkeypatch.setattr(reconciler, "engine", flaky)
    assert (await queue.sync(body, "change")).reason == "StoreUnavailable"
    assert 1.5 < queue.scheduled(body) - clock.now <= 2.0
    clock.now += 2.1
    assert queue.tick_once() == 1
    await drain(queue, traced)
    assert 3.5 < queue.scheduled(body) - clock.now <= 4.0  # doubled
    clock.now += 4.1
    queue.tick_once()
    await drain(queue, traced)
    assert reconciler.sink.patches[-1]["conditions"][0]["reason"] == "Synced"
    assert 599 < queue.scheduled(body) - clock.now <= 600


async def test_a_restart_syncs_at_once_only_registries_out_of_step_and_spreads_the_rest(setup):
    reconciler, queue, _traced, clock = setup
    bodies = [fleet_body(i) for i in range(300)]
    await asyncio.gather(*(queue.sync(b, "change") for b in bodies))
    assert all(in_step(b) for b in bodies)
    changed = copy.deepcopy(bodies[7])
    changed["metadata"]["generation"] = 2  # edited while no operator ran
    changed["spec"]["flows"] = make_flows(4)
    assert not in_step(changed)

    # A new operator process: a new reconciler and queue over the same store and objects.
    restarted = Reconciler(reconciler.config, RecordingSink())
    restarted.engines = reconciler.engines
    traced_again = Traced(restarted)
    fresh = SyncQueue(restarted, workers=3, tick=3600, clock=clock, rng=random.Random(1))
    fresh.start()
    try:
        objects = [changed if i == 7 else copy.deepcopy(b) for i, b in enumerate(bodies)]
        outcomes = await asyncio.gather(*(fresh.resume(b) for b in objects))
        assert [i for i, o in enumerate(outcomes) if o is not None] == [7]
        assert traced_again.order == [("reg-0007", "resume")]
        due = sorted(fresh.scheduled(b) - clock.now for b in objects if b is not changed)
        assert due[0] >= 0 and due[-1] <= RESUME_SPREAD
        sixths = [sum(1 for d in due if k * 10 <= d < (k + 1) * 10) for k in range(6)]
        assert min(sixths) > 25, sixths  # about 50 in each sixth of the spread: no herd
        texts = restarted.engines["default"].embedder.texts
        for step in range(1, 7):
            clock.now += 10
            fresh.tick_once()
            await drain(fresh, traced_again)
            assert len(traced_again.order) == 1 + sum(sixths[:step])
        assert restarted.engines["default"].embedder.texts == texts  # nothing embedded
        # status written for the changed registry only (a quick sync: its outcome alone)
        assert [p.get("observedGeneration") for p in restarted.sink.patches] == [2]
    finally:
        await fresh.stop()


async def test_a_deleted_registry_is_never_re_synced(setup):
    reconciler, queue, traced, clock = setup
    body = fleet_body(3)
    await queue.sync(body, "change")
    queue.forget(body)
    assert await reconciler.finalize(body) == 3
    clock.now += 3600
    assert queue.tick_once() == 0
    await drain(queue, traced)
    assert await reconciler.engines["default"].store.count() == 0


async def test_a_replica_standing_by_starts_no_periodic_re_sync():
    reconciler = Reconciler(parse_config({}), RecordingSink())
    clock, standby = Clock(), [False]
    queue = SyncQueue(reconciler, workers=1, tick=3600, clock=clock,
                      paused=lambda: standby[0])
    queue.start()
    try:
        body = fleet_body(1, interval="10s")
        await queue.sync(body, "change")
        clock.now += 11
        standby[0] = True
        assert queue.tick_once() == 0
        standby[0] = False
        assert queue.tick_once() == 1
    finally:
        await queue.stop()
        await reconciler.close()


def test_concurrent_syncs_is_configured_within_bounds():
    assert parse_config({}).concurrent_syncs == 8
    assert parse_config({"concurrentSyncs": 32}).concurrent_syncs == 32
    for bad in (0, 257, 1.5, "many"):
        with pytest.raises(ValueError, match="concurrentSyncs"):
            parse_config({"concurrentSyncs": bad})


async def test_a_status_that_cannot_be_written_is_tried_again_soon(setup):
    reconciler, queue, traced, clock = setup
    body = fleet_body(4, interval="1h")
    sink = reconciler.sink
    real_patch = sink.patch_status
    refusals = [1]

    async def refusing(body, status):
        if refusals[0] and "observedGeneration" in status:  # the outcome, not the plan
            refusals[0] -= 1
            raise ConnectionError("apiserver unreachable")
        await real_patch(body, status)

    sink.patch_status = refusing
    with pytest.raises(ConnectionError):
        await queue.sync(body, "change")
    assert queue.scheduled(body) - clock.now <= 10.0  # not an hour later
    clock.now += 10
    assert queue.tick_once() == 1
    await drain(queue, traced)
    assert sink.patches[-1]["conditions"][0]["reason"] == "Synced"
    assert 3590 < queue.scheduled(body) - clock.now <= 3600


async def test_the_clock_wakes_when_the_next_re_sync_is_due(setup):
    _reconciler, _queue, _traced, clock = setup
    paused = False
    queue = SyncQueue(_reconciler, workers=1, tick=10.0, clock=clock,
                      rng=random.Random(3), paused=lambda: paused)
    assert queue.next_step() == 10.0  # nothing scheduled: a whole tick
    bodies = [fleet_body(i) for i in range(200)]
    for body in bodies:
        body["status"] = {"observedGeneration": 1, "conditions": [
            {"type": "Ready", "status": "True", "reason": "Synced"}]}
        assert in_step(body)
        assert await queue.resume(body) is None
    steps, woke = [], 0
    while woke < len(bodies):
        step = queue.next_step()
        assert MIN_STEP <= step <= 10.0
        steps.append(step)
        clock.now += step
        woke += queue.tick_once()  # queued for workers this queue has not started
    # 200 re-syncs spread over 60 s start in many small steps, not six bursts of a tick each
    assert len(steps) > 50 and sum(steps) <= RESUME_SPREAD + MIN_STEP
    paused = True
    queue._schedule("uid-x", clock.now)
    # standing by: a cheap check now and then, so that what fell due meanwhile is seen soon
    # after the pause ends, not a whole tick later and all at once
    assert queue.next_step() == PAUSED_STEP


class _Zero(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


async def test_a_re_sync_scheduled_while_the_clock_waits_wakes_it(setup):
    reconciler, _queue, traced, clock = setup
    body = fleet_body(1)
    await _queue.sync(body, "change")
    body = copy.deepcopy(body)
    body["status"] = {"observedGeneration": 1, "conditions": [
        {"type": "Ready", "status": "True", "reason": "Synced"}]}
    queue = SyncQueue(reconciler, workers=1, tick=3600, clock=clock, rng=_Zero())
    queue.start()  # nothing scheduled: its clock waits a whole tick (an hour)
    try:
        await asyncio.sleep(0.05)
        assert await queue.resume(body) is None  # its first re-sync is due now
        async with asyncio.timeout(scaled(5)):
            while ("reg-0001", "drift") not in traced.order:
                await asyncio.sleep(0.05)
    finally:
        await queue.stop()


async def test_the_change_handler_syncs_at_once_a_known_or_out_of_step_object_only(setup):
    """kopf calls it for every object this process has not handled yet (created, or there
    before it started) and for every change: the first sighting of an object whose status is
    in step schedules its re-sync instead of syncing it."""
    import kopf

    from flowreg.controller.handlers import on_change

    _reconciler, queue, traced, _clock = setup
    memo = kopf.Memo(queue=queue)
    new = fleet_body(1)
    await on_change(body=new, memo=memo)
    assert traced.order == [("reg-0001", "resume")] and in_step(new)
    await on_change(body=new, memo=memo)  # a change of an object this process synced
    assert traced.order[-1] == ("reg-0001", "change")
    there_before = fleet_body(2)
    await queue.sync(there_before, "change")
    queue.forget(there_before)  # as a new process finds it: in step, unknown
    synced = len(traced.order)
    await on_change(body=there_before, memo=memo)
    await asyncio.sleep(0)
    assert len(traced.order) == synced and queue.scheduled(there_before) is not None
