"""When and how many syncs run: one queue and one clock for every FlowRegistry of the operator.

``SyncQueue`` runs the ``Reconciler``'s syncs on a fixed number of workers, at most ``large`` of
them syncs of registries of more than ``SMALL_FLOWS`` flows (the operator: ``concurrentSyncs``
large ones, ``SMALL_SHARE`` times as many in all), never two of one registry at once, and
re-syncs each registry when it is due from a single timer that looks for due registries every
``driftCheckSeconds``; no task or timer is kept per registry. Its contract:

* **Changes first.** A sync asked for by a change of the object (created, updated, resumed
  out of step) goes before every periodic re-sync already waiting; triggers that arrive for a
  registry while it waits are merged into one sync of the newest object.
* **The interval.** After each sync the registry's next re-sync is due ``spec.interval``
  later, or after a backoff (2 s doubling up to 300 s) when the sync failed transiently. The
  clock wakes when the earliest re-sync is due (``next_step``: at least ``MIN_STEP`` and at
  most ``driftCheckSeconds`` apart; a re-sync scheduled sooner than it was to wake wakes it):
  re-syncs due at spread times start spread, and one follows the previous one by the interval
  plus at most ``MIN_STEP`` and the time it waits for a worker.
* **Restarts.** An operator that starts over existing registries syncs at once only those
  whose status is not ``Ready``/``Synced`` at their generation (changed, failed or cut short
  while no operator ran). The others, which the status says are in step, get their first
  re-sync at a random time within ``min(spec.interval, RESUME_SPREAD)``: no thundering herd,
  and a re-sync of each at most ``spec.interval + RESUME_SPREAD`` after the last one before
  the restart.
* **Deletion.** ``forget`` drops a registry's waiting sync and its schedule; a sync already
  running finishes, and schedules nothing.

Between re-syncs only a compact copy of each object is held (its JSON text), not the parsed
object. The deep check (``controller.deepcheck``) is decided by the ``Reconciler`` at each
periodic re-sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowreg.controller.reconcile import Reconciler
from flowreg.controller.resource import FlowRegistry, uid_of
from flowreg.controller.status import READY, RECONCILING, STALLED, SYNCED, Outcome

log = logging.getLogger("flowreg.controller")
RESUME_SPREAD = 60.0
"""Seconds over which the first re-syncs after a start are spread (at most; less for shorter
intervals)."""
ERROR_RETRY = 10.0
"""Seconds before a registry whose sync raised (its status could not be written) is tried
again by the clock."""
MIN_STEP = 0.1
"""The re-sync clock's shortest wait: re-syncs due within it start together."""
PAUSED_STEP = 1.0
"""The re-sync clock's longest wait while the operator stands by (a cheap check)."""
URGENT, ROUTINE = 0, 1
"""Queue priorities: a change of the object, and a periodic re-sync."""
SMALL_FLOWS = 200
"""A registry of at most this many flows is small: its sync holds little (memory, one batch)
and spends most of its time waiting on the store and the apiserver."""
SMALL_SHARE = 4
"""How many small syncs the operator runs in the place of one large one."""


def flow_count(body: Mapping[str, Any]) -> int:
    """How many flows ``body`` declares (0 for a malformed object: the sync says what is
    wrong with it)."""
    spec = body.get("spec")
    flows = spec.get("flows") if isinstance(spec, Mapping) else None
    return len(flows) if isinstance(flows, list) else 0


