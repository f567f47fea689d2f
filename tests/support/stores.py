"""The store backends the suite runs every store test on.

``memory`` (qdrant-client's emulation) and ``edge`` (Qdrant Edge in a temporary directory) are
always here; ``server`` joins when a Qdrant server is given by ``$QDRANT_URL`` (and
``$QDRANT_API_KEY``). Each test gets a collection of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from flowreg.store import FlowStore, open_store


def backends() -> list[str]:
    """The backends this machine has."""
    found = ["memory", "edge"]
    if os.environ.get("QDRANT_URL"):
        found.append("server")
    return found


def open_backend(kind: str, tmp_path: Path, *, page_size: int | None = None) -> FlowStore:
    """A fresh, empty store of ``kind``."""
    if kind == "memory":
        return open_store(":memory:", "flows", page_size=page_size)
    if kind == "edge":
        return open_store(str(tmp_path / "edge-store"), "flows", page_size=page_size)
    if kind == "server":
        return open_store(os.environ["QDRANT_URL"], f"t_{uuid.uuid4().hex[:12]}",
                          page_size=page_size)
    raise ValueError(f"unknown store backend {kind!r}")


async def drop(store: FlowStore) -> None:
    """Remove a test's collection from a shared server; close the store."""
    client = getattr(store, "client", None)
    if client is not None and getattr(store, "local", True) is False:
        await client.delete_collection(store.collection)
    await store.close()
