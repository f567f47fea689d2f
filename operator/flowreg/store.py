"""The flow store: flows as points in a Qdrant collection, through qdrant-client's async client.

One collection holds the flows of many agents; every point's payload says whose it is
(``agent_id``, ``owner``) and what it holds (the flow's fields, its content and text checksums,
and the identity of the embedder that made its vector). Point ids are ``flow.point_id(agent,
name)``, so a retried create never duplicates and an update keeps the id.

The same code runs on embedded Qdrant (``:memory:`` or a directory) and on a Qdrant server URL.
Every call to Qdrant is counted in ``stats`` (reports, metrics, tests).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from qdrant_client import AsyncQdrantClient, models

from flowreg.errors import StoreIncompatible, StoreUnavailable
from flowreg.flow import Entry, Flow, Snapshot, StoredPoint

DEFAULT_COLLECTION = "flowreg_flows"
DEFAULT_LOCATION = ".flowreg/qdrant"
PAYLOAD_VERSION = 1
INDEXED_FIELDS = ("agent_id", "owner", "name")
SNAPSHOT_FIELDS = ["agent_id", "name", "owner", "checksum", "text_checksum", "embedder"]
CONTENT_FIELDS = ["description", "examples", "conditions", "blueprint"]
LOCAL_PAGE_SIZE = 50_000  # local mode re-sorts all ids on every page: few, large pages
REMOTE_PAGE_SIZE = 2_000
WRITE_CALLS = ("batch_update_points", "upsert", "delete", "overwrite_payload")

T = TypeVar("T")


@dataclass
class StoreStats:
    """Calls made to Qdrant, by method name, and points written and deleted."""

    calls: Counter[str] = field(default_factory=Counter)
    points_written: int = 0
    points_deleted: int = 0

    @property
    def writes(self) -> int:
        """Calls that change the store."""
        return sum(self.calls[name] for name in WRITE_CALLS)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


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


@dataclass(frozen=True)
class PointWrite:
    """A point to upsert with its vector, or (``vector`` None) a payload to overwrite."""

    id: str
    payload: dict[str, Any]
    vector: list[float] | None = None


class FlowStore:
    """Flows of all agents in one Qdrant collection.

    Errors: an unreachable server, or a local directory held by another process, raise
    ``StoreUnavailable``; a collection whose vectors do not fit the embedder raises
    ``StoreIncompatible``.
    """

    def __init__(self, client: AsyncQdrantClient, collection: str = DEFAULT_COLLECTION,
                 *, local: bool, location: str = "", page_size: int | None = None) -> None:
        self.client = client
        self.collection = collection
        self.local = local
        self.location = location
        self.page_size = page_size or (LOCAL_PAGE_SIZE if local else REMOTE_PAGE_SIZE)
        self.stats = StoreStats()

    @classmethod
    def open(cls, location: str = DEFAULT_LOCATION, collection: str = DEFAULT_COLLECTION, *,
             api_key: str | None = None, timeout: float = 30.0,
             page_size: int | None = None) -> FlowStore:
        """A store at ``:memory:``, a directory, or an ``http(s)://`` Qdrant URL.

        For a URL the API key comes from ``api_key`` or else ``$QDRANT_API_KEY``.
        """
        if location.startswith(("http://", "https://")):
            key = api_key if api_key is not None else os.environ.get("QDRANT_API_KEY")
            client = AsyncQdrantClient(url=location, api_key=key or None, timeout=int(timeout),
                                       check_compatibility=False)
            return cls(client, collection, local=False, location=location, page_size=page_size)
        try:
            if location == ":memory:":
                client = AsyncQdrantClient(location=":memory:")
            else:
                Path(location).mkdir(parents=True, exist_ok=True)
                client = AsyncQdrantClient(path=location)
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise StoreUnavailable(
                    f"the local store {location} is in use by another process (an embedded "
                    "store admits one client at a time; wait for it to finish, or use a Qdrant "
                    "server for concurrent access)") from None
            raise
        except OSError as exc:
            raise StoreUnavailable(f"cannot open the local store {location}: {exc}") from None
        return cls(client, collection, local=True, location=location, page_size=page_size)

    async def close(self) -> None:
        """Release the client (and, for a local directory, its lock)."""
        await self.client.close()

    async def ensure_collection(self, dimension: int) -> bool:
        """Create the collection for ``dimension``-long vectors if absent; True if created.

        Raises ``StoreIncompatible`` if it exists with another vector layout.
        """
        exists = await self._call("collection_exists", self.client.collection_exists,
                                  self.collection)
        if not exists:
            await self._call("create_collection", self.client.create_collection,
                             self.collection,
                             vectors_config=models.VectorParams(
                                 size=dimension, distance=models.Distance.COSINE))
            if not self.local:
                for name in INDEXED_FIELDS:
                    await self._call("create_payload_index", self.client.create_payload_index,
                                     self.collection, name,
                                     field_schema=models.PayloadSchemaType.KEYWORD)
            return True
        info = await self._call("get_collection", self.client.get_collection, self.collection)
        vectors = info.config.params.vectors
        if not isinstance(vectors, models.VectorParams):
            raise StoreIncompatible(
                f"collection {self.collection!r} uses named vectors; flowreg needs a collection "
                "with one unnamed vector per point (use another collection)")
        if vectors.size != dimension:
            raise StoreIncompatible(
                f"collection {self.collection!r} holds {vectors.size}-dimensional vectors but the "
                f"embedder makes {dimension}-dimensional ones; use another collection for this "
                "embedder, or the embedder the collection was made with")
        return False

    async def collection_exists(self) -> bool:
        return bool(await self._call("collection_exists", self.client.collection_exists,
                                     self.collection))

    async def snapshot(self, agent_id: str, *, deep: bool = False) -> Snapshot:
        """Every point of ``agent_id``: payload subset, no vectors, all pages (no cap).

        With ``deep``, the stored content is read too and the checksums are recomputed from it,
        so a point altered behind flowreg's back (payload edited, checksum kept) reads as changed.
        A missing collection reads as empty.
        """
        if not await self.collection_exists():
            return Snapshot(agent_id)
        if deep:
            return Snapshot.of(agent_id, [p async for p in self._deep_snapshot(agent_id)])
        first: dict[str, Entry] = {}
        more: list[Entry] = []
        async for page in self._pages(agent_id, SNAPSHOT_FIELDS):
            for record in page:
                payload: Any = record.payload
                try:
                    name = payload["name"]
                    if payload["agent_id"] != agent_id or type(name) is not str:
                        continue
                except (KeyError, TypeError):  # not a flowreg point
                    continue
                if name in first:
                    more.append((str(record.id), payload))
                else:
                    first[name] = (str(record.id), payload)
        return Snapshot(agent_id, first, more)

    async def _deep_snapshot(self, agent_id: str) -> AsyncIterator[StoredPoint]:
        """``snapshot(deep=True)``: checksums recomputed from the stored content."""
        async for record_id, payload in self._flows(agent_id):
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
        for start in range(0, len(ids), self.page_size):
            chunk = list(ids[start:start + self.page_size])
            records = await self._call("retrieve", self.client.retrieve, self.collection,
                                       ids=chunk, with_payload=False, with_vectors=True)
            for record in records:
                if isinstance(record.vector, list):
                    found[str(record.id)] = [float(x) for x in record.vector]
        return found

    async def write(self, writes: Sequence[PointWrite], deletes: Sequence[str]) -> None:
        """Apply one batch in one call: upserts, then payload overwrites, then deletions.

        A batch of upserts only (a first apply) is one ``upsert``, deletions only one
        ``delete``; anything mixed is one ``batch_update_points``. The points are built without
        pydantic re-validation: vectors were checked when embedded (finite, right size) and
        payloads are plain JSON data made by ``payload_of``.
        """
        upserts = [_point(w.id, w.vector, w.payload) for w in writes if w.vector is not None]
        overwrites = [w for w in writes if w.vector is None]
        if not upserts and not overwrites and not deletes:
            return
        if upserts and not overwrites and not deletes:
            await self._call("upsert", self.client.upsert, self.collection, upserts, wait=True)
        elif deletes and not writes:
            await self._call("delete", self.client.delete, self.collection,
                             models.PointIdsList(points=list(deletes)), wait=True)
        else:
            ops: list[models.UpdateOperation] = []
            if upserts:
                ops.append(models.UpsertOperation(upsert=models.PointsList(points=upserts)))
            ops.extend(
                models.OverwritePayloadOperation(
                    overwrite_payload=models.SetPayload(payload=w.payload, points=[w.id]))
                for w in overwrites)
            if deletes:
                ops.append(models.DeleteOperation(
                    delete=models.PointIdsList(points=list(deletes))))
            await self._call("batch_update_points", self.client.batch_update_points,
                             self.collection, update_operations=ops, wait=True)
        self.stats.points_written += len(writes)
        self.stats.points_deleted += len(deletes)

    async def delete_owned(self, agent_id: str, owner: str) -> int:
        """Delete every point ``owner`` holds for ``agent_id``; returns how many there were."""
        if not await self.collection_exists():
            return 0
        ids = [p.id for p in await self.snapshot(agent_id) if p.owner == owner]
        for start in range(0, len(ids), self.page_size):
            await self.write([], ids[start:start + self.page_size])
        return len(ids)

    async def count(self) -> int:
        """Points in the collection (all agents)."""
        if not await self.collection_exists():
            return 0
        result = await self._call("count", self.client.count, self.collection, exact=True)
        return int(result.count)

    async def _flows(self, agent_id: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Id and payload (with the content) of every flow point of ``agent_id``."""
        async for page in self._pages(agent_id, SNAPSHOT_FIELDS + CONTENT_FIELDS):
            for record in page:
                payload = record.payload or {}
                if payload.get("agent_id") == agent_id and isinstance(payload.get("name"), str):
                    yield str(record.id), payload

    async def _pages(self, agent_id: str,
                     fields: list[str]) -> AsyncIterator[list[models.Record]]:
        """Pages of the points of ``agent_id`` (and, in local mode, of other agents too)."""
        # Local mode evaluates filters in Python on every page, about ten times slower than
        # reading the payload subset and filtering here; a server filters on its payload index.
        scroll_filter = None if self.local else models.Filter(must=[
            models.FieldCondition(key="agent_id", match=models.MatchValue(value=agent_id))])
        offset: Any = None
        while True:
            records, offset = await self._call(
                "scroll", self.client.scroll, self.collection, scroll_filter=scroll_filter,
                limit=self.page_size, offset=offset, with_payload=fields, with_vectors=False)
            yield records
            if offset is None:
                return

    async def _call(self, name: str, method: Callable[..., Awaitable[T]],
                    *args: Any, **kwargs: Any) -> T:
        self.stats.calls[name] += 1
        try:
            return await method(*args, **kwargs)
        except (StoreIncompatible, StoreUnavailable):
            raise
        except Exception as exc:
            if _is_unavailable(exc):
                raise StoreUnavailable(
                    f"Qdrant at {self.location or 'the configured URL'} is unavailable: "
                    f"{_describe(exc)}") from exc
            raise


def _point(point_id: str, vector: list[float], payload: dict[str, Any]) -> models.PointStruct:
    """A point built without validation (its parts are already known to be well-formed)."""
    return models.PointStruct.model_construct(id=point_id, vector=vector, payload=payload)


def _is_unavailable(exc: BaseException) -> bool:
    """True for failures that mean "cannot reach Qdrant now" rather than a bad request."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(exc, (ResponseHandlingException, ConnectionError, TimeoutError,
                        asyncio.TimeoutError)):
        return True
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code is None or exc.status_code >= 500 or exc.status_code in (
            401, 403, 408, 429)
    name = type(exc).__module__ + "." + type(exc).__name__
    return name.startswith(("httpx.", "httpcore.", "grpc."))


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    cause = exc.__cause__ or exc.__context__
    if (not first or first == "None") and cause is not None:
        return _describe(cause)
    return first or type(exc).__name__


def chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
