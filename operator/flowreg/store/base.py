"""The store seam: what the sync engine needs of a store holding flows as Qdrant points.

One collection (or Edge shard) holds the flows of many agents; every point's payload says whose
it is (``agent_id``, ``owner``) and what it holds (the flow's fields, its content and text
checksums, and the identity of the embedder that made its vector). Point ids are
``flow.point_id(agent, name)``, so a retried create never duplicates and an update keeps the id.

``FlowStore`` implements the engine-facing operations once (snapshots, deep snapshots, export,
owner deletion, batching) over a handful of backend primitives; each backend (Qdrant Edge,
a Qdrant server or qdrant-client's emulation) is a subclass in its own module. Every primitive
call is counted in ``stats`` under the seam's operation name, on every backend, and backend
failures are mapped to flowreg's errors here, once.
"""

from __future__ import annotations

import abc
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn, TypeVar

from flowreg.errors import FlowregError, StoreIncompatible
from flowreg.flow import Entry, Flow, Snapshot, StoredPoint
from flowreg.store.digest import digest_point_id, digest_vector
from flowreg.store.settings import CollectionLayout, CollectionSettings, layout_warnings

DEFAULT_COLLECTION = "flowreg_flows"
DEFAULT_LOCATION = ".flowreg/qdrant"
PAYLOAD_VERSION = 1
INDEXED_FIELDS = ("agent_id", "owner", "name")
SNAPSHOT_FIELDS = ["agent_id", "name", "owner", "checksum", "text_checksum", "embedder"]
CONTENT_FIELDS = ["description", "examples", "conditions", "blueprint"]
ONE_SCROLL_NAMES = 1_000
"""A snapshot of a registry declaring at most this many flows reads its owner's points and
others' under its names in one filtered scroll; a larger one counts the others first (a filter
naming every flow of a large registry is a large request, and usually matches nothing)."""
WRITE_CALLS = ("batch_update_points", "upsert", "delete", "overwrite_payload", "write_digest",
               "clear_digest")

T = TypeVar("T")
Page = list[tuple[str, dict[str, Any]]]
"""One page of a scroll: (point id, payload subset) pairs."""


@dataclass
class StoreStats:
    """Calls made to the store's backend, by operation, and points read, written and deleted.

    Write operations are ``upsert`` (points with vectors only), ``delete`` (deletions only) and
    ``batch_update_points`` (anything mixed, or payload rewrites): one per batch on every backend;
    and ``write_digest`` / ``clear_digest`` (the registry digest: one each per changing sync).
    ``read_digest`` is the one read of a sync whose registry is unchanged.
    """

    calls: Counter[str] = field(default_factory=Counter)
    points_read: int = 0
    """Points the snapshots, deep snapshots and exports read (whatever the backend returned)."""
    points_written: int = 0
    points_deleted: int = 0

    @property
    def writes(self) -> int:
        """Calls that change the store."""
        return sum(self.calls[name] for name in WRITE_CALLS)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


_RUNS: ContextVar[tuple[StoreStats, ...]] = ContextVar("flowreg_store_runs", default=())
"""The ``counting`` blocks the current task is in (a task started inside one inherits it)."""


@contextlib.contextmanager
def counting() -> Iterator[StoreStats]:
    """Count the store calls made by this task (and tasks it starts) inside the block only.

    ``FlowStore.stats`` counts every call of a store; syncs of several registries running at
    once on one store each count their own calls here.
    """
    stats = StoreStats()
    token = _RUNS.set((*_RUNS.get(), stats))
    try:
        yield stats
    finally:
        _RUNS.reset(token)


def _counted(name: str, points_read: int = 0, *, into: StoreStats) -> None:
    for stats in (into, *_RUNS.get()):
        stats.calls[name] += 1
        stats.points_read += points_read


@dataclass(frozen=True)
class PointWrite:
    """A point to upsert with its vector, or (``vector`` None) a payload to overwrite."""

    id: str
    payload: dict[str, Any]
    vector: list[float] | None = None


@dataclass(frozen=True)
class Scope:
    """The points a scroll or count reads: those of ``agent_id`` (None: of every agent); with
    ``owner``, only those ``owner`` holds, or (``others``) only those it does not hold; with
    ``names``, only those under one of ``names``; with ``owner`` and ``also_names``, those
    ``owner`` holds and any others under one of ``also_names``."""

    agent_id: str | None
    owner: str | None = None
    others: bool = False
    names: tuple[str, ...] | None = None
    also_names: tuple[str, ...] | None = None
    flows_only: bool = False
    """Only flow points (payload ``flowreg`` is ``PAYLOAD_VERSION``): no registry digests."""


