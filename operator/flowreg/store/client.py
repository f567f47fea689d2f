"""The store on qdrant-client: a Qdrant server (``http(s)://`` URL, REST or gRPC) or the
client's in-process emulation (``:memory:``, and the directories earlier flowreg releases wrote).

The emulation is pure Python and meant for tests and small data; flowreg's embedded default is
Qdrant Edge (``flowreg.store.edge``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
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
from flowreg.store.settings import (
    CLUSTER_READ_CONSISTENCY,
    CLUSTER_WRITE_ORDERING,
    GRPC_PORT,
    TENANT_FIELD,
    TENANT_GRAPH_M,
    CollectionLayout,
    CollectionSettings,
    check_peers,
)

KEEPALIVE = httpx.Limits(max_connections=100, max_keepalive_connections=32,
                         keepalive_expiry=2.0)
"""Connections to a server are kept open between calls, whatever its host (qdrant-client's own
default opens a new connection for every call to ``localhost`` or ``127.0.0.1``: at hundreds of
calls a second, opening and closing them was a sixth of the operator's CPU). An idle connection
is closed after 2 s, before Qdrant's own 5 s keep-alive closes it, so a request never goes out on
a connection the server is closing."""
LOCAL_PAGE_SIZE = 50_000  # the emulation re-sorts all ids on every page: few, large pages
REMOTE_PAGE_SIZE = 2_000


class ClientStore(FlowStore):
    """Flows in one collection, through qdrant-client's async client."""

    def __init__(self, client: AsyncQdrantClient, collection: str, *, local: bool,
                 location: str = "", page_size: int | None = None,
                 settings: CollectionSettings | None = None) -> None:
        super().__init__()
        self.client = client
        self.collection = collection
        self.local = local
        self.location = location
        self.settings = settings or CollectionSettings()
        self._cluster: tuple[bool, int] | None = None
        self._info: models.CollectionInfo | None = None
        self.page_size = page_size or (LOCAL_PAGE_SIZE if local else REMOTE_PAGE_SIZE)
        # The emulation evaluates filters in Python on every page, about ten times slower than
        # reading the payload subset of every point; a server filters on its payload index.
        self.scroll_filters_by_agent = not local

    @classmethod
    def connect(cls, url: str, collection: str, *, api_key: str | None = None,
                timeout: float = 30.0, page_size: int | None = None,
                prefer_grpc: bool = False, grpc_port: int = GRPC_PORT,
                settings: CollectionSettings | None = None) -> ClientStore:
        """A Qdrant server at ``url``; the API key is ``api_key`` or else ``$QDRANT_API_KEY``."""
        key = api_key if api_key is not None else os.environ.get("QDRANT_API_KEY")
        client = AsyncQdrantClient(url=url, api_key=key or None, timeout=int(timeout),
                                   prefer_grpc=prefer_grpc, grpc_port=grpc_port,
                                   check_compatibility=False, limits=KEEPALIVE)
        return cls(client, collection, local=False, location=url, page_size=page_size,
                   settings=settings)

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
        if self.local:  # the emulation has no shards, replicas or indexes
            await self.client.create_collection(
                self.collection,
                vectors_config=models.VectorParams(size=dimension,
                                                   distance=models.Distance.COSINE))
            return
        cluster, peers = await self._cluster_state()
        check_peers(self.collection, self.settings, peers, cluster)
        s = self.settings
        await self.client.create_collection(
            self.collection,
            vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
            hnsw_config=None if s.global_index else models.HnswConfigDiff(
                m=0, payload_m=TENANT_GRAPH_M),
            shard_number=s.shards, replication_factor=s.replication_factor,
            write_consistency_factor=s.write_consistency_factor)
        for name in INDEXED_FIELDS:
            schema: models.PayloadSchemaType | models.KeywordIndexParams = (
                models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True)
                if name == TENANT_FIELD else models.PayloadSchemaType.KEYWORD)
            await self.client.create_payload_index(self.collection, name, field_schema=schema,
                                                   wait=True, **self._ordering())

    async def _settle(self, wait: float = 30.0) -> None:
        if self.local or not (await self._cluster_state())[0]:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            info = await self.client.collection_cluster_info(self.collection)
            active = {s.shard_id for s in [*info.local_shards, *info.remote_shards]
                      if s.state == models.ReplicaState.ACTIVE}
            if len(active) >= info.shard_count:
                return
            await asyncio.sleep(0.1)
        # Not settled in time: the reads that follow fail with the server's own error.

    async def _cluster_state(self) -> tuple[bool, int]:
        """(whether the server is a cluster, how many peers it has), asked once per store."""
        if self._cluster is None:
            status = await self._call("cluster_status", self.client.cluster_status())
            enabled = getattr(status, "status", "disabled") == "enabled"
            self._cluster = (enabled, len(getattr(status, "peers", None) or {}) or 1)
        return self._cluster

    async def _read(self) -> dict[str, Any]:
        """The read consistency to ask for (configured; else majority on a cluster)."""
        if self.local:
            return {}
        rc = self.settings.read_consistency
        if rc is None and (await self._cluster_state())[0]:
            rc = CLUSTER_READ_CONSISTENCY
        if rc is None:
            return {}
        return {"consistency": rc if isinstance(rc, int) else models.ReadConsistencyType(rc)}

    def _ordering(self) -> dict[str, Any]:
        """The write ordering to ask for (configured; else medium on a cluster)."""
        ordering = self.settings.write_ordering
        if ordering is None and self._cluster is not None and self._cluster[0]:
            ordering = CLUSTER_WRITE_ORDERING
        return {} if ordering is None else {"ordering": models.WriteOrdering(ordering)}

    async def _layout(self) -> CollectionLayout | None:
        if self.local:
            return None
        self._info = await self._call("get_collection",
                                      self.client.get_collection(self.collection))
        return await self._layout_of(self._info)

    async def _layout_of(self, info: models.CollectionInfo) -> CollectionLayout:
        cluster, peers = await self._cluster_state()
        params = info.config.params
        index = (info.payload_schema or {}).get(TENANT_FIELD)
        tenant = bool(index is not None and getattr(index.params, "is_tenant", False))
        global_index = bool(info.config.hnsw_config.m)
        read = (await self._read()).get("consistency")
        ordering = self._ordering().get("ordering")
        return CollectionLayout(
            self.collection, int(params.shard_number or 1), int(params.replication_factor or 1),
            int(params.write_consistency_factor or 1), tenant, global_index, cluster, peers,
            read.value if isinstance(read, models.ReadConsistencyType) else read,
            ordering.value if ordering is not None else None)

    async def _read_layout(self) -> CollectionLayout | None:
        if self.local or self._info is None:
            return None
        return await self._layout_of(self._info)

    async def _dimension(self) -> int:
        info = await self.client.get_collection(self.collection)
        self._info = info
        vectors = info.config.params.vectors
        if not isinstance(vectors, models.VectorParams):
            raise StoreIncompatible(
                f"collection {self.collection!r} uses named vectors; flowreg needs a collection "
                "with one unnamed vector per point (use another collection)")
        return int(vectors.size)

    async def _stored_size(self) -> int | None:
        if self.local:
            return await super()._stored_size()
        return await self._call("get_collection", self._dimension_if_exists())

    async def _dimension_if_exists(self) -> int | None:
        """``_dimension``, None if the server says the collection does not exist (one call)."""
        try:
            return await self._dimension()
        except Exception as exc:
            if _is_not_found(exc):
                return None
            raise

    async def _scroll(self, scope: Scope, fields: list[str]) -> AsyncIterator[Page]:
        scroll_filter = _filter(scope)
        offset: Any = None
        while True:
            records, offset = await self.client.scroll(
                self.collection, scroll_filter=scroll_filter, limit=self.page_size,
                offset=offset, with_payload=fields, with_vectors=False, **await self._read())
            yield [(str(r.id), r.payload or {}) for r in records]
            if offset is None:
                return

    async def _retrieve(self, ids: Sequence[str], *, payload: bool,
                        vectors: bool) -> list[tuple[str, dict[str, Any] | None,
                                                     list[float] | None]]:
        records = await self.client.retrieve(self.collection, ids=list(ids),
                                             with_payload=payload, with_vectors=vectors,
                                             **await self._read())
        return [(str(r.id), r.payload,
                 [float(x) for x in r.vector] if isinstance(r.vector, list) else None)
                for r in records]

    async def _write(self, writes: Sequence[PointWrite], deletes: Sequence[str]) -> None:
        call = write_call(writes, deletes)
        ordering = self._ordering() if not self.local else {}
        if call == "upsert":
            # One columnar batch: no point model per point, and the client converts it for
            # gRPC in one pass (a fifth less of its CPU per write than a list of points).
            await self.client.upsert(self.collection, _batch(writes), wait=True, **ordering)
            return
        upserts = [_point(w.id, w.vector, w.payload) for w in writes if w.vector is not None]
        if call == "delete":
            await self.client.delete(self.collection,
                                     models.PointIdsList(points=list(deletes)), wait=True,
                                     **ordering)
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
                                                  wait=True, **ordering)

    async def _count(self, scope: Scope | None = None) -> int:
        result = await self.client.count(self.collection, exact=True,
                                         count_filter=None if scope is None else _filter(scope))
        return int(result.count)

    async def _search(self, agent_id: str, vector: Sequence[float],
                      limit: int) -> list[ScoredFlow]:
        response = await self.client.query_points(
            self.collection, query=list(vector), limit=limit, with_payload=True,
            query_filter=_filter(Scope(agent_id)), **await self._read())
        return [ScoredFlow(str(p.id), float(p.score), p.payload or {}) for p in response.points]

    def _map_error(self, exc: Exception) -> FlowregError | None:
        if _is_wrong_dimension(exc):
            return StoreIncompatible(f"collection {self.collection!r} at {self.location}: "
                                     f"{_detail(exc)}")
        if _is_unavailable(exc):
            where = self.location or "the configured URL"
            return StoreUnavailable(f"Qdrant at {where} is unavailable for collection "
                                    f"{self.collection!r}: {_detail(exc)}")
        return None


