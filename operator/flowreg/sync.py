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
import inspect
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flowreg.collector import collector_paused
from flowreg.embed.base import CountingEmbedder, EmbedCounts, Embedder, counting_embeddings
from flowreg.embed.factory import make_embedder
from flowreg.errors import (
    DeletionGuard,
    EmbedderUnavailable,
    FlowregError,
    Interrupted,
    InvalidSpec,
    Problem,
)
from flowreg.flow import DeclaredFlows, DeferredFlows, SyncPolicy
from flowreg.history import Checkpoint, RunHistory
from flowreg.location import StoreLocation
from flowreg.plan import Plan, Removal, RemovalReason, VectorSource, Write, guard, plan_sync
from flowreg.report import SyncReport
from flowreg.store import (
    DEFAULT_COLLECTION,
    DEFAULT_LOCATION,
    FlowStore,
    PointWrite,
    ScoredFlow,
    chunks,
    open_store,
    payload_of,
)
from flowreg.store.base import PAYLOAD_VERSION, StoreStats, counting
from flowreg.store.digest import digest_payload, registry_digest, stored_digest
from flowreg.store.settings import GRPC_PORT, CollectionSettings

DEFAULT_BATCH_SIZE = 100
MIN_LOOKAHEAD = 2
"""Batches whose embeddings are requested ahead of the batch being written, at least; an
embedder that serves several calls at once (``concurrency``) gets that many."""
RECHECK_BEFORE_WRITE = 2.0
"""A sync about to write on a trusted collection asks about it again (a collection recreated
behind flowreg's back with another vector size is refused before anything is embedded), unless
it was found less than this many seconds before: the many syncs of an operator's burst share
one check a second or so, instead of one each. (A collection recreated within that window is
refused by its first write instead.)"""
ProgressFn = Callable[[Checkpoint], Awaitable[None] | None]