@dataclass(frozen=True)
class ScoredFlow:
    """A flow a vector query selected, with its cosine similarity."""

    id: str
    score: float
    payload: Mapping[str, Any]


def payload_of(flow: Flow, agent_id: str, owner: str, embedder: str) -> dict[str, Any]:
    """The payload stored with a flow's point: enough to plan, select and read the flow back."""
    return {
        "flowreg": PAYLOAD_VERSION,
        "agent_id": agent_id,
        "owner": owner,
        "name": flow.name,
        "checksum": flow.content_checksum,
        "text_checksum": flow.text_checksum,
        "embedder": embedder,
        "description": flow.description,
        "examples": list(flow.examples),
        "conditions": list(flow.conditions),
        "blueprint": flow.blueprint,
    }


def flow_of(payload: Mapping[str, Any]) -> Flow:
    """The flow a point's payload holds (its declared checksum is the stored one)."""
    return Flow(
        name=payload["name"],
        description=payload.get("description", ""),
        examples=tuple(payload.get("examples") or ()),
        conditions=tuple(payload.get("conditions") or ()),
        blueprint=payload.get("blueprint"),
        checksum=payload.get("checksum"),
    )


def write_call(writes: Sequence[PointWrite], deletes: Sequence[str]) -> str | None:
    """The seam's name of the one call that writes this batch (None for an empty batch)."""
    upserts = any(w.vector is not None for w in writes)
    overwrites = any(w.vector is None for w in writes)
    if not upserts and not overwrites and not deletes:
        return None
    if upserts and not overwrites and not deletes:
        return "upsert"
    if deletes and not writes:
        return "delete"
    return "batch_update_points"