def _filter(scope: Scope) -> models.Filter | None:
    """The filter selecting the points in ``scope``."""
    must: list[models.Condition] = []
    must_not: list[models.Condition] = []
    if scope.agent_id is not None:
        must.append(models.FieldCondition(key="agent_id",
                                          match=models.MatchValue(value=scope.agent_id)))
    should: list[models.Condition] = []
    if scope.owner is not None:
        owned = models.FieldCondition(key="owner", match=models.MatchValue(value=scope.owner))
        if scope.also_names is not None:
            should = [owned, models.FieldCondition(
                key="name", match=models.MatchAny(any=list(scope.also_names)))]
        else:
            (must_not if scope.others else must).append(owned)
    if scope.names is not None:
        must.append(models.FieldCondition(key="name", match=models.MatchAny(any=list(scope.names))))
    if scope.flows_only:
        must.append(models.FieldCondition(key="flowreg",
                                          match=models.MatchValue(value=PAYLOAD_VERSION)))
    if not must and not must_not and not should:
        return None
    return models.Filter(must=must or None, should=should or None, must_not=must_not or None)


def _batch(writes: Sequence[PointWrite]) -> models.Batch:
    """``writes`` (each with its vector) as one batch, built without validation."""
    return models.Batch.model_construct(ids=[w.id for w in writes],
                                        vectors=[w.vector for w in writes],
                                        payloads=[w.payload for w in writes])


