"""What an embedded store directory holds, and the one-time move of older stores into Edge.

A store directory holds one Qdrant Edge shard per collection (``D/<collection>``). Earlier
flowreg releases kept embedded stores in qdrant-client's emulation layout (``D/meta.json`` and
``D/collection/<name>/storage.sqlite``); such a directory is migrated into Edge the first time
it is opened: every point of every collection (payload and vector) is copied into a new shard,
the copy is verified (same ids, same payloads, a vector for every point), and only then are the
old files moved aside into ``D/local-mode-backup``. A migration killed at any step is finished
or redone by the next open; the old files are never deleted.

A directory that is neither empty, nor a store of shards, nor the older layout is refused, and
nothing is written into it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flowreg.errors import StoreIncompatible, StoreUnavailable
from flowreg.store.base import INDEXED_FIELDS, in_use
from flowreg.store.edge import is_shard, pack, shard_config, unpack

LEGACY_META = "meta.json"
LEGACY_DIR = "collection"
LEGACY_FILES = (LEGACY_META, LEGACY_DIR, ".lock")
BACKUP = "local-mode-backup"
STAGING = ".migrating-"
PAGE = 2_000


def is_legacy(path: Path) -> bool:
    """Whether ``path`` holds a store in qdrant-client's emulation layout."""
    return (path / LEGACY_META).is_file()


def prepare(location: str) -> list[str]:
    """Make ``location`` a store directory of Edge shards; the collections migrated, if any.

    Raises ``StoreIncompatible`` for a directory that is not a store (naming what it holds),
    ``StoreUnavailable`` if another process holds the older store.
    """
    path = Path(location)
    if path.exists() and not path.is_dir():
        raise StoreIncompatible(f"the store location {location} is a file, not a directory")
    if not path.exists():
        path.mkdir(parents=True)
        return []
    _recover(path)
    migrated = migrate(path) if is_legacy(path) else []
    strangers = sorted(e.name for e in path.iterdir()
                       if not (e.name.startswith(BACKUP) or (e.is_dir() and is_shard(e))))
    if strangers:
        shown = ", ".join(strangers[:5]) + (", …" if len(strangers) > 5 else "")
        raise StoreIncompatible(
            f"{location} is not a flowreg store (it holds {shown}); point --store at an empty "
            "or new directory, or at one written by flowreg; nothing was written")
    return migrated


def migrate(path: Path) -> list[str]:
    """Copy every collection of the older layout at ``path`` into Edge shards, verify, then
    move the old files aside. Returns the collections migrated."""
    from qdrant_client import QdrantClient

    try:
        client = QdrantClient(path=str(path))
    except RuntimeError as exc:
        if "already accessed" in str(exc):
            raise StoreUnavailable(in_use(str(path))) from None
        raise
    try:
        names = [c.name for c in client.get_collections().collections]
        for name in names:
            staging = path / f"{STAGING}{name}"
            shutil.rmtree(staging, ignore_errors=True)
            _copy(client, name, staging)
    finally:
        client.close()
    partial = path / f"{BACKUP}.partial"
    partial.mkdir(exist_ok=True)
    for entry in LEGACY_FILES:
        if (path / entry).exists():
            (path / entry).rename(partial / entry)
    backup = _free_name(path / BACKUP)
    partial.rename(backup)
    _recover(path)
    return names


def _copy(client: Any, name: str, staging: Path) -> None:
    """Copy collection ``name`` into a new shard at ``staging`` and verify the copy."""
    import qdrant_edge as q
    from qdrant_client import models

    vectors = client.get_collection(name).config.params.vectors
    if not isinstance(vectors, models.VectorParams):
        raise StoreIncompatible(
            f"collection {name!r} of {staging.parent} uses named vectors; flowreg cannot "
            "migrate it into Qdrant Edge")
    shard = q.EdgeShard.create(str(staging), shard_config(q, int(vectors.size)))
    try:
        for field in INDEXED_FIELDS:
            shard.update(q.UpdateOperation.create_field_index(field, q.PayloadSchemaType.Keyword))
        copied = 0
        for records in _pages(client, name):
            shard.update(q.UpdateOperation.upsert_points(
                [q.Point(str(r.id), list(r.vector), pack(r.payload or {})) for r in records]))
            copied += len(records)
        shard.flush()
        _verify(client, name, shard, copied)
    finally:
        shard.close()


def _verify(client: Any, name: str, shard: Any, copied: int) -> None:
    """Every point of ``name`` is in ``shard`` with the same payload and a vector."""
    import qdrant_edge as q

    count = int(shard.count(q.CountRequest(exact=True)))
    if count != copied or count != client.count(name, exact=True).count:
        raise StoreIncompatible(
            f"migrating collection {name!r} copied {count} of {copied} points; the older store "
            "was left as it was")
    for records in _pages(client, name):
        moved = {str(r.id): r for r in shard.retrieve([str(r.id) for r in records], True, True)}
        for r in records:
            twin = moved.get(str(r.id))
            if twin is None or unpack(twin.payload or {}) != (r.payload or {}) or not twin.vector:
                raise StoreIncompatible(
                    f"migrating collection {name!r}: point {r.id} did not copy exactly; the "
                    "older store was left as it was")


def _pages(client: Any, name: str) -> Iterator[list[Any]]:
    offset = None
    while True:
        records, offset = client.scroll(name, limit=PAGE, offset=offset, with_payload=True,
                                        with_vectors=True)
        if records:
            yield records
        if offset is None:
            return


def _recover(path: Path) -> None:
    """Finish or undo a migration that was killed part-way."""
    partial = path / f"{BACKUP}.partial"
    if partial.is_dir():  # killed while moving the old files aside: move them back
        for entry in partial.iterdir():
            if not (path / entry.name).exists():
                entry.rename(path / entry.name)
        shutil.rmtree(partial, ignore_errors=True)
    for staging in path.glob(f"{STAGING}*"):
        if is_legacy(path):  # not verified yet: the migration starts again
            shutil.rmtree(staging, ignore_errors=True)
        else:  # verified, old files aside: put the shard in place
            staging.rename(path / staging.name[len(STAGING):])


def _free_name(path: Path) -> Path:
    if not path.exists():
        return path
    n = 2
    while path.with_name(f"{path.name}-{n}").exists():
        n += 1
    return path.with_name(f"{path.name}-{n}")
