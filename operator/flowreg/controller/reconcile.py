"""The reconcile loop's body, free of kopf: read a FlowRegistry, sync it, say so in its status.

``Reconciler.reconcile`` is level-triggered: whatever woke it (a change, an operator restart, a
drift-check tick), it plans against Qdrant, applies, and writes the status and Events through a
``Sink``. It never raises for a failure of the registry or a backend: the failure becomes the
status (``Ready=False`` with a reason) and, for transient failures, a retry with backoff at a
later tick (``due``). Syncs of one registry never overlap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from flowreg import schema
from flowreg.controller.config import OperatorConfig, StoreConfig, parse_duration
from flowreg.controller.metrics import Metrics
from flowreg.controller.status import Outcome, conditions, sync_summary
from flowreg.embed.factory import make_embedder
from flowreg.errors import FlowregError, InvalidSpec
from flowreg.flow import plain
from flowreg.history import Checkpoint
from flowreg.manifest import INTERVAL_PATH, parse_object
from flowreg.plan import Plan
from flowreg.report import SyncReport
from flowreg.store import open_store
from flowreg.sync import SyncEngine

log = logging.getLogger("flowreg.controller")
DEFAULT_INTERVAL = 600.0
MAX_BACKOFF = 300.0


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


class Reconciler:
    """Syncs FlowRegistries into the stores of an ``OperatorConfig``."""

    def __init__(self, config: OperatorConfig, sink: Sink, metrics: Metrics | None = None) -> None:
        self.config = config
        self.sink = sink
        self.metrics = metrics or Metrics.default()
        self.engines: dict[str, SyncEngine] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._checked: dict[str, _Checked] = {}
        self._written: dict[str, dict[str, Any]] = {}
        """Per registry, the status as this reconciler last left it (under the lock)."""
        self._collection_warnings: set[str] = set()

    async def engine(self, store: StoreConfig) -> SyncEngine:
        """The engine of a configured store, opened on first use (and retried until it opens)."""
        engine = self.engines.get(store.name)
        if engine is None:
            embedder = make_embedder(store.embedder)
            flow_store = open_store(store.location, store.collection, api_key=store.api_key,
                                    timeout=store.timeout, page_size=store.page_size,
                                    settings=store.cluster)
            engine = SyncEngine(flow_store, embedder, batch_size=store.batch_size)
            self.engines[store.name] = engine
        return engine

    async def close(self) -> None:
        """Close every store and embedder (releases embedded stores' directory locks)."""
        for engine in self.engines.values():
            await engine.store.close()
            await engine.embedder.aclose()
        self.engines.clear()
        await self.sink.close()

    def due(self, body: Mapping[str, Any]) -> bool:
        """Whether a drift check (or a retry after a transient failure) is due for ``body``."""
        checked = self._checked.get(_uid(body))
        if checked is None:
            return True
        if checked.transient:
            wait = min(2.0 * 2 ** (checked.failures - 1), MAX_BACKOFF)
        else:
            try:
                wait = parse_duration((body.get("spec") or {}).get("interval") or "10m")
            except ValueError:
                wait = DEFAULT_INTERVAL
            wait = max(wait, schema.minimum_duration(INTERVAL_PATH) or 0.0)
        return time.monotonic() - checked.at >= wait

    def forget(self, body: Mapping[str, Any]) -> None:
        """Drop what is remembered of a deleted registry."""
        self._checked.pop(_uid(body), None)
        self._locks.pop(_uid(body), None)
        self._written.pop(_uid(body), None)

    async def check_drift(self, body: Mapping[str, Any]) -> Outcome | None:
        """Reconcile ``body`` with a deep check if one is ``due``; ``None`` if not.

        Judged once the registry's lock is held: a sync that was running meanwhile (as on
        start-up, when every registry is resumed) makes the check not due, so the registry is
        not synced a second time right after.
        """
        async with self._lock(body):
            if not self.due(body):
                return None
            return await self._reconcile(body, "drift")

    async def reconcile(self, body: Mapping[str, Any], *, trigger: str) -> Outcome:
        """Sync one FlowRegistry; ``trigger`` is ``change``, ``resume`` or ``drift``."""
        async with self._lock(body):
            return await self._reconcile(body, trigger)

    def _lock(self, body: Mapping[str, Any]) -> asyncio.Lock:
        return self._locks.setdefault(_uid(body), asyncio.Lock())

    async def _reconcile(self, body: Mapping[str, Any], trigger: str) -> Outcome:
        uid = _uid(body)
        started = time.monotonic()
        before = self._fresh_status(uid, body)
        outcome, report, transient = await self._sync(body, trigger)
        previous = self._checked.get(uid)
        failures = (previous.failures + 1) if (transient and previous) else int(transient)
        self._checked[uid] = _Checked(time.monotonic(), transient, failures)
        self.metrics.sync_finished(outcome.reason, time.monotonic() - started, report)
        await self._write(body, before, outcome, report)
        return outcome

    def _fresh_status(self, uid: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """The registry's status as it is now, not as ``body`` saw it.

        A handler's ``body`` is the object as it was when the handler was queued; a sync that
        held the registry meanwhile may have written a newer status since. What this
        reconciler last wrote (under the same lock) is at least as new, unless the body comes
        from a later generation.
        """
        seen = plain(body.get("status") or {})
        written = self._written.get(uid)
        if written is None or (seen.get("observedGeneration") or 0) > (
                written.get("observedGeneration") or 0):
            return seen
        return {**seen, **written}

    async def finalize(self, body: Mapping[str, Any]) -> int:
        """Handle deletion: ``Delete`` removes exactly this registry's points; ``Orphan`` none.

        Returns how many points were deleted. Raises ``FlowregError`` if the store cannot be
        reached, so the finalizer stays and deletion is retried.
        """
        spec = body.get("spec") or {}
        meta = body.get("metadata") or {}
        owner = f"{meta.get('namespace') or 'default'}/{meta.get('name')}"
        async with self._locks.setdefault(_uid(body), asyncio.Lock()):
            if spec.get("deletionPolicy", "Delete") == "Orphan":
                log.info("registry %s deleted; its flows are orphaned", owner)
                return 0
            engine = await self.engine(self.config.store(spec.get("store", "default")))
            before = engine.store.stats.calls.copy()
            try:
                deleted = await engine.delete_registry(spec["agentId"], owner)
            finally:
                self.metrics.operations_since(engine.store.stats, before)
            log.info("registry %s deleted with its %d flow(s)", owner, deleted)
        self.forget(body)
        return deleted

    async def _sync(self, body: Mapping[str, Any], trigger: str,
                    ) -> tuple[Outcome, SyncReport | None, bool]:
        spec = body.get("spec") or {}
        if spec.get("suspend"):
            return Outcome(False, "Suspended", "reconciliation is suspended (spec.suspend)"), \
                None, False
        meta = body.get("metadata") or {}
        try:
            decl = parse_object({"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
                                 "metadata": {"name": meta.get("name"),
                                              "namespace": meta.get("namespace")},
                                 "spec": plain(spec)})
            engine = await self.engine(self.config.store(decl.store))
            writer = _ProgressWriter(self.sink, body, self.config.progress_every_seconds)
            stats_before = engine.store.stats.calls.copy()
            try:
                report = await engine.apply(decl.registry, decl.policy,
                                            deep=trigger == "drift",
                                            progress=writer.progress, on_plan=writer.planned)
            finally:
                self.metrics.operations_since(engine.store.stats, stats_before)
        except FlowregError as exc:
            transient = not exc.permanent
            message = str(exc) if not isinstance(exc, InvalidSpec) else "; ".join(
                str(p) for p in exc.problems[:10])
            return Outcome(False, exc.reason, message, reconciling=transient,
                           stalled=not transient), None, transient
        except Exception as exc:  # a defect or a broken install: said in status, retried
            log.exception("internal error reconciling %s/%s", meta.get("namespace"),
                          meta.get("name"))
            message = f"internal error ({type(exc).__name__}: {exc}"[:500].strip() + \
                "); see the operator's log"
            return Outcome(False, "InternalError", message, reconciling=True), None, True
        for warning in report.warnings:  # the collection as found; said once per process
            if warning not in self._collection_warnings:
                self._collection_warnings.add(warning)
                log.warning("store %s: %s", decl.store, warning)
        count = len(decl.registry.flows)
        if report.conflicts:
            owners = ", ".join(f"{c['flow']} (owned by {c['owner']})"
                               for c in report.conflicts[:5])
            more = f" and {len(report.conflicts) - 5} more" if len(report.conflicts) > 5 else ""
            return Outcome(False, "Conflict",
                           f"{len(report.conflicts)} declared flow(s) belong to another "
                           f"registry and were left untouched: {owners}{more}"), report, False
        kept = f"; {len(report.kept)} undeclared flow(s) kept (prune: false)" if report.kept \
            else ""
        return Outcome(True, "Synced", f"{count} flow(s) in sync{kept}"), report, False

    async def _write(self, body: Mapping[str, Any], status: Mapping[str, Any],
                     outcome: Outcome, report: SyncReport | None) -> None:
        meta = body.get("metadata") or {}
        generation = meta.get("generation")
        previous = status.get("conditions") or []
        patch: dict[str, Any] = {
            "observedGeneration": generation,
            "flowCount": len((body.get("spec") or {}).get("flows") or []),
            "conditions": conditions(outcome, generation, previous),
            "progress": None,
            "lastError": None if outcome.ready or outcome.reason in ("Conflict", "Suspended")
            else outcome.message,
        }
        if report is not None:
            patch["conflicts"] = [{"flow": c["flow"], "owner": c["owner"]}
                                  for c in report.conflicts[:20]] or None
            if report.change_count or "lastSync" not in status \
                    or status.get("observedGeneration") != generation:
                patch["lastSync"] = sync_summary(report, self.config.max_status_names)
        if (report is not None and report.change_count) or any(
                status.get(k) != v for k, v in patch.items()):
            await self.sink.patch_status(body, patch)
            self._written[_uid(body)] = {k: v for k, v in {**status, **patch}.items()
                                         if v is not None}
        await self._events(body, status, outcome, report)

    async def _events(self, body: Mapping[str, Any], status: Mapping[str, Any],
                      outcome: Outcome, report: SyncReport | None) -> None:
        previous = status.get("conditions") or []
        if report is not None and report.change_count:
            reason = "DriftRepaired" if _drift(body, status) else "Synced"
            await self.sink.event(body, "Normal", reason, report.summary(max_names=10))
        before = next((c for c in previous if c.get("type") == "Ready"), None)
        changed = before is None or before.get("reason") != outcome.reason \
            or before.get("message") != outcome.message
        if not outcome.ready and changed and outcome.reason != "Suspended":
            await self.sink.event(body, "Warning", outcome.reason, outcome.message)


class _ProgressWriter:
    """Writes ``status.progress`` (the engine's checkpoint) at most every few seconds."""

    def __init__(self, sink: Sink, body: Mapping[str, Any], every: float) -> None:
        self.sink, self.body, self.every = sink, body, every
        self.last = 0.0

    async def planned(self, plan: Plan) -> None:
        if plan.is_noop:
            return
        generation = (self.body.get("metadata") or {}).get("generation")
        previous = (self.body.get("status") or {}).get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in previous)
        outcome = Outcome(ready, "Progressing",
                          f"applying {plan.change_count} change(s) "
                          f"({plan.embed_count} to embed)", reconciling=True)
        await self.sink.patch_status(self.body, {
            "conditions": conditions(outcome, generation, previous),
            "progress": {"done": 0, "total": plan.change_count},
        })
        self.last = time.monotonic()

    async def progress(self, checkpoint: Checkpoint) -> None:
        if checkpoint.total == 0 or checkpoint.done >= checkpoint.total:
            return
        if time.monotonic() - self.last < self.every:
            return
        self.last = time.monotonic()
        await self.sink.patch_status(self.body, {"progress": {
            "runId": checkpoint.run_id, "done": checkpoint.done, "total": checkpoint.total}})


def _drift(body: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """True when the spec was already synced at this generation (so the changes are drift)."""
    meta = body.get("metadata") or {}
    return status.get("observedGeneration") == meta.get("generation") and any(
        c.get("type") == "Ready" and c.get("reason") == "Synced"
        for c in status.get("conditions") or [])


def _uid(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")