def in_step(body: Mapping[str, Any]) -> bool:
    """Whether ``body``'s status says its store held its flows at its current generation
    (``Ready=True`` with reason ``Synced``, nothing under way, no retry pending)."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    if meta.get("deletionTimestamp") or status.get("progress") \
            or status.get("observedGeneration") != meta.get("generation"):
        return False
    conditions = {c.get("type"): c for c in status.get("conditions") or ()
                  if isinstance(c, Mapping)}
    ready = conditions.get(READY) or {}
    return ready.get("status") == "True" and ready.get("reason") == SYNCED and not any(
        (conditions.get(t) or {}).get("status") == "True" for t in (RECONCILING, STALLED))


@dataclass
class _Job:
    body: Mapping[str, Any]
    trigger: str
    waiters: list[asyncio.Future[Outcome]] = field(default_factory=list)


class SyncQueue:
    """Bounded, prioritised syncs and one clock for periodic re-syncs (see the module)."""

    def __init__(self, reconciler: Reconciler, *, workers: int, tick: float,
                 large: int | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None,
                 paused: Callable[[], bool] = lambda: False) -> None:
        """``workers`` syncs run at once, at most ``large`` of them (default: all) syncs of
        registries of more than ``SMALL_FLOWS`` flows."""
        if workers < 1 or (large is not None and large < 1):
            raise ValueError("at least one worker")
        self.reconciler = reconciler
        self.workers = workers
        self._large = asyncio.Semaphore(min(large, workers) if large is not None else workers)
        self.tick = tick
        self._clock = clock
        self._paused = paused
        self._rng = rng or random.Random()
        self._queue: asyncio.PriorityQueue[tuple[int, int, str]] = asyncio.PriorityQueue()
        self._order = itertools.count()
        self._pending: dict[str, _Job] = {}
        self._running: set[str] = set()
        self._objects: dict[str, bytes] = {}
        """Per registry, its object as last seen (JSON): what a periodic re-sync reads."""
        self._due: list[tuple[float, int, str]] = []
        self._due_at: dict[str, float] = {}
        self._wake_at = float("inf")
        self._wakeup: asyncio.Future[None] | None = None
        """What the timer waits on (set when it is to step), and when it steps at the latest."""
        self._tasks: list[asyncio.Task[None]] = []
        self.syncs_started = 0

    # --- life ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers and the timer (on the running loop)."""
        if self._tasks:
            return
        self._tasks = [asyncio.create_task(self._work(), name=f"flowreg-sync-{i}")
                       for i in range(self.workers)]
        self._tasks.append(asyncio.create_task(self._ticks(), name="flowreg-resync-timer"))

    async def stop(self) -> None:
        """Stop the workers and the timer; syncs waiting for a worker are dropped."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for job in self._pending.values():
            for waiter in job.waiters:
                waiter.cancel()
        self._pending.clear()

    # --- what the handlers call ----------------------------------------------------------

    async def sync(self, body: Mapping[str, Any], trigger: str) -> Outcome:
        """Sync ``body`` as soon as a worker is free (before any periodic re-sync), and return
        the outcome of the sync that covered it."""
        waiter: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._submit(body, trigger, URGENT, waiter)
        return await waiter

    async def resume(self, body: Mapping[str, Any]) -> Outcome | None:
        """An existing registry seen by a starting operator: synced now if its status says it
        is out of step (returns the outcome), else its first re-sync is scheduled (``None``)."""
        if not in_step(body):
            return await self.sync(body, "resume")
        uid = uid_of(body)
        self._objects[uid] = _pack(body)
        spread = min(FlowRegistry.of(body).interval_seconds(), RESUME_SPREAD)
        self._schedule(uid, self._clock() + self._rng.uniform(0.0, spread))
        return None

    def knows(self, body: Mapping[str, Any]) -> bool:
        """Whether ``body``'s registry was synced or scheduled by this queue (and not
        forgotten since)."""
        return uid_of(body) in self._objects

    def forget(self, body: Mapping[str, Any]) -> None:
        """Drop ``body``'s waiting sync (its waiters are cancelled) and its schedule."""
        uid = uid_of(body)
        self._objects.pop(uid, None)
        self._due_at.pop(uid, None)
        job = self._pending.pop(uid, None)
        for waiter in job.waiters if job else ():
            waiter.cancel()

    def scheduled(self, body: Mapping[str, Any]) -> float | None:
        """When ``body``'s next periodic re-sync is due (this queue's clock), if it is."""
        return self._due_at.get(uid_of(body))

    @property
    def waiting(self) -> int:
        """Syncs waiting for a worker."""
        return len(self._pending)

    # --- inside --------------------------------------------------------------------------

    def _submit(self, body: Mapping[str, Any], trigger: str, priority: int,
                waiter: asyncio.Future[Outcome] | None) -> None:
        uid = uid_of(body)
        job = self._pending.get(uid)
        if job is None:
            job = self._pending[uid] = _Job(body, trigger)
        elif priority == URGENT or job.trigger == "drift":
            job.body, job.trigger = body, trigger  # the newer object
        if waiter is not None:
            job.waiters.append(waiter)
        if uid not in self._running:
            self._queue.put_nowait((priority, next(self._order), uid))

    async def _work(self) -> None:
        while True:
            _, _, uid = await self._queue.get()
            if uid in self._running or uid not in self._pending:
                continue  # merged into a sync already taken (or re-queued when it ends)
            job = self._pending.pop(uid)
            self._running.add(uid)
            self.syncs_started += 1
            try:
                outcome = await self._run(uid, job)
            except asyncio.CancelledError:  # stopped: nobody waits for this sync any more
                for waiter in job.waiters:
                    waiter.cancel()
                raise
            except Exception as exc:  # the reconciler says failures in status; a defect here
                log.exception("sync of %s failed unexpectedly", uid)
                for waiter in job.waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
            else:
                for waiter in job.waiters:
                    if not waiter.done():
                        waiter.set_result(outcome)
            finally:
                self._running.discard(uid)
                if uid in self._pending:  # asked for again while it ran
                    self._queue.put_nowait((URGENT if self._pending[uid].waiters else ROUTINE,
                                            next(self._order), uid))

    async def _run(self, uid: str, job: _Job) -> Outcome:
        if job.trigger != "drift" or uid not in self._objects:
            self._objects[uid] = _pack(job.body)
        failed = True
        try:
            if flow_count(job.body) > SMALL_FLOWS:
                async with self._large:
                    outcome = await self.reconciler.reconcile(job.body, trigger=job.trigger)
            else:
                outcome = await self.reconciler.reconcile(job.body, trigger=job.trigger)
            failed = False
        finally:
            if uid in self._objects:  # not deleted meanwhile
                wait = self.reconciler.next_wait(job.body)
                if failed:  # e.g. the status could not be written: again soon
                    wait = min(wait if wait is not None else ERROR_RETRY, ERROR_RETRY)
                if wait is not None:
                    self._schedule(uid, self._clock() + wait)
        return outcome

    def _schedule(self, uid: str, at: float) -> None:
        self._due_at[uid] = at
        heapq.heappush(self._due, (at, next(self._order), uid))
        if at < self._wake_at and self._wakeup is not None:
            _wake(self._wakeup)  # due before the timer wakes: it steps sooner

    def tick_once(self) -> int:
        """Queue every registry whose re-sync is due; returns how many (the timer's step).

        Nothing while ``paused()`` (a replica standing by for another): the due re-syncs wait
        until it resumes.
        """
        if self._paused():
            return 0
        now = self._clock()
        queued = 0
        while self._due and self._due[0][0] <= now:
            at, _, uid = heapq.heappop(self._due)
            if self._due_at.get(uid) != at:
                continue  # rescheduled or forgotten since
            del self._due_at[uid]
            packed = self._objects.get(uid)
            if packed is None or uid in self._pending:
                continue
            self._submit(json.loads(packed), "drift", ROUTINE, None)
            queued += 1
        return queued

    def next_step(self) -> float:
        """Seconds the timer waits before its next step: until the earliest due re-sync, at
        least ``MIN_STEP`` and at most ``tick`` (``tick`` when nothing is scheduled; while
        paused, at most ``PAUSED_STEP``, so that what fell due is not all started at once when
        the pause ends). A re-sync scheduled before the timer's wake-up wakes it
        (``_schedule``). Re-syncs spread over time start spread, not in bursts a tick apart."""
        if self._paused():
            return min(self.tick, PAUSED_STEP)
        if not self._due:
            return self.tick
        return min(self.tick, max(MIN_STEP, self._due[0][0] - self._clock()))

    async def _ticks(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            step = self.next_step()
            self._wake_at = self._clock() + step
            self._wakeup = loop.create_future()
            timer = loop.call_later(step, _wake, self._wakeup)
            try:
                await self._wakeup
            finally:
                timer.cancel()
                self._wake_at, self._wakeup = float("inf"), None
            try:
                self.tick_once()
            except Exception:  # pragma: no cover - a defect; the timer must go on
                log.exception("the re-sync timer failed")


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _pack(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, default=dict, separators=(",", ":")).encode()
