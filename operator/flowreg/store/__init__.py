"""Flows as Qdrant points, behind one seam (``FlowStore``) with a backend per module.

``open_store`` picks the backend once, from the location's form:

* a directory (the default ``.flowreg/qdrant``): Qdrant Edge, in-process (``store.edge``);
* ``http://`` or ``https://``: a Qdrant server through qdrant-client (``store.client``);
* ``:memory:``: qdrant-client's in-process emulation, for fast tests.

Backends are imported only when opened, so commands that never touch a store never load them.
"""

from __future__ import annotations

import re

from flowreg.errors import InvalidSpec, StoreIncompatible, StoreUnavailable
from flowreg.location import StoreLocation, parse_location
from flowreg.store.base import (
    CONTENT_FIELDS,
    DEFAULT_COLLECTION,
    DEFAULT_LOCATION,
    INDEXED_FIELDS,
    SNAPSHOT_FIELDS,
    FlowStore,
    PointWrite,
    ScoredFlow,
    StoreStats,
    chunks,
    flow_of,
    payload_of,
)
from flowreg.store.settings import GRPC_PORT, CollectionLayout, CollectionSettings

__all__ = [
    "CONTENT_FIELDS", "DEFAULT_COLLECTION", "DEFAULT_LOCATION", "INDEXED_FIELDS",
    "SNAPSHOT_FIELDS", "CollectionLayout", "CollectionSettings", "FlowStore", "PointWrite",
    "ScoredFlow", "StoreStats", "chunks", "flow_of", "is_url", "open_store", "payload_of",
]

COLLECTION_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,127}$")


def is_url(location: str | StoreLocation) -> bool:
    """Whether ``location`` names a Qdrant server."""
    if isinstance(location, StoreLocation):
        return location.is_server
    return location.lower().startswith(("http://", "https://"))


def open_store(location: str | StoreLocation = DEFAULT_LOCATION,
               collection: str = DEFAULT_COLLECTION, *,
               api_key: str | None = None, timeout: float = 30.0,
               page_size: int | None = None, prefer_grpc: bool = False,
               grpc_port: int = GRPC_PORT, lock_timeout: float | None = None,
               settings: CollectionSettings | None = None) -> FlowStore:
    """The store at ``location`` (a directory, an ``http(s)://`` URL or ``:memory:``; see
    ``flowreg.location``).

    A directory is locked for this process until the store is closed; another process holding
    it is waited for up to ``lock_timeout`` seconds (default 30). A directory written by an
    earlier flowreg (qdrant-client's emulation layout) is migrated into Qdrant Edge on first
    open. Raises ``StoreUnavailable`` (held by another process past the wait, unreachable),
    ``StoreIncompatible`` (a directory that is not a store) or ``InvalidSpec`` (a location
    that names no store, a collection name that cannot name a shard, or collection
    ``settings`` for a store that is not a Qdrant server: shards, replicas and consistency
    exist only there).
    """
    try:
        where = parse_location(location)
    except ValueError as exc:
        raise InvalidSpec(str(exc)) from None
    if not COLLECTION_NAME.match(collection):
        raise InvalidSpec(f"collection name {collection!r} must be 1-128 letters, digits, "
                          "'_' or '-', not starting with '-'")
    if where.is_server:
        from flowreg.store.client import ClientStore

        return ClientStore.connect(where.value, collection, api_key=api_key, timeout=timeout,
                                   page_size=page_size, prefer_grpc=prefer_grpc,
                                   grpc_port=grpc_port, settings=settings)
    if settings is not None and settings.configured:
        raise InvalidSpec(f"collection settings ({', '.join(settings.to_dict())}) apply only "
                          f"to a Qdrant server (an http(s):// URL), not to the store "
                          f"{where.value}")
    if where.is_memory:
        from flowreg.store.client import ClientStore

        return ClientStore.emulated(where.value, collection, page_size=page_size)
    from pathlib import Path

    from flowreg.store.edge import EdgeStore
    from flowreg.store.layout import prepare
    from flowreg.store.lock import DEFAULT_LOCK_TIMEOUT, StoreLock

    directory = where.value
    if Path(directory).exists() and not Path(directory).is_dir():
        raise StoreIncompatible(f"the store location {directory} is a file, not a directory")
    try:
        lock = StoreLock.acquire(directory, DEFAULT_LOCK_TIMEOUT if lock_timeout is None
                                 else lock_timeout)
    except OSError as exc:
        raise StoreUnavailable(f"cannot open the store directory {directory}: "
                               f"{exc.strerror or exc}") from None
    try:
        prepare(directory)
        store = EdgeStore(directory, collection, page_size=page_size)
    except BaseException:
        lock.release()
        raise
    store.lock = lock
    return store