@dataclass(frozen=True)
class EngineConfig:
    """What ``SyncEngine.open`` opens: a store, an embedder and (optionally) a run history.

    ``location`` and ``collection`` are as ``open_store`` takes them (with ``api_key``,
    ``timeout``, ``page_size``, ``lock_timeout`` and collection ``settings``; ``grpc_port``: a
    Qdrant server is spoken to over gRPC on that port, ``None``: over REST); ``embedder`` is
    a configuration for ``make_embedder`` (``None``: the hashing default) or an ``Embedder``
    the engine then owns; ``history`` is the path of a run-history SQLite file (``None``: no
    history).
    """

    location: str | StoreLocation = DEFAULT_LOCATION
    collection: str = DEFAULT_COLLECTION
    embedder: Mapping[str, Any] | Embedder | None = None
    history: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    api_key: str | None = None
    timeout: float = 30.0
    page_size: int | None = None
    lock_timeout: float | None = None
    settings: CollectionSettings | None = None
    grpc_port: int | None = None


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
        self._matched: dict[tuple[str, str], _Matched] = {}

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, config: EngineConfig) -> AsyncIterator[SyncEngine]:
        """``async with SyncEngine.open(config) as engine``: the engine and what it owns.

        Opens the embedder, the store and the history in that order, and closes every one
        that opened when the block ends or a later one fails to open (the store's close
        releases an embedded store's directory lock). Raises what ``make_embedder``,
        ``open_store`` and ``RunHistory`` raise.
        """
        async with contextlib.AsyncExitStack() as owned:
            embedder = make_embedder(config.embedder) \
                if config.embedder is None or isinstance(config.embedder, Mapping) \
                else config.embedder
            owned.push_async_callback(embedder.aclose)
            store = open_store(config.location, config.collection, api_key=config.api_key,
                               timeout=config.timeout, page_size=config.page_size,
                               lock_timeout=config.lock_timeout, settings=config.settings,
                               prefer_grpc=config.grpc_port is not None,
                               grpc_port=config.grpc_port or GRPC_PORT)
            owned.push_async_callback(store.close)
            history = None
            if config.history is not None:
                history = RunHistory(config.history)
                owned.callback(history.close)
            yield cls(store, embedder, history=history, batch_size=config.batch_size)

    async def plan(self, registry: DeclaredFlows | DeferredFlows,
                   policy: SyncPolicy | None = None, *, deep: bool = False) -> PlannedSync:
        """What ``apply`` would do, without writing anything (the guard is not applied)."""
        policy = policy or SyncPolicy()
        registry = _full(registry)
        if await self.store.collection_exists():
            await self.store.ensure_collection(await self.dimension())
        with collector_paused():
            plan = await self._plan(registry, policy, deep)
        report = _report_of(plan, SyncReport(registry.agent_id, registry.owner, dry_run=True))
        _collection_of(self.store, report)
        return PlannedSync(plan, report)

    async def resolve(self, registry: DeclaredFlows | DeferredFlows,
                      policy: SyncPolicy | None = None) -> DeclaredFlows | DeferredFlows:
        """``registry`` with nothing left to read from its manifest before its ``apply``.

        A deferred registry whose digest matches the store's stays deferred: the digest read
        here is its apply's own (counted in its report, not made again), unless ``apply`` is
        given another policy or ``deep``. Any other deferred registry is read in full now
        (``InvalidSpec`` if its manifest no longer gives what it said). Resolving every
        registry of an apply of several first puts every manifest problem before the first
        write. A store or embedder that fails here gets the registry read in full too: its
        ``apply`` then meets the failure, raises it and records the run.
        """
        if not isinstance(registry, DeferredFlows):
            return registry
        try:
            with counting() as calls:
                dimension = await self.dimension()
                held, _ = await self._held(registry, dimension)
        except Exception:
            return _full(registry)
        want = registry_digest(registry, policy or SyncPolicy(), self.embedder.identity,
                               dimension, PAYLOAD_VERSION)
        if held is not None and stored_digest(held) == want:
            self._matched[(registry.agent_id, registry.owner)] = _Matched(want, held, calls)
            return registry
        return _full(registry)

    async def apply(self, registry: DeclaredFlows | DeferredFlows,
                    policy: SyncPolicy | None = None, *,
                    deep: bool = False, progress: ProgressFn | None = None,
                    on_plan: Callable[[Plan], Awaitable[None]] | None = None,
                    vectors: dict[str, list[float]] | None = None) -> SyncReport:
        """Make the store hold exactly ``registry``'s flows (for its owner) and report it.

        A ``DeferredFlows`` registry is loaded only if its digest does not match the stored
        one (or ``deep``): a matching registry is reported from its names alone.

        Raises ``DeletionGuard`` before any write if the plan deletes more than ``policy``
        allows, ``StoreUnavailable``/``EmbedderUnavailable`` if a backend fails (the run is
        recorded as failed, with its checkpoint). Conflicts do not raise: they are in the report.
        ``on_plan`` is awaited with the plan once it has passed the guard, before any write.
        ``vectors``, if given, receives the vector of every point the sync wrote with one
        (embedded or copied), by point id: what a caller would otherwise read back.
        """
        with counting() as run, counting_embeddings() as embeddings:
            return await self._apply(registry, policy, deep, progress, on_plan, run,
                                     embeddings, vectors)

    async def _apply(self, registry: DeclaredFlows | DeferredFlows, policy: SyncPolicy | None,
                     deep: bool,
                     progress: ProgressFn | None,
                     on_plan: Callable[[Plan], Awaitable[None]] | None, run: StoreStats,
                     embeddings: EmbedCounts,
                     vectors: dict[str, list[float]] | None = None) -> SyncReport:
        """``apply``, counting this run's store calls in ``run`` and embeddings in
        ``embeddings`` (syncs of other registries may run at the same time)."""
        policy = policy or SyncPolicy()
        run_id = uuid.uuid4().hex
        started = time.monotonic()
        report = SyncReport(registry.agent_id, registry.owner, run_id=run_id)
        if self.history is not None:
            interrupted = self.history.start(run_id, registry.owner, registry.agent_id)
            if interrupted is not None:
                report.resumed = {"run_id": interrupted.run_id, "done": interrupted.done,
                                  "total": interrupted.total}
        try:
            dimension = await self.dimension()
            want = registry_digest(registry, policy, self.embedder.identity, dimension,
                                   PAYLOAD_VERSION)
            matched = self._matched.pop((registry.agent_id, registry.owner), None)
            trusted = False
            if matched is not None and matched.want == want and not deep:
                held = matched.held  # read by ``resolve``: its calls are this run's
                run.calls.update(matched.calls.calls)
                run.points_read += matched.calls.points_read
            else:
                held, trusted = await self._held(registry, dimension)
            if not deep and held is not None and stored_digest(held) == want:
                await self._checkpoint(Checkpoint(run_id, 0, 0), progress)
                plan: Plan | None = None
                report.skipped = list(registry.names)
                kept = held.get("kept")
                report.kept = [str(n) for n in kept] if isinstance(kept, list) else []
                report.digest = "matched"
            else:
                registry = _full(registry)
                if trusted:  # about to write: the collection is asked, not trusted
                    await self.store.recheck_collection(dimension,
                                                        older_than=RECHECK_BEFORE_WRITE)
                with collector_paused():
                    plan = await self._plan(registry, policy, deep)
                guard(plan, registry, policy)
                if on_plan is not None:
                    await on_plan(plan)
                if held is not None and (not plan.is_noop or plan.conflicts):
                    # Before the first write: a run cut short leaves no digest behind.
                    await self.store.clear_digest(registry.agent_id, registry.owner)
                report.batches = await self._execute(plan, run_id, progress, vectors)
                if plan.conflicts:
                    report.digest = "none"  # re-planned until the conflict is resolved
                else:
                    if held is None or not plan.is_noop or stored_digest(held) != want:
                        # Last, after the final batch.
                        await self.store.write_digest(
                            registry.agent_id, registry.owner,
                            digest_payload(registry, want, list(plan.kept)), dimension)
                    report.digest = "written"
        except BaseException as exc:
            if self.history is not None:
                status = ("refused" if isinstance(exc, DeletionGuard)
                          else "interrupted" if isinstance(exc, Interrupted) else "failed")
                message = str(exc) if isinstance(exc, FlowregError) else repr(exc)
                self.history.finish(run_id, status, error=message)
            raise
        if plan is not None:
            _report_of(plan, report)
        _collection_of(self.store, report)
        report.store_calls = run.total
        report.store_writes = run.writes
        report.points_written = run.points_written
        report.points_deleted = run.points_deleted
        report.embedding_calls = embeddings.calls
        report.embedded_texts = embeddings.texts
        report.duration_seconds = round(time.monotonic() - started, 6)
        if self.history is not None:
            self.history.finish(run_id, "succeeded", report=report.to_dict(max_names=50))
        return report

    async def _plan(self, registry: DeclaredFlows, policy: SyncPolicy, deep: bool) -> Plan:
        # The snapshot is freed before the collector resumes (see _no_gc).
        # Only what the plan reads: the registry's own points, and others' under its names.
        snapshot = await self.store.snapshot(registry.agent_id, deep=deep, owner=registry.owner,
                                             names=[f.name for f in registry.flows])
        return plan_sync(registry, snapshot,
                         self.embedder.identity, policy, verify_ids=deep)

    async def dimension(self) -> int:
        """The embedder's vector size, asking the backend once if it is not configured."""
        return await self.embedder.probe()

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

    async def _execute(self, plan: Plan, run_id: str, progress: ProgressFn | None,
                       written: dict[str, list[float]] | None = None) -> int:
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
                if written is not None:
                    written.update(vectors)
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

    async def _held(self, registry: DeclaredFlows | DeferredFlows,
                    dimension: int) -> tuple[dict[str, Any] | None, bool]:
        """The registry's stored digest (None if there is none), its collection ensured first,
        and whether that collection was trusted without asking (``FlowStore.knows_collection``).
        A read that fails on a trusted collection asks about it and reads again (it may have
        been deleted since: ``ensure_collection`` then recreates it)."""
        trusted = self.store.knows_collection(dimension)
        await self.store.ensure_collection(dimension)
        try:
            return await self.store.read_digest(registry.agent_id, registry.owner), trusted
        except Exception:
            if not trusted:
                raise
        await self.store.recheck_collection(dimension)
        return await self.store.read_digest(registry.agent_id, registry.owner), False

    async def _checkpoint(self, checkpoint: Checkpoint, progress: ProgressFn | None) -> None:
        if self.history is not None:
            self.history.checkpoint(checkpoint)
        if progress is not None:
            result = progress(checkpoint)
            if inspect.isawaitable(result):
                await result


@dataclass(frozen=True)
class _Matched:
    """A deferred registry ``resolve`` found matching: the digest it wants, the stored digest
    point, and the store calls that read it."""

    want: str
    held: dict[str, Any]
    calls: StoreStats


def _full(registry: DeclaredFlows | DeferredFlows) -> DeclaredFlows:
    """``registry`` with its flows; a deferred one is loaded and must be what it said it was."""
    if isinstance(registry, DeclaredFlows):
        return registry
    full = registry.load()
    if (full.agent_id, full.owner, full.names, full.content_checksums) != (
            registry.agent_id, registry.owner, registry.names, registry.content_checksums):
        raise InvalidSpec(Problem(
            f"FlowRegistry {registry.owner}: its manifest no longer gives the flows it gave "
            "when it was first read; nothing of it was written", source=registry.owner))
    return full


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
