"""The store on Qdrant Edge: Qdrant's own engine in-process, one shard per collection.

A collection named C in a store directory D is the Edge shard ``D/C``. ``open_store`` locks D
for the process (``store.lock``: another process waits its turn); the shard's write-ahead log
is a lock of its own, so a process that opens the shard without D's lock gets
``StoreUnavailable`` at once. Free space is checked before the shard is loaded and before
each write (``store.space``: on a full disk, Edge's memory-mapped files would be a SIGBUS).
Each Edge update is atomic under a kill, and a batch is at most three of them (one upsert of
new points and rewritten payloads, one deletion), so a killed apply leaves whole points only.

Edge calls are synchronous and fast (microseconds to milliseconds); they run on the event
loop's thread. Handing a payload to Edge costs about five microseconds per top-level key,
whatever its value, so a flow's payload is stored as six keys: the three the store filters on
(``agent_id``, ``owner``, ``name``), the payload version ``flowreg``, and two JSON texts,
``flowreg_meta`` (the checksums and the embedder: what a snapshot reads) and
``flowreg_content`` (description, examples, conditions, blueprint). They are decoded on read:
every caller above the seam sees the same payloads as on other backends. Points written by
earlier releases (every field a key of its own, ``examples``, ``conditions`` and ``blueprint``
as JSON text) read the same.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

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
)
from flowreg.store.space import (
    NEW_SHARD,
    RESERVE,
    SpaceGuard,
    batch_bytes,
    ensure_space,
    is_out_of_space,
    no_space,
    unallocated_bytes,
)

EDGE_PAGE_SIZE = 5_000
CONFIG_FILE = "edge_config.json"
PACKED_FIELDS = ("examples", "conditions", "blueprint")
"""Payload fields earlier releases stored as JSON text each (read back decoded)."""
GROUPS = {"flowreg_meta": ("checksum", "text_checksum", "embedder"),
          "flowreg_content": ("description", "examples", "conditions", "blueprint")}
"""Keys holding several payload fields as one JSON object (never filtered on)."""
GROUP_OF = {key: group for group, keys in GROUPS.items() for key in keys}
FLOW_KEYS = frozenset(("flowreg", "agent_id", "owner", "name", *GROUP_OF))
"""The keys of a flow's payload (``payload_of``): ``pack`` builds its stored form directly."""
_dumps = orjson.dumps


