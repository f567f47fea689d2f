"""The store backends the suite runs every store test on.

``memory`` (qdrant-client's emulation) and ``edge`` (Qdrant Edge in a temporary directory) are
always here; ``server`` (REST) and ``server-grpc`` join when a Qdrant server is at hand: the
binary hack/qdrant.sh builds (``$FLOWREG_QDRANT_BIN``), started once for the session, or an
external one at ``$QDRANT_URL`` (and ``$QDRANT_API_KEY``); ``cluster`` and ``cluster-grpc``
when the binary is built: a three-peer cluster (tests/support/qdrant_cluster.py), each test's
collection with three shards of two replicas (``CLUSTER_SETTINGS``), read with majority
consistency. Each test gets a collection of its own, dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

from flowreg.store import CollectionSettings, FlowStore, open_store
from tests.support.qdrant_cluster import cluster_available, session_cluster
from tests.support.qdrant_server import server_available, session_server

CLUSTER_SETTINGS = CollectionSettings(shards=3, replication_factor=2)


def backends() -> list[str]:
    """The backends this machine has."""
    found = ["memory", "edge"]
    if server_available():
        found += ["server", "server-grpc"]
    if cluster_available():
        found += ["cluster", "cluster-grpc"]
    return found


def open_backend(kind: str, tmp_path: Path, *, page_size: int | None = None) -> FlowStore:
    """A fresh, empty store of ``kind``."""
    if kind == "memory":
        return open_store(":memory:", "flows", page_size=page_size)
    if kind == "edge":
        return open_store(str(tmp_path / "edge-store"), "flows", page_size=page_size)
    if kind in ("server", "server-grpc"):
        endpoint = session_server()
        grpc = kind == "server-grpc" and endpoint.grpc_port is not None
        return open_store(endpoint.url, f"t_{uuid.uuid4().hex[:12]}", api_key=endpoint.api_key,
                          page_size=page_size, prefer_grpc=grpc,
                          grpc_port=endpoint.grpc_port or 6334)
    if kind in ("cluster", "cluster-grpc"):
        endpoint = session_cluster().endpoint
        return open_store(endpoint.url, f"t_{uuid.uuid4().hex[:12]}", api_key=endpoint.api_key,
                          page_size=page_size, prefer_grpc=kind == "cluster-grpc",
                          grpc_port=endpoint.grpc_port or 6334, settings=CLUSTER_SETTINGS)
    raise ValueError(f"unknown store backend {kind!r}")


def asking(store: FlowStore) -> Counter[str]:
    """The counted calls that ask ``store`` about its collection: on a server one
    ``get_collection`` (a 404 says it is absent), elsewhere ``collection_exists`` first."""
    from flowreg.store.client import ClientStore

    if isinstance(store, ClientStore) and not store.local:
        return Counter({"get_collection": 1})
    return Counter({"collection_exists": 1, "get_collection": 1})


async def drop(store: FlowStore) -> None:
    """Remove a test's collection from a shared server; close the store."""
    client = getattr(store, "client", None)
    if client is not None and getattr(store, "local", True) is False:
        await client.delete_collection(store.collection)
    await store.close()


def points_held(location: str, agent: str, api_key: str | None = None) -> tuple[int, int]:
    """(points, distinct flow names) the store at ``location`` holds for ``agent``."""
    import asyncio

    async def read() -> tuple[int, int]:
        store = open_store(location, api_key=api_key)
        try:
            points = await store.snapshot(agent)
            return len(points), len({p.name for p in points})
        finally:
            await store.close()

    return asyncio.run(read())