def _point(point_id: str, vector: list[float] | None,
           payload: dict[str, Any]) -> models.PointStruct:
    """A point built without validation (its parts are already known to be well-formed)."""
    return models.PointStruct.model_construct(id=point_id, vector=vector, payload=payload)


def _detail(exc: BaseException) -> str:
    """What Qdrant said went wrong (its error text, e.g. which shard has too few replicas),
    else the exception's first line."""
    from qdrant_client.http.exceptions import UnexpectedResponse

    if isinstance(exc, UnexpectedResponse):
        with contextlib.suppress(Exception):
            error = exc.structured()["status"]["error"]
            return f"{exc.status_code} {exc.reason_phrase}: {error}"[:500]
    details = getattr(exc, "details", None)
    if callable(details):
        with contextlib.suppress(Exception):
            text = details()
            if text:
                return str(text).splitlines()[0][:500]
    return describe(exc)


def _is_wrong_dimension(exc: BaseException) -> bool:
    """True for the server refusing a vector of another size than its collection's."""
    from qdrant_client.http.exceptions import UnexpectedResponse

    said = "vector dimension error" in str(exc).lower()
    if isinstance(exc, UnexpectedResponse):
        return said and exc.status_code == 400
    return said and (isinstance(exc, ValueError) or type(exc).__module__.startswith("grpc"))


def _is_not_found(exc: BaseException) -> bool:
    """True for the server's "no such collection" (REST 404, gRPC NOT_FOUND)."""
    from qdrant_client.http.exceptions import UnexpectedResponse

    if isinstance(exc, UnexpectedResponse):
        return exc.status_code == 404
    code = getattr(exc, "code", None)
    if callable(code) and type(exc).__module__.startswith("grpc"):
        with contextlib.suppress(Exception):
            return getattr(code(), "name", None) == "NOT_FOUND"
    return False


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
