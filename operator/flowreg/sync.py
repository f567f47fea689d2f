"""The sync engine: snapshot, plan, guard, then apply the plan in batches with checkpoints.

``SyncEngine.apply`` is the one place with side effects. For each batch of (by default) 100
changes it makes at most one embedding call and exactly one Qdrant write call, then saves a
checkpoint. It is safe to kill at any moment: point ids are deterministic and every written
point carries its checksums, so a rerun re-plans from what the store holds, skips what was
written, embeds nothing twice and duplicates nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

from flowreg.embed.base import CountingEmbedder, Embedder
from flowreg.errors import DeletionGuard, EmbedderUnavailable, FlowregError, InvalidSpec
from flowreg.flow import Registry, SyncPolicy
from flowreg.history import Checkpoint, RunHistory
from flowreg.plan import Plan, Removal, RemovalReason, VectorSource, Write, guard, plan_sync
from flowreg.report import SyncReport
from flowreg.store import FlowStore, PointWrite, ScoredFlow, chunks, payload_of

DEFAULT_BATCH_SIZE = 100
MIN_LOOKAHEAD = 2
"""Batches whose embeddings are requested ahead of the batch being written, at least; an
embedder that serves several calls at once (``concurrency``) gets that many."""
ProgressFn = Callable[[Checkpoint], Awaitable[None] | None]


@dataclass(frozen=True)
class PlannedSync:
    """A plan together with the report it would produce."""

    plan: Plan
    report: SyncReport


class SyncEngine:
    """Syncs registries into one store with one embedder.

    ``history`` (optional) records every run and its checkpoints. ``store.stats`` and
    ``embedder`` (a ``CountingEmbedder``) count the work done across the engine's life; each
    report carries the counts of its own run.
    """

    def __init__(self, store: FlowStore, embedder: Embedder, *,
                 history: RunHistory | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.store = store
        self.embedder = embedder if isinstance(embedder, CountingEmbedder) \
            else CountingEmbedder(embedder)
        self.history = history
        self.batch_size = batch_size
        self.lookahead = max(MIN_LOOKAHEAD, self.embedder.concurrency)

    async def plan(self, registry: Registry, policy: SyncPolicy | None = None, *,
                   deep: bool = False) -> PlannedSync:
        """What ``apply`` would do, without writing anything (the guard is not applied)."""
        policy = policy or SyncPolicy()
        if await self.store.collection_exists():
            await self.store.ensure_collection(await self.dimension())
        with _no_gc():
            plan = await self._plan(registry, policy, deep)
        report = _report_of(plan, SyncReport(registry.agent_id, registry.owner, dry_run=True))
        _collection_of(self.store, report)
        return PlannedSync(plan, report)

    async def apply(self, registry: Registry, policy: SyncPolicy | None = None, *,
                    deep: bool = False, progress: ProgressFn | None = None,
                    on_plan: Callable[[Plan], Awaitable[None]] | None = None) -> SyncReport:
        """Make the store hold exactly ``registry``'s flows (for its owner) and report it.

        Raises ``DeletionGuard`` before any write if the plan deletes more than ``policy``
        allows, ``StoreUnavailable``/``EmbedderUnavailable`` if a backend fails (the run is
        recorded as failed, with its checkpoint). Conflicts do not raise: they are in the report.
        ``on_plan`` is awaited with the plan once it has passed the guard, before any write.
        """
        policy = policy or SyncPolicy()
        run_id = uuid.uuid4().hex
        started = time.monotonic()
        calls0, writes0 = self.store.stats.total, self.store.stats.writes
        written0, deleted0 = self.store.stats.points_written, self.store.stats.points_deleted
        emb_calls0, emb_texts0 = self.embedder.calls, self.embedder.texts
        report = SyncReport(registry.agent_id, registry.owner, run_id=run_id)
        if self.history is not None:
            interrupted = self.history.start(run_id, registry.owner, registry.agent_id)
            if interrupted is not None:
                report.resumed = {"run_id": interrupted.run_id, "done": interrupted.done,
                                  "total": interrupted.total}
        try:
            await self.store.ensure_collection(await self.dimension())
            with _no_gc():
                plan = await self._plan(registry, policy, deep)
            guard(plan, registry, policy)
            if on_plan is not None:
                await on_plan(plan)
            report.batches = await self._execute(plan, run_id, progress)
        except BaseException as exc:
            if self.history is not None:
                status = "refused" if isinstance(exc, DeletionGuard) else "failed"
                message = str(exc) if isinstance(exc, FlowregError) else repr(exc)
                self.history.finish(run_id, status, error=message)
            raise
        _report_of(plan, report)
        _collection_of(self.store, report)
        stats = self.store.stats
        report.store_calls = stats.total - calls0
        report.store_writes = stats.writes - writes0
        report.points_written = stats.points_written - written0
        report.points_deleted = stats.points_deleted - deleted0
        report.embedding_calls = self.embedder.calls - emb_calls0
        report.embedded_texts = self.embedder.texts - emb_texts0
        report.duration_seconds = round(time.monotonic() - started, 6)
        if self.history is not None:
            self.history.finish(run_id, "succeeded", report=report.to_dict(max_names=50))
        return report

    async def _plan(self, registry: Registry, policy: SyncPolicy, deep: bool) -> Plan:
        # The snapshot is freed before the collector resumes (see _no_gc).
        # Only what the plan reads: the registry's own points, and others' under its names.
        snapshot = await self.store.snapshot(registry.agent_id, deep=deep, owner=registry.owner,
                                             names=[f.name for f in registry.flows])
        return plan_sync(registry, snapshot,
                         self.embedder.identity, policy, verify_ids=deep)

    async def dimension(self) -> int:
        """The embedder's vector size, asking the backend once if it is not configured."""
        try:
            return self.embedder.dimension
        except Exception:
            probe = getattr(self.embedder.inner, "probe", None)
            if probe is None:
                raise
            await probe()
            return self.embedder.dimension

    async def query(self, agent_id: str, text: str, limit: int = 5) -> list[ScoredFlow]:
        """The flows of ``agent_id`` that ``text`` selects, best first, with cosine scores.

        Raises ``InvalidSpec`` if the agent has no flows in the store, or if its flows were
        embedded by another embedder than this engine's (their vectors are not comparable);
        ``StoreIncompatible`` if the collection's vector size is not the embedder's.
        """
        snapshot = await self.store.snapshot(agent_id)
        if not len(snapshot):
            raise InvalidSpec(f"agent {agent_id!r} has no flows in collection "
                              f"{self.store.collection!r} of {self.store.location}")
        writers = sorted({p.embedder or "unknown" for p in snapshot})
        identity = self.embedder.identity
        if identity not in writers:
            raise InvalidSpec(
                f"the flows of agent {agent_id!r} were embedded with {', '.join(writers)}, not "
                f"{identity}; query with the embedder that wrote them (vectors of different "
                "embedders are not comparable)")
        await self.store.ensure_collection(await self.dimension())
        [vector] = await self.embedder.embed([text])
        hits = await self.store.search(agent_id, vector, limit)
        return [h for h in hits if h.payload.get("embedder") == identity]

    async def delete_registry(self, agent_id: str, owner: str) -> int:
        """Delete every point ``owner`` holds for ``agent_id`` (a deleted registry)."""
        return await self.store.delete_owned(agent_id, owner)

    async def _execute(self, plan: Plan, run_id: str, progress: ProgressFn | None) -> int:
        items: list[Write | Removal] = [*plan.writes, *plan.deletes]
        total = len(items)
        if total == 0:
            await self._checkpoint(Checkpoint(run_id, 0, 0), progress)
            return 0
        copy_ids = sorted({w.copy_from for w in plan.writes
                           if w.vector is VectorSource.COPY and w.copy_from})
        donors = await self.store.vectors(copy_ids) if copy_ids else {}
        batches = list(chunks(items, self.batch_size))
        # The vectors of the next `lookahead` batches are computed while this batch is written,
        # so embedding round-trips overlap each other and the writes.
        ahead = self.lookahead
        pending = deque(self._start_embedding(b, donors) for b in batches[:ahead])
        done = 0
        try:
            for index, batch in enumerate(batches):
                vectors = await pending.popleft()
                if index + ahead < len(batches):
                    pending.append(self._start_embedding(batches[index + ahead], donors))
                await asyncio.sleep(0)  # let the new requests go out before the write
                writes: list[PointWrite] = []
                deletes: list[str] = []
                for item in batch:
                    if isinstance(item, Removal):
                        deletes.append(item.point_id)
                        continue
                    payload = payload_of(item.flow, plan.agent_id, plan.owner, plan.embedder)
                    vector = None if item.vector is VectorSource.KEEP else vectors[item.point_id]
                    writes.append(PointWrite(item.point_id, payload, vector))
                await self.store.write(writes, deletes)
                done += len(batch)
                await self._checkpoint(Checkpoint(run_id, done, total), progress)
        except BaseException as exc:
            for task in pending:
                task.cancel()
            if self.history is not None:
                self.history.checkpoint(Checkpoint(run_id, done, total, error=str(exc)))
            raise
        return len(batches)

    def _start_embedding(self, batch: Sequence[Write | Removal],
                         donors: dict[str, list[float]]) -> asyncio.Task[dict[str, list[float]]]:
        """Start computing the vectors of ``batch`` (one embedding call at most)."""
        return asyncio.ensure_future(self._vectors_for(batch, donors))

    async def _vectors_for(self, batch: Sequence[Write | Removal],
                           donors: dict[str, list[float]]) -> dict[str, list[float]]:
        vectors: dict[str, list[float]] = {}
        to_embed: list[Write] = []
        for item in batch:
            if not isinstance(item, Write) or item.vector is VectorSource.KEEP:
                continue
            donor = donors.get(item.copy_from or "") if item.vector is VectorSource.COPY else None
            if donor is not None:
                vectors[item.point_id] = donor
            else:
                to_embed.append(item)
        if to_embed:
            embedded = await self.embedder.embed([w.flow.embedding_text for w in to_embed])
            if len(embedded) != len(to_embed):
                raise EmbedderUnavailable(
                    f"embedder {self.embedder.identity} returned {len(embedded)} vectors "
                    f"for {len(to_embed)} texts")
            for write, vector in zip(to_embed, embedded, strict=True):
                if len(vector) != self.embedder.dimension:
                    raise EmbedderUnavailable(
                        f"embedder {self.embedder.identity} returned a {len(vector)}-dimensional "
                        f"vector for flow {write.flow.name!r}, expected {self.embedder.dimension}")
                vectors[write.point_id] = vector
        return vectors

    async def _checkpoint(self, checkpoint: Checkpoint, progress: ProgressFn | None) -> None:
        if self.history is not None:
            self.history.checkpoint(checkpoint)
        if progress is not None:
            result = progress(checkpoint)
            if inspect.isawaitable(result):
                await result


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while tens of thousands of small objects are made.

    They are acyclic and short-lived, but each collection would scan every object of the
    process, embedded Qdrant's included: with 50,000 stored flows that doubles a snapshot.
    Free them before the block ends: the collector counts objects made and not yet freed, and
    would otherwise run as soon as it resumes.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _collection_of(store: FlowStore, report: SyncReport) -> None:
    """The collection's layout and the warnings about it, into ``report``."""
    report.collection = store.held.to_dict() if store.held is not None else None
    report.warnings = list(store.warnings)


def _report_of(plan: Plan, report: SyncReport) -> SyncReport:
    renamed_to = {new for _, new in plan.renames}
    report.created = [w.flow.name for w in plan.creates if w.flow.name not in renamed_to]
    report.updated = [w.flow.name for w in plan.updates]
    report.deleted = [r.name for r in plan.deletes if r.reason is RemovalReason.UNDECLARED]
    report.duplicates_removed = [r.name for r in plan.deletes
                                 if r.reason is RemovalReason.DUPLICATE]
    report.renamed = [{"from": old, "to": new} for old, new in plan.renames]
    report.skipped = list(plan.skips)
    report.conflicts = [{"flow": c.name, "owner": c.owner} for c in plan.conflicts]
    report.kept = list(plan.kept)
    report.vectors_reused = sum(1 for w in plan.writes if w.vector is not VectorSource.EMBED)
    return report
