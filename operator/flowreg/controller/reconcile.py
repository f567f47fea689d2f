"""The reconcile loop's body, free of kopf: read a FlowRegistry, sync it, say so in its status.

``Reconciler.reconcile`` is level-triggered: whatever woke it (a change, an operator restart, a
drift-check tick), it syncs (an unchanged registry is recognised by its digest, one read; a deep
check, due every ``deepCheckInterval``, reads every point), and writes the status and Events
through a ``Sink``. It never raises for a failure of the registry or a backend: the failure
becomes the status (``Ready=False`` with a reason) and, for transient failures, a retry with
backoff at a later tick (``due``). Syncs of one registry never overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from flowreg.controller import selection
from flowreg.controller.config import OperatorConfig, StoreConfig
from flowreg.controller.deepcheck import DeepCheckClock
from flowreg.controller.metrics import Metrics
from flowreg.controller.resource import FlowRegistry, uid_of
from flowreg.controller.status import (
    CONFLICT,
    DRIFT_REPAIRED,
    INTERNAL_ERROR,
    PROGRESSING,
    READY,
    SUSPENDED,
    SYNCED,
    Outcome,
    conditions,
    sync_summary,
)
from flowreg.errors import FlowregError, InvalidSpec
from flowreg.history import Checkpoint
from flowreg.plan import Plan
from flowreg.report import SyncReport
from flowreg.store.base import counting
from flowreg.sync import EngineConfig, SyncEngine

log = logging.getLogger("flowreg.controller")
MAX_BACKOFF = 300.0
COLLECTION_RECHECK_SECONDS = 60.0
"""How long a store's collection, once found, is trusted without asking Qdrant again: a
re-sync of an unchanged registry then reads its digest alone (one call instead of three). A
collection deleted behind the operator's back is noticed at the first failed call, and the
sync asks again and recreates it (SyncEngine.apply)."""


class Sink(Protocol):
    """Where the reconciler's results go: the object's status, and Events about it."""

    async def patch_status(self, body: Mapping[str, Any], status: dict[str, Any]) -> None: ...

    async def event(self, body: Mapping[str, Any], type_: str, reason: str,
                    message: str) -> None: ...

    async def close(self) -> None:
        """Release connections; the sink may be used again afterwards."""


@dataclass
class _Checked:
    at: float
    transient: bool
    failures: int


class SyncResult(NamedTuple):
    """What one sync attempt concluded: the outcome, the engine's report if it ran, and
    whether the failure (if any) is transient (retried with backoff)."""

    outcome: Outcome
    report: SyncReport | None
    transient: bool


class Reconciler:
    """Syncs FlowRegistries into the stores of an ``OperatorConfig``."""

    def __init__(self, config: OperatorConfig, sink: Sink, metrics: Metrics | None = None) -> None:
        self.config = config
        self.sink = sink
        self.metrics = metrics or Metrics.default()
        self.engines: dict[str, SyncEngine] = {}
        self._owned = contextlib.AsyncExitStack()
        """Closes every engine opened (each owns its store and embedder)."""
        self._locks: dict[str, asyncio.Lock] = {}
        self._checked: dict[str, _Checked] = {}
        self._written: dict[str, dict[str, Any]] = {}
        """Per registry, the status as this reconciler last left it (under the lock)."""
        self.selection = selection.SelectionCheck()
        self._findings: dict[str, selection.Findings | None] = {}
        self.deep = DeepCheckClock(config.deep_check_seconds)
        self._collection_warnings: set[str] = set()

    async def engine(self, store: StoreConfig) -> SyncEngine:
        """The engine of a configured store, opened on first use (and retried until it opens)."""
        engine = self.engines.get(store.name)
        if engine is None:
            engine = await self._owned.enter_async_context(SyncEngine.open(EngineConfig(
                store.location, store.collection, embedder=store.embedder,
                batch_size=store.batch_size, api_key=store.api_key, timeout=store.timeout,
                page_size=store.page_size, settings=store.cluster, grpc_port=store.grpc_port,
                lock_timeout=0)))  # held by another process: fail now, retried with backoff
            engine.store.collection_recheck = COLLECTION_RECHECK_SECONDS
            self.engines[store.name] = engine
        return engine

    async def close(self) -> None:
        """Close every store and embedder (releases embedded stores' directory locks)."""
        owned, self._owned = self._owned, contextlib.AsyncExitStack()
        self.engines.clear()
        try:
            await owned.aclose()
        finally:
            await self.sink.close()

    def due(self, body: Mapping[str, Any]) -> bool:
        """Whether a drift check (or a retry after a transient failure) is due for ``body``.

        Never for a registry this process has not synced yet: its create, update or resume
        handler will (a timer ticking first, as thousands of them do while those handlers are
        queued on start-up, would sync it twice).
        """
        return self._due(FlowRegistry.of(body))

    def _due(self, registry: FlowRegistry) -> bool:
        wait = self._wait(registry)
        return wait is not None and wait <= 0

    def next_wait(self, body: Mapping[str, Any]) -> float | None:
        """Seconds from now until ``body``'s next re-sync is due: ``spec.interval`` after its
        last sync, or a backoff (2 s doubling up to ``MAX_BACKOFF``) after a transient
        failure; ``None`` for a registry this process has not synced."""
        return self._wait(FlowRegistry.of(body))

    def _wait(self, registry: FlowRegistry) -> float | None:
        checked = self._checked.get(registry.uid)
        if checked is None:
            return None
        if checked.transient:
            wait = min(2.0 * 2 ** (checked.failures - 1), MAX_BACKOFF)
        else:
            wait = registry.interval_seconds()
        return checked.at + wait - time.monotonic()

    def forget(self, body: Mapping[str, Any]) -> None:
        """Drop what is remembered of a deleted registry."""
        uid = uid_of(body)
        self._checked.pop(uid, None)
        self._locks.pop(uid, None)
        self._written.pop(uid, None)
        self.selection.forget(uid)
        self._findings.pop(uid, None)
        self.deep.forget(uid)

    async def check_drift(self, body: Mapping[str, Any]) -> Outcome | None:
        """Re-sync ``body`` if its interval is ``due`` (deep if its deep check is due too);
        ``None`` if not.

        Judged once the registry's lock is held: a sync that was running meanwhile (as on
        start-up, when every registry is resumed) makes the check not due, so the registry is
        not synced a second time right after.
        """
        async with self._lock(body):
            registry = FlowRegistry.of(body)
            if not self._due(registry):
                return None
            return await self._reconcile(registry, "drift")

    async def reconcile(self, body: Mapping[str, Any], *, trigger: str) -> Outcome:
        """Sync one FlowRegistry; ``trigger`` is ``change``, ``resume`` or ``drift``."""
        async with self._lock(body):
            return await self._reconcile(FlowRegistry.of(body), trigger)

    def _lock(self, body: Mapping[str, Any]) -> asyncio.Lock:
        return self._locks.setdefault(uid_of(body), asyncio.Lock())

    async def _reconcile(self, registry: FlowRegistry, trigger: str) -> Outcome:
        uid = registry.uid
        started = time.monotonic()
        before = self._fresh_status(registry)
        result = await self._sync(registry, trigger)
        previous = self._checked.get(uid)
        failures = (previous.failures + 1) if (result.transient and previous) \
            else int(result.transient)
        self._checked[uid] = _Checked(time.monotonic(), result.transient, failures)
        self.metrics.sync_finished(result.outcome.reason, time.monotonic() - started,
                                   result.report)
        await self._write(registry, before, result.outcome, result.report)
        return result.outcome

    def _fresh_status(self, registry: FlowRegistry) -> dict[str, Any]:
        """The registry's status as it is now, not as ``body`` saw it.

        A handler's ``body`` is the object as it was when the handler was queued; a sync that
        held the registry meanwhile may have written a newer status since. What this
        reconciler last wrote (under the same lock) is at least as new, unless the body comes
        from a later generation.
        """
        seen = dict(registry.status)
        written = self._written.get(registry.uid)
        if written is None or (seen.get("observedGeneration") or 0) > (
                written.get("observedGeneration") or 0):
            return seen
        return {**seen, **written}

    async def finalize(self, body: Mapping[str, Any]) -> int:
        """Handle deletion: ``Delete`` removes exactly this registry's points; ``Orphan`` none.

        Returns how many points were deleted. Raises ``FlowregError`` if the store cannot be
        reached, so the finalizer stays and deletion is retried.
        """
        registry = FlowRegistry.of(body)
        owner = registry.owner
        async with self._lock(body):
            if registry.deletion_policy == "Orphan":
                log.info("registry %s deleted; its flows are orphaned", owner)
                return 0
            engine = await self.engine(self.config.store(registry.store))
            with counting() as calls:
                try:
                    deleted = await engine.delete_registry(registry.agent_id, owner)
                finally:
                    self.metrics.operations_since(calls, Counter())
            log.info("registry %s deleted with its %d flow(s)", owner, deleted)
        self.forget(body)
        return deleted

    async def _sync(self, registry: FlowRegistry, trigger: str) -> SyncResult:
        if registry.suspend:
            return SyncResult(Outcome(False, SUSPENDED,
                                      "reconciliation is suspended (spec.suspend)"), None, False)
        try:
            decl = registry.declaration()
            engine = await self.engine(self.config.store(decl.store))
            writer = _ProgressWriter(self.sink, registry, self.config.progress_every_seconds)
            deep = trigger == "drift" and self.deep.due(registry.uid)
            written: dict[str, list[float]] = {}
            with counting() as calls:  # this sync's own (others may run at the same time)
                try:
                    report = await engine.apply(decl.registry, decl.policy, deep=deep,
                                                progress=writer.progress, on_plan=writer.planned,
                                                vectors=written)
                    self._findings[registry.uid] = await self.selection.check(
                        registry.uid, selection.mode_of(registry.spec), engine, decl.registry,
                        _lint_written(registry, report), known=written)
                finally:
                    await writer.finish()
                    self.metrics.operations_since(calls, Counter())
            if deep:
                self.deep.done(registry.uid)
        except FlowregError as exc:
            transient = not exc.permanent
            message = str(exc) if not isinstance(exc, InvalidSpec) else "; ".join(
                str(p) for p in exc.problems[:10])
            return SyncResult(Outcome(False, exc.reason, message, reconciling=transient,
                                      stalled=not transient), None, transient)
        except Exception as exc:  # a defect or a broken install: said in status, retried
            log.exception("internal error reconciling %s/%s", registry.namespace, registry.name)
            message = f"internal error ({type(exc).__name__}: {exc}"[:500].strip() + \
                "); see the operator's log"
            return SyncResult(Outcome(False, INTERNAL_ERROR, message, reconciling=True),
                              None, True)
        for warning in report.warnings:  # the collection as found; said once per process
            if warning not in self._collection_warnings:
                self._collection_warnings.add(warning)
                log.warning("store %s: %s", decl.store, warning)
        count = len(decl.registry.flows)
        if report.conflicts:
            return SyncResult(Outcome(False, CONFLICT, report.conflict_message(), stalled=True),
                              report, False)
        kept = f"; {len(report.kept)} undeclared flow(s) kept (prune: false)" if report.kept \
            else ""
        return SyncResult(selection.outcome_with(self._findings.get(registry.uid), Outcome(
            True, SYNCED, f"{count} flow(s) in sync{kept}")), report, False)

    async def _write(self, registry: FlowRegistry, status: Mapping[str, Any],
                     outcome: Outcome, report: SyncReport | None) -> None:
        body = registry.body
        generation = registry.generation
        previous = status.get("conditions") or []
        patch: dict[str, Any] = {
            "observedGeneration": generation,
            "flowCount": registry.flow_count,
            "conditions": conditions(outcome, generation, previous),
            "progress": None,
            "lastError": None if outcome.ready or outcome.reason in (CONFLICT, SUSPENDED)
            else outcome.message,
        }
        if report is not None:
            patch["conflicts"] = [{"flow": c["flow"], "owner": c["owner"]}
                                  for c in report.conflicts[:20]] or None
            if report.change_count or "lastSync" not in status \
                    or status.get("observedGeneration") != generation:
                patch["lastSync"] = sync_summary(report, self.config.max_status_names)
            findings = self._findings.get(registry.uid)
            patch["selectionLint"] = findings.status() if findings is not None else None
        # The Events first: whoever sees the new status finds them posted.
        await self._events(registry, status, outcome, report)
        if (report is not None and report.change_count) or any(
                status.get(k) != v for k, v in patch.items()):
            await self.sink.patch_status(body, patch)
            self._written[registry.uid] = {k: v for k, v in {**status, **patch}.items()
                                           if v is not None}

    async def _events(self, registry: FlowRegistry, status: Mapping[str, Any],
                      outcome: Outcome, report: SyncReport | None) -> None:
        body = registry.body
        previous = status.get("conditions") or []
        if report is not None and report.change_count:
            reason = DRIFT_REPAIRED if _drift(registry, status) else SYNCED
            await self.sink.event(body, "Normal", reason, report.summary(max_names=10))
        lint_warning = selection.warning(self._findings.get(registry.uid), status) \
            if report is not None else None
        if lint_warning is not None:
            await self.sink.event(body, "Warning", selection.REASON, lint_warning)
        before = next((c for c in previous if c.get("type") == READY), None)
        changed = before is None or before.get("reason") != outcome.reason \
            or before.get("message") != outcome.message
        if not outcome.ready and changed and outcome.reason != SUSPENDED:
            await self.sink.event(body, "Warning", outcome.reason, outcome.message)


class _ProgressWriter:
    """Says in status that a sync is under way, once it has run ``every`` seconds.

    From the plan on, a sync that is still running ``every`` seconds later writes
    ``Reconciling=True`` (reason ``Progressing``) with ``status.progress`` (the engine's last
    checkpoint), then ``status.progress`` at most every ``every`` seconds. A sync that ends
    sooner writes only its outcome: one status write instead of two for the many small syncs
    of a fleet, and nothing a watcher could have seen is lost (the outcome follows at once).
    """

    def __init__(self, sink: Sink, registry: FlowRegistry, every: float) -> None:
        self.sink, self.registry, self.every = sink, registry, every
        self.body = registry.body
        self.last = 0.0
        self.shown = False
        self._progress: dict[str, Any] | None = None
        self._outcome: Outcome | None = None
        self._later: asyncio.Task[None] | None = None
        self._writing = False

    async def planned(self, plan: Plan) -> None:
        if plan.is_noop:
            return
        previous = self.registry.status.get("conditions") or []
        ready = any(c.get("type") == READY and c.get("status") == "True" for c in previous)
        self._outcome = Outcome(ready, PROGRESSING,
                                f"applying {plan.change_count} change(s) "
                                f"({plan.embed_count} to embed)", reconciling=True)
        self._progress = {"done": 0, "total": plan.change_count}
        self._later = asyncio.create_task(self._show_later())

    async def _show_later(self) -> None:
        await asyncio.sleep(self.every)
        assert self._outcome is not None
        self._writing = True
        try:
            await self.sink.patch_status(self.body, {
                "conditions": conditions(self._outcome, self.registry.generation,
                                         self.registry.status.get("conditions") or []),
                "progress": self._progress,
            })
            self.shown = True
            self.last = time.monotonic()
        finally:
            self._writing = False

    async def progress(self, checkpoint: Checkpoint) -> None:
        if checkpoint.total == 0 or checkpoint.done >= checkpoint.total:
            return
        self._progress = {"runId": checkpoint.run_id, "done": checkpoint.done,
                          "total": checkpoint.total}
        if not self.shown or time.monotonic() - self.last < self.every:
            return
        self.last = time.monotonic()
        await self.sink.patch_status(self.body, {"progress": self._progress})

    async def finish(self) -> None:
        """The sync has ended: no progress is written after this returns (a write under way
        is awaited, so the outcome written next is the last word)."""
        later, self._later = self._later, None
        if later is None:
            return
        if not self._writing:
            later.cancel()
        try:
            await later
        except asyncio.CancelledError:
            if not later.cancelled():
                raise
        except Exception as exc:  # the outcome is written next; say why this was not
            log.info("progress of %s/%s not written: %s", self.registry.namespace,
                     self.registry.name, exc)


def _lint_written(registry: FlowRegistry, report: SyncReport) -> Mapping[str, Any] | None:
    """``status.selectionLint`` (``{}`` if absent) when it judged the flows the store holds now:
    the digest matched (the stored flows are those of the sync that wrote it) and the status is
    that sync's outcome at this generation. ``None`` otherwise."""
    status = registry.status
    if report.digest != "matched" or status.get("observedGeneration") != registry.generation:
        return None
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == READY), {})
    if ready.get("reason") not in (SYNCED, selection.REASON):
        return None
    return status.get("selectionLint") or {}


def _drift(registry: FlowRegistry, status: Mapping[str, Any]) -> bool:
    """True when the spec was already synced at this generation (so the changes are drift)."""
    return status.get("observedGeneration") == registry.generation and any(
        c.get("type") == READY and c.get("reason") == SYNCED
        for c in status.get("conditions") or [])

