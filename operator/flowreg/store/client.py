"""The store on qdrant-client: a Qdrant server (``http(s)://`` URL, REST or gRPC) or the
client's in-process emulation (``:memory:``, and the directories earlier flowreg releases wrote).

The emulation is pure Python and meant for tests and small data; flowreg's embedded default is
Qdrant Edge (``flowreg.store.edge``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from qdrant_client import AsyncQdrantClient, models

from flowreg.errors import FlowregError, StoreIncompatible, StoreUnavailable
from flowreg.store.base import (
    INDEXED_FIELDS,
    PAYLOAD_VERSION,
    FlowStore,
    Page,
    PointWrite,
    Scope,
    ScoredFlow,
    describe,
    in_use,
    write_call,
)

LOCAL_PAGE_SIZE = 50_000  # the emulation re-sorts all ids on every page: few, large pages
REMOTE_PAGE_SIZE = 2_000


class ClientStore(FlowStore):
    """Flows in one collection, through qdrant-client's async client."""

    def __init__(self, client: AsyncQdrantClient, collection: str, *, local: bool,
                 location: str = "", page_size: int | None = None) -> None:
        super().__init__()
        self.client = client
        self.collection = collection
        self.local = local
        self.location = location
        self.page_size = page_size or (LOCAL_PAGE_SIZE if local else REMOTE_PAGE_SIZE)
        # The emulation evaluates filters in Python on every page, about ten times slower than
        # reading the payload subset of every point; a server filters on its payload index.
        self.scroll_filters_by_agent = not local

    @classmethod
    def connect(cls, url: str, collection: str, *, api_key: str | None = None,
                timeout: float = 30.0, page_size: int | None = None,
                prefer_grpc: bool = False, grpc_port: int = 6334) -> ClientStore:
        """A Qdrant server at ``url``; the API key is ``api_key`` or else ``$QDRANT_API_KEY``."""
        key = api_key if api_key is not None else os.environ.get("QDRANT_API_KEY")
        client = AsyncQdrantClient(url=url, api_key=key or None, timeout=int(timeout),
                                   prefer_grpc=prefer_grpc, grpc_port=grpc_port,
                                   check_compatibility=False)
        return cls(client, collection, local=False, location=url, page_size=page_size)

    @classmethod
    def emulated(cls, location: str, collection: str, *,
                 page_size: int | None = None) -> ClientStore:
        """qdrant-client's emulation: ``:memory:`` or a directory in its own layout."""
        try:
            if location == ":memory:":
                client = AsyncQdrantClient(location=":memory:")
            else:
                Path(location).mkdir(parents=True, exist_ok=True)
                client = AsyncQdrantClient(path=location)
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise StoreUnavailable(in_use(location)) from None
            raise
        except OSError as exc:
            raise StoreUnavailable(f"cannot open the local store {location}: {exc}") from None
        return cls(client, collection, local=True, location=location, page_size=page_size)

    async def close(self) -> None:
        await self.client.close()

    async def _exists(self) -> bool:
        return bool(await self.client.collection_exists(self.collection))

    async def _create(self, dimension: int) -> None:
        await self.client.create_collection(
            self.collection,
            vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE))
        if not self.local:  # the emulation has no indexes
            for name in INDEXED_FIELDS:
                await self.client.create_payload_index(
                    self.collection, name, field_schema=models.PayloadSchemaType.KEYWORD)

    async def _dimension(self) -> int:
        info = await self.client.get_collection(self.collection)
        vectors = info.config.params.vectors
        if not isinstance(vectors, models.VectorParams):
            raise StoreIncompatible(
                f"collection {self.collection!r} uses named vectors; flowreg needs a collection "
                "with one unnamed vector per point (use another collection)")
        return int(vectors.size)

    async def _scroll(self, scope: Scope, fields: list[str]) -> AsyncIterator[Page]:
        scroll_filter = _filter(scope)
        offset: Any = None
        while True:
            records, offset = await self.client.scroll(
                self.collection, scroll_filter=scroll_filter, limit=self.page_size,
                offset=offset, with_payload=fields, with_vectors=False)
            yield [(str(r.id), r.payload or {}) for r in records]
            if offset is None:
                return

    async def _retrieve(self, ids: Sequence[str], *, payload: bool,
                        vectors: bool) -> list[tuple[str, dict[str, Any] | None,
                                                     list[float] | None]]:
        records = await self.client.retrieve(self.collection, ids=list(ids),
                                             with_payload=payload, with_vectors=vectors)
        return [(str(r.id), r.payload,
                 [float(x) for x in r.vector] if isinstance(r.vector, list) else None)
                for r in records]

    async def _write(self, writes: Sequence[PointWrite], deletes: Sequence[str]) -> None:
        upserts = [_point(w.id, w.vector, w.payload) for w in writes if w.vector is not None]
        call = write_call(writes, deletes)
        if call == "upsert":
            await self.client.upsert(self.collection, upserts, wait=True)
        elif call == "delete":
            await self.client.delete(self.collection,
                                     models.PointIdsList(points=list(deletes)), wait=True)
        else:
            ops: list[models.UpdateOperation] = []
            if upserts:
                ops.append(models.UpsertOperation(upsert=models.PointsList(points=upserts)))
            ops.extend(
                models.OverwritePayloadOperation(
                    overwrite_payload=models.SetPayload(payload=w.payload, points=[w.id]))
                for w in writes if w.vector is None)
            if deletes:
                ops.append(models.DeleteOperation(
                    delete=models.PointIdsList(points=list(deletes))))
            await self.client.batch_update_points(self.collection, update_operations=ops,
                                                  wait=True)

    async def _count(self, scope: Scope | None = None) -> int:
        result = await self.client.count(self.collection, exact=True,
                                         count_filter=None if scope is None else _filter(scope))
        return int(result.count)

    async def _search(self, agent_id: str, vector: Sequence[float],
                      limit: int) -> list[ScoredFlow]:
        response = await self.client.query_points(
            self.collection, query=list(vector), limit=limit, with_payload=True,
            query_filter=_filter(Scope(agent_id)))
        return [ScoredFlow(str(p.id), float(p.score), p.payload or {}) for p in response.points]

    def _map_error(self, exc: Exception) -> FlowregError | None:
        if _is_unavailable(exc):
            where = self.location or "the configured URL"
            return StoreUnavailable(f"Qdrant at {where} is unavailable: {describe(exc)}")
        return None


def _filter(scope: Scope) -> models.Filter | None:
    """The filter selecting the points in ``scope``."""
    must: list[models.Condition] = []
    must_not: list[models.Condition] = []
    if scope.agent_id is not None:
        must.append(models.FieldCondition(key="agent_id",
                                          match=models.MatchValue(value=scope.agent_id)))
    if scope.owner is not None:
        owned = models.FieldCondition(key="owner", match=models.MatchValue(value=scope.owner))
        (must_not if scope.others else must).append(owned)
    if scope.names is not None:
        must.append(models.FieldCondition(key="name", match=models.MatchAny(any=list(scope.names))))
    if scope.flows_only:
        must.append(models.FieldCondition(key="flowreg",
                                          match=models.MatchValue(value=PAYLOAD_VERSION)))
    if not must and not must_not:
        return None
    return models.Filter(must=must or None, must_not=must_not or None)


def _point(point_id: str, vector: list[float] | None,
           payload: dict[str, Any]) -> models.PointStruct:
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