def pack(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``payload`` as stored in Edge: the fields of each of ``GROUPS`` as one JSON text."""
    if payload.keys() == FLOW_KEYS:  # a flow's payload, as every write has it: built directly
        return {"flowreg": payload["flowreg"], "agent_id": payload["agent_id"],
                "owner": payload["owner"], "name": payload["name"],
                "flowreg_meta": _dumps({"checksum": payload["checksum"],
                                        "text_checksum": payload["text_checksum"],
                                        "embedder": payload["embedder"]}).decode(),
                "flowreg_content": _dumps({"description": payload["description"],
                                           "examples": payload["examples"],
                                           "conditions": payload["conditions"],
                                           "blueprint": payload["blueprint"]}).decode()}
    return pack_fields(payload)


def pack_fields(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``pack`` of any payload, group by group."""
    out = dict(payload)
    for group, keys in GROUPS.items():
        if group in out:
            raise ValueError(f"payload key {group!r} is reserved in an Edge store")
        fields = {key: out.pop(key) for key in keys if key in out}
        if fields:
            out[group] = orjson.dumps(fields).decode()
    return out


def unpack(payload: dict[str, Any]) -> dict[str, Any]:
    """A stored payload as written (the inverse of ``pack``, and of earlier releases' packing:
    other text is left as it is)."""
    grouped = False
    for group in GROUPS:
        value = payload.pop(group, None)
        if value is None:
            continue
        grouped = True
        fields = orjson.loads(value) if isinstance(value, str) else None
        if isinstance(fields, dict):
            payload.update(fields)
        else:  # not ours after all
            payload[group] = value
    if not grouped:
        for key in PACKED_FIELDS:
            value = payload.get(key)
            if isinstance(value, str):
                with contextlib.suppress(orjson.JSONDecodeError):
                    payload[key] = orjson.loads(value)
    return payload


def stored_fields(fields: list[str]) -> list[str]:
    """The stored keys holding ``fields``, in either layout."""
    return [*fields, *{GROUP_OF[f] for f in fields if f in GROUP_OF}]


def shard_config(q: Any, dimension: int) -> Any:
    """A shard of cosine vectors; payloads held in RAM (snapshots read every point's subset).

    Vectors stay on disk until read (``Memory.Cold``): a plan never reads them, and loading
    them at open would add 1.5 KiB per point to every process that opens the store.
    """
    return q.EdgeConfig(vectors=q.EdgeVectorParams(size=dimension, distance=q.Distance.Cosine,
                                                   memory=q.Memory.Cold),
                        payload_memory=q.Memory.Pinned)


def is_shard(path: Path) -> bool:
    """Whether ``path`` holds an Edge shard."""
    return (path / CONFIG_FILE).is_file()


class EdgeStore(FlowStore):
    """Flows in the Edge shard ``directory/collection``."""

    def __init__(self, directory: str, collection: str, *, page_size: int | None = None) -> None:
        super().__init__()
        import qdrant_edge

        self._q = qdrant_edge
        self.location = directory
        self.collection = collection
        self.path = Path(directory) / collection
        self.page_size = page_size or EDGE_PAGE_SIZE
        self._shard: Any = None
        self.space = SpaceGuard(self.path)
        self.lock: Any = None
        """The store directory's ``StoreLock`` (set by ``open_store``), released by close."""
        if is_shard(self.path):
            # Loading pre-faults the shard's mapped files: on a full disk, a SIGBUS.
            ensure_space(self.path, unallocated_bytes(self.path) + RESERVE)
            self._shard = self._open(lambda: qdrant_edge.EdgeShard.load(str(self.path)))

    def _open(self, load: Any) -> Any:
        try:
            return load()
        except Exception as exc:
            text = str(exc)
            if is_out_of_space(exc):
                raise no_space(self.path.parent, NEW_SHARD) from None
            if "WouldBlock" in text or "failed to open WAL" in text:
                raise StoreUnavailable(in_use(str(self.path))) from None
            raise StoreUnavailable(
                f"cannot open the Qdrant Edge shard {self.path}: {describe(exc)}") from None

    async def close(self) -> None:
        if self._shard is not None:
            shard, self._shard = self._shard, None
            shard.close()
        if self.lock is not None:
            lock, self.lock = self.lock, None
            lock.release()

    async def _exists(self) -> bool:
        return self._shard is not None

    async def _create(self, dimension: int) -> None:
        q = self._q
        config = shard_config(q, dimension)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ensure_space(self.path.parent, NEW_SHARD)
        self._shard = self._open(lambda: q.EdgeShard.create(str(self.path), config))
        for name in INDEXED_FIELDS:
            self._shard.update(q.UpdateOperation.create_field_index(name,
                                                                    q.PayloadSchemaType.Keyword))

    async def _dimension(self) -> int:
        try:
            config = json.loads((self.path / CONFIG_FILE).read_text())
            vectors = config["vectors"]
            if set(vectors) != {""}:
                raise StoreIncompatible(
                    f"the Edge shard {self.path} uses named vectors; flowreg needs one unnamed "
                    "vector per point (use another collection)")
            return int(vectors[""]["size"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreIncompatible(
                f"cannot read the vector layout of the Edge shard {self.path}: {exc}") from None

    async def _scroll(self, scope: Scope, fields: list[str]) -> AsyncIterator[Page]:
        q = self._q
        where = self._filter(scope)
        stored = stored_fields(fields)
        offset: Any = None
        while True:
            records, offset = self._shard.scroll(q.ScrollRequest(
                offset=offset, limit=self.page_size, filter=where, with_payload=stored,
                with_vector=False))
            yield [(str(r.id), unpack(r.payload or {})) for r in records]
            if offset is None:
                return

    async def _retrieve(self, ids: Sequence[str], *, payload: bool,
                        vectors: bool) -> list[tuple[str, dict[str, Any] | None,
                                                     list[float] | None]]:
        records = self._shard.retrieve(list(ids), payload, vectors)
        return [(str(r.id), unpack(r.payload or {}) if payload else None,
                 list(r.vector) if vectors and isinstance(r.vector, list) else None)
                for r in records]

    async def _write(self, writes: Sequence[PointWrite], deletes: Sequence[str]) -> None:
        q = self._q
        upserts = [(w.id, w.vector, pack(w.payload)) for w in writes if w.vector is not None]
        rewrites = [w for w in writes if w.vector is None]
        if rewrites:
            # A payload rewrite is an upsert with the stored vector: one update for the batch
            # instead of one per point (each point's payload differs).
            stored = {pid: vector for pid, _, vector in
                      await self._retrieve([w.id for w in rewrites], payload=False,
                                           vectors=True)}
            upserts.extend((w.id, stored[w.id], pack(w.payload))
                           for w in rewrites if stored.get(w.id) is not None)
        # Checked before Edge is called: a write through mmap on a full disk is a SIGBUS.
        self.space.check(batch_bytes([(v, p) for _, v, p in upserts], len(deletes)))
        if upserts:
            self._shard.update(q.UpdateOperation.upsert_points(
                [q.Point(pid, vector, payload) for pid, vector, payload in upserts]))
        if deletes:
            self._shard.update(q.UpdateOperation.delete_points(list(deletes)))

    async def _count(self, scope: Scope | None = None) -> int:
        where = None if scope is None else self._filter(scope)
        return int(self._shard.count(self._q.CountRequest(filter=where, exact=True)))

    async def _search(self, agent_id: str, vector: Sequence[float],
                      limit: int) -> list[ScoredFlow]:
        q = self._q
        hits = self._shard.search(q.SearchRequest(
            query=q.Query.Nearest(list(vector)), filter=self._filter(Scope(agent_id)),
            limit=limit, with_payload=True, with_vector=False))
        return [ScoredFlow(str(h.id), float(h.score), unpack(h.payload or {})) for h in hits]

    def _filter(self, scope: Scope) -> Any:
        q = self._q
        must, must_not, should = [], [], []
        if scope.agent_id is not None:
            must.append(q.FieldCondition(key="agent_id", match=q.MatchValue(scope.agent_id)))
        if scope.owner is not None:
            owned = q.FieldCondition(key="owner", match=q.MatchValue(scope.owner))
            if scope.also_names is not None:
                should = [owned, q.FieldCondition(key="name",
                                                  match=q.MatchAny(list(scope.also_names)))]
            else:
                (must_not if scope.others else must).append(owned)
        if scope.names is not None:
            must.append(q.FieldCondition(key="name", match=q.MatchAny(list(scope.names))))
        if scope.flows_only:
            must.append(q.FieldCondition(key="flowreg", match=q.MatchValue(PAYLOAD_VERSION)))
        if not must and not must_not and not should:
            return None
        return q.Filter(must=must or None, should=should or None, must_not=must_not or None)

    def _map_error(self, exc: Exception) -> FlowregError | None:
        if is_out_of_space(exc):
            return no_space(self.path)
        if type(exc) is Exception:  # Edge raises bare exceptions
            if "dimension" in str(exc):
                return StoreIncompatible(f"the Qdrant Edge shard {self.path}: {describe(exc)}")
            return StoreUnavailable(f"the Qdrant Edge shard {self.path} failed: {describe(exc)}")
        return None