class FlowStore(abc.ABC):
    """Flows of all agents in one collection of one backend.

    Errors: an unreachable server, or an embedded directory held by another process, raise
    ``StoreUnavailable``; a collection whose vectors do not fit the embedder raises
    ``StoreIncompatible``. Nothing above this class knows which backend it has.
    """

    page_size: int = 2_000
    location: str = ""
    collection: str = DEFAULT_COLLECTION
    scroll_filters_by_agent: bool = True
    """False where filtering a scroll costs more than reading other agents' subsets too."""

    settings: CollectionSettings = CollectionSettings()
    """Applied when this store creates the collection (servers only; see store.settings)."""

    collection_recheck: float = 0.0
    """Seconds for which ``ensure_collection`` trusts what it last found (the collection there,
    with this vector size) without asking the backend again; 0 (the default) always asks. A
    long-running process that syncs often sets it (the operator). Any failed call forgets it."""

    def __init__(self) -> None:
        self._ensured: tuple[int, float] | None = None
        self.stats = StoreStats()
        self.held: CollectionLayout | None = None
        """The collection's shards, replicas and tenant index as ``ensure_collection`` last
        found (or made) them; None on backends without them."""
        self.warnings: list[str] = []
        """Where the existing collection differs from ``settings`` (set by
        ``ensure_collection``); the collection is used as it is."""

    # --- backend primitives -------------------------------------------------------------

    @abc.abstractmethod
    async def _exists(self) -> bool:
        """Whether the collection exists."""

    @abc.abstractmethod
    async def _create(self, dimension: int) -> None:
        """Create the collection (cosine, ``dimension``) with keyword indexes on
        ``INDEXED_FIELDS``."""

    @abc.abstractmethod
    async def _dimension(self) -> int:
        """The existing collection's vector size; ``StoreIncompatible`` for another layout."""

    @abc.abstractmethod
    def _scroll(self, scope: Scope, fields: list[str]) -> AsyncIterator[Page]:
        """Pages of the points in ``scope`` (``fields`` of their payloads)."""

    @abc.abstractmethod
    async def _retrieve(self, ids: Sequence[str], *, payload: bool,
                        vectors: bool) -> list[tuple[str, dict[str, Any] | None,
                                                     list[float] | None]]:
        """(id, payload, vector) of each of ``ids`` that exists."""

    @abc.abstractmethod
    async def _write(self, writes: Sequence[PointWrite], deletes: Sequence[str]) -> None:
        """Apply one batch: upserts, payload overwrites, then deletions."""

    @abc.abstractmethod
    async def _count(self, scope: Scope | None = None) -> int:
        """Points in ``scope`` (None: in the collection)."""

    @abc.abstractmethod
    async def _search(self, agent_id: str, vector: Sequence[float],
                      limit: int) -> list[ScoredFlow]:
        """The ``limit`` points of ``agent_id`` nearest ``vector`` (cosine), best first."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the backend (and, for an embedded directory, its lock)."""

    def _map_error(self, exc: Exception) -> FlowregError | None:
        """The flowreg error a backend failure means (None: not the store's to explain)."""
        return None

    async def _settle(self) -> None:
        """Until a collection that another sync has just created serves reads (on a cluster,
        every shard has an Active replica); a backend without shards returns at once."""
        return None

    async def _layout(self) -> CollectionLayout | None:
        """The existing collection's shards, replicas and tenant index (None: a backend with
        no such settings)."""
        return None

    async def _read_layout(self) -> CollectionLayout | None:
        """The layout of the collection whose vector size ``_dimension`` has just read, from
        what that call returned (no further collection call)."""
        return None

    # --- the seam -----------------------------------------------------------------------

    async def ensure_collection(self, dimension: int) -> bool:
        """Create the collection for ``dimension``-long vectors if absent; True if created.

        A new collection gets ``settings`` (``InvalidSpec`` before anything is created if they
        cannot be met, e.g. more replicas than peers); an existing one is used as it is, and
        ``warnings`` says where it differs from them. Raises ``StoreIncompatible`` if it exists
        with another vector layout. While ``knows_collection(dimension)``, asks nothing and
        returns False.
        """
        if self.knows_collection(dimension):
            return False
        created = await self._ensure_collection(dimension)
        self._ensured = (dimension, time.monotonic())
        return created

    def knows_collection(self, dimension: int) -> bool:
        """Whether ``ensure_collection(dimension)`` would trust an earlier finding (a finding
        for the same size, less than ``collection_recheck`` seconds old, with no call failed
        since)."""
        return self._found_within(self.collection_recheck, dimension)

    def _trusted(self) -> bool:
        """Whether the collection was found less than ``collection_recheck`` seconds ago, with
        no call failed since (it exists, whatever its vector size)."""
        return self._found_within(self.collection_recheck)

    def _found_within(self, seconds: float, dimension: int | None = None) -> bool:
        """Whether a finding (for ``dimension``, if given) is less than ``seconds`` old."""
        known = self._ensured
        return (seconds > 0 and known is not None
                and (dimension is None or known[0] == dimension)
                and time.monotonic() - known[1] < seconds)

    def forget_collection(self) -> None:
        """Ask the backend at the next ``ensure_collection`` (e.g. after an error)."""
        self._ensured = None

    async def recheck_collection(self, dimension: int, *, older_than: float = 0.0) -> bool:
        """``ensure_collection`` asking the backend, whatever was trusted before, unless a
        finding for the same size is less than ``older_than`` seconds old."""
        if self._found_within(older_than, dimension):
            return False
        self.forget_collection()
        return await self.ensure_collection(dimension)

    async def _ensure_collection(self, dimension: int) -> bool:
        size = await self._stored_size()
        if size is None:
            try:
                await self._call("create_collection", self._create(dimension))
            except Exception:
                # Another sync (of another registry, or another process) created it first;
                # on a cluster its size is read once its shards are active.
                if not await self._call("collection_exists", self._exists()):
                    raise
                await self._call("collection_cluster_info", self._settle())
                size = await self._call("get_collection", self._dimension())
            else:
                self.held, self.warnings = await self._layout(), []
                return True
        if size != dimension:
            raise StoreIncompatible(
                f"collection {self.collection!r} holds {size}-dimensional vectors but the "
                f"embedder makes {dimension}-dimensional ones; use another collection for this "
                "embedder, or the embedder the collection was made with")
        self.held = await self._read_layout()
        self.warnings = [] if self.held is None else layout_warnings(self.held, self.settings)
        return False

    async def _stored_size(self) -> int | None:
        """The collection's vector size (``_dimension``), None if it does not exist; counted
        calls. A backend that can tell a missing collection from the size read alone makes it
        one call."""
        if not await self._call("collection_exists", self._exists()):
            return None
        return await self._call("get_collection", self._dimension())

    async def layout(self) -> CollectionLayout | None:
        """The collection's settings as the server holds them (None: absent, or a backend
        without shards and replicas)."""
        if not await self.collection_exists():
            return None
        return await self._layout()

    async def collection_exists(self) -> bool:
        return bool(await self._call("collection_exists", self._exists()))

    async def snapshot(self, agent_id: str, *, deep: bool = False, owner: str | None = None,
                       names: Iterable[str] | None = None) -> Snapshot:
        """Every point of ``agent_id``: payload subset, no vectors, all pages (no cap).

        With ``owner`` (and ``names``, the flow names its registry declares), only what a plan
        of that owner's registry reads: the points ``owner`` holds, and other owners' points
        under ``names``; a backend that filters never reads the rest.

        With ``deep``, the stored content is read too and the checksums are recomputed from it,
        so a point altered behind flowreg's back (payload edited, checksum kept) reads as changed.
        A missing collection reads as empty (a collection found moments before, see
        ``collection_recheck``, is not asked about again).
        """
        if not self._trusted() and not await self.collection_exists():
            return Snapshot(agent_id)
        wanted = frozenset(names or ())
        if deep:
            return Snapshot.of(agent_id, [p async for p in self._deep_snapshot(agent_id, owner,
                                                                               wanted)])
        first: dict[str, Entry] = {}
        more: list[Entry] = []
        async for page in self._agent_pages(agent_id, SNAPSHOT_FIELDS, owner, wanted):
            for point_id, payload in page:
                try:
                    name = payload["name"]
                    if payload["agent_id"] != agent_id or type(name) is not str:
                        continue
                except (KeyError, TypeError):  # not a flowreg point
                    continue
                if owner is not None and payload.get("owner") != owner and name not in wanted:
                    continue
                if name in first:
                    more.append((point_id, payload))
                else:
                    first[name] = (point_id, payload)
        return Snapshot(agent_id, first, more)

    async def _deep_snapshot(self, agent_id: str, owner: str | None,
                             wanted: frozenset[str]) -> AsyncIterator[StoredPoint]:
        async for record_id, payload in self._flows(agent_id, owner, wanted):
            try:
                stored = flow_of(payload)
                checksum, text_checksum = stored.content_checksum, stored.text_checksum
            except (TypeError, ValueError):
                checksum = text_checksum = None
            if payload.get("text_checksum") != text_checksum:
                text_checksum = None  # the vector may not be the text's: re-embed
            yield StoredPoint(record_id, agent_id, payload["name"], payload.get("owner"),
                              checksum, text_checksum, payload.get("embedder"))

    async def read_flows(self, agent_id: str) -> list[tuple[Flow, str | None]]:
        """Every flow of ``agent_id`` with its owner, sorted by name (for export)."""
        out: list[tuple[Flow, str | None]] = []
        if not await self.collection_exists():
            return out
        async for _, payload in self._flows(agent_id):
            out.append((flow_of(payload), payload.get("owner")))
        return sorted(out, key=lambda pair: (pair[0].name, pair[1] or ""))

    async def vectors(self, ids: Sequence[str]) -> dict[str, list[float]]:
        """The vectors of points ``ids`` (absent points are left out)."""
        found: dict[str, list[float]] = {}
        for chunk in chunks(ids, self.page_size):
            records = await self._call("retrieve",
                                       self._retrieve(chunk, payload=False, vectors=True))
            for point_id, _, vector in records:
                if vector is not None:
                    found[point_id] = vector
        return found

    async def payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The whole payloads of points ``ids`` (absent points are left out)."""
        found: dict[str, dict[str, Any]] = {}
        for chunk in chunks(ids, self.page_size):
            records = await self._call("retrieve",
                                       self._retrieve(chunk, payload=True, vectors=False))
            for point_id, payload, _ in records:
                found[point_id] = payload or {}
        return found

    async def write(self, writes: Sequence[PointWrite], deletes: Sequence[str]) -> None:
        """Apply one batch in one counted call: upserts, then payload overwrites, then deletions.

        Vectors must already be checked (finite, the collection's size); payloads are plain
        JSON data made by ``payload_of``.
        """
        name = write_call(writes, deletes)
        if name is None:
            return
        await self._call(name, self._write(writes, deletes),
                         points_written=len(writes), points_deleted=len(deletes))

    async def delete_owned(self, agent_id: str, owner: str) -> int:
        """Delete every point ``owner`` holds for ``agent_id``; returns how many there were."""
        if not await self.collection_exists():
            return 0
        ids = [p.id for p in await self.snapshot(agent_id, owner=owner) if p.owner == owner]
        # The registry's digest goes first: a deletion cut short must not leave it claiming
        # the registry is in the store (a registry re-created under the same name would trust it).
        for chunk in chunks([digest_point_id(agent_id, owner), *ids], self.page_size):
            await self.write([], chunk)
        return len(ids)

    async def count(self) -> int:
        """Flow points in the collection (all agents; registry digests are not flows)."""
        if not await self.collection_exists():
            return 0
        return int(await self._call("count", self._count(Scope(None, flows_only=True))))

    async def read_digest(self, agent_id: str, owner: str) -> dict[str, Any] | None:
        """The payload of ``owner``'s registry digest for ``agent_id`` (None: none stored).

        One counted ``retrieve``; the collection must exist (``ensure_collection``).
        """
        records = await self._call("read_digest", self._retrieve(
            [digest_point_id(agent_id, owner)], payload=True, vectors=False))
        return records[0][1] if records else None

    async def write_digest(self, agent_id: str, owner: str, payload: dict[str, Any],
                           dimension: int) -> None:
        """Store ``owner``'s registry digest for ``agent_id`` (one counted write)."""
        await self._call("write_digest", self._write(
            [PointWrite(digest_point_id(agent_id, owner), payload, digest_vector(dimension))],
            []))

    async def clear_digest(self, agent_id: str, owner: str) -> None:
        """Delete ``owner``'s registry digest for ``agent_id`` (one counted write)."""
        await self._call("clear_digest", self._write([], [digest_point_id(agent_id, owner)]))

    async def search(self, agent_id: str, vector: Sequence[float],
                     limit: int = 5) -> list[ScoredFlow]:
        """The flows of ``agent_id`` nearest ``vector`` by cosine similarity, best first."""
        if limit < 1 or not await self.collection_exists():
            return []
        found = await self._call("search", self._search(agent_id, vector, limit))
        return [hit for hit in found if hit.payload.get("agent_id") == agent_id]

    async def _flows(self, agent_id: str, owner: str | None = None,
                     wanted: frozenset[str] = frozenset(),
                     ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Id and payload (with the content) of every flow point of ``agent_id`` (scoped to
        ``owner`` and ``wanted`` as ``snapshot`` is)."""
        async for page in self._agent_pages(agent_id, SNAPSHOT_FIELDS + CONTENT_FIELDS, owner,
                                            wanted):
            for point_id, payload in page:
                name = payload.get("name")
                if payload.get("agent_id") == agent_id and isinstance(name, str) and (
                        owner is None or payload.get("owner") == owner or name in wanted):
                    yield point_id, payload

    async def _agent_pages(self, agent_id: str, fields: list[str], owner: str | None,
                           wanted: frozenset[str]) -> AsyncIterator[Page]:
        """Pages holding at least the points ``snapshot`` reads (maybe others too)."""
        if not self.scroll_filters_by_agent:
            scopes = [Scope(None)]
        elif owner is None:
            scopes = [Scope(agent_id)]
        elif wanted and len(wanted) <= ONE_SCROLL_NAMES:
            scopes = [Scope(agent_id, owner, also_names=tuple(wanted))]
        else:
            scopes = [Scope(agent_id, owner)]
            others = Scope(agent_id, owner, others=True)
            if wanted and await self._call("count", self._count(others)):
                scopes.append(replace(others, names=tuple(wanted)))
        for scope in scopes:
            async for page in self._pages(scope, fields):
                yield page

    async def _pages(self, scope: Scope, fields: list[str]) -> AsyncIterator[Page]:
        """Counted pages of the points in ``scope``."""
        pages = self._scroll(scope, fields)
        while True:
            try:
                page = await pages.__anext__()
            except StopAsyncIteration:
                return
            except Exception as exc:
                self._raise_mapped(exc)
            _counted("scroll", points_read=len(page), into=self.stats)
            yield page

    async def _call(self, name: str, call: Awaitable[T], *, points_written: int = 0,
                    points_deleted: int = 0) -> T:
        _counted(name, into=self.stats)
        try:
            result = await call
        except Exception as exc:
            self._raise_mapped(exc)
        for stats in (self.stats, *_RUNS.get()):
            stats.points_written += points_written
            stats.points_deleted += points_deleted
        return result

    def _raise_mapped(self, exc: Exception) -> NoReturn:
        """Raise the flowreg error a backend failure means, or the failure itself; whatever
        failed, the collection is asked about again (``forget_collection``)."""
        self.forget_collection()
        mapped = None if isinstance(exc, FlowregError) else self._map_error(exc)
        if mapped is None:
            raise exc
        raise mapped from exc


def in_use(location: str) -> str:
    """The message for an embedded store another process holds."""
    return (f"the local store {location} is in use by another process (an embedded store "
            "admits one client at a time; wait for it to finish, or use a Qdrant server for "
            "concurrent access)")


def chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def describe(exc: BaseException) -> str:
    """The first meaningful line of an exception (or of its cause)."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    cause = exc.__cause__ or exc.__context__
    if (not first or first == "None") and cause is not None:
        return describe(cause)
    return first or type(exc).__name__
