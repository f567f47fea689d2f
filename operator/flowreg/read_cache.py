"""What reading a manifest file found, kept on disk so that an unchanged file is not read again.

Reading is most of a no-op ``flowreg apply``: 40 MB of YAML (50,000 flows) takes seconds to
parse and validate, while the sync that follows compares one digest per registry. So when a
file reads without a problem, its registries' summaries (names and content checksums in
declaration order, policy, metadata, the cluster size warning) are kept here, and the next
read of the same bytes takes them instead of parsing. A registry whose digest then matches the
store is done; any other is read in full before its plan (``flow.DeferredFlows``).

Key: sha256 over this format, a fingerprint of the code that reads manifests (flowreg's
version, and the size and modification time of every module of the ``flowreg`` package and of
the CRD, so an edited or upgraded install never takes an entry it did not write), whether
declared checksums were verified, the path as given (problems and reports name it), and the
file's bytes. An entry holds its key; one that is missing, unreadable, oversized, malformed or
made under another key is a miss, never an error. A file with any problem is not kept.

Where: ``$FLOWREG_CACHE_DIR`` (``off`` or empty: no cache), else
``$XDG_CACHE_HOME/flowreg/manifests``, else ``~/.cache/flowreg/manifests``. Entries are written
atomically (a temporary file renamed), the least recently used beyond ``MAX_ENTRIES`` are
removed, and any failure to create, write or prune (read-only home, full disk) leaves the
command working as if there were no cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from flowreg.flow import SyncPolicy
from flowreg.version import __version__

CACHE_FORMAT = 1
MAX_ENTRIES = 64
"""Entries kept; a few hundred MiB at most with the largest manifests read."""
MAX_ENTRY_BYTES = 256 * 2**20
"""An entry larger than this is not read (no manifest flowreg accepts makes one)."""
ENV = "FLOWREG_CACHE_DIR"
_PACKAGE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class CachedRegistry:
    """One FlowRegistry of a cached file: what ``manifest.Declaration`` holds, the flows
    summarised (names and content checksums, in declaration order)."""

    agent_id: str
    owner: str
    names: tuple[str, ...]
    content_checksums: tuple[str, ...]
    policy: SyncPolicy
    name: str
    namespace: str
    source: str
    store: str
    deletion_policy: str
    suspend: bool
    interval: str
    size_warning: str | None

    def to_json(self) -> dict[str, Any]:
        return {"agent_id": self.agent_id, "owner": self.owner, "names": self.names,
                "content_checksums": self.content_checksums,
                "policy": [self.policy.prune, self.policy.max_deletions,
                           self.policy.allow_empty],
                "name": self.name, "namespace": self.namespace, "source": self.source,
                "store": self.store, "deletion_policy": self.deletion_policy,
                "suspend": self.suspend, "interval": self.interval,
                "size_warning": self.size_warning}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CachedRegistry:
        """Raises KeyError, TypeError or ValueError on anything not written by ``to_json``."""
        names, checksums = data["names"], data["content_checksums"]
        prune, max_deletions, allow_empty = data["policy"]
        strings = (data["agent_id"], data["owner"], data["name"], data["namespace"],
                   data["source"], data["store"], data["deletion_policy"], data["interval"])
        if not (isinstance(names, list) and isinstance(checksums, list)
                and len(names) == len(checksums)
                and all(isinstance(v, str) for v in (*strings, *names, *checksums))
                and isinstance(prune, bool) and isinstance(allow_empty, bool)
                and isinstance(data["suspend"], bool)
                and (max_deletions is None or type(max_deletions) is int)
                and (data["size_warning"] is None or isinstance(data["size_warning"], str))):
            raise ValueError("not a cached registry")
        return cls(data["agent_id"], data["owner"], tuple(names), tuple(checksums),
                   SyncPolicy(prune, max_deletions, allow_empty), data["name"],
                   data["namespace"], data["source"], data["store"], data["deletion_policy"],
                   data["suspend"], data["interval"], data["size_warning"])


@dataclass(frozen=True)
class CachedFile:
    """What one file read to: its registries, and how many documents it held."""

    documents: int
    registries: tuple[CachedRegistry, ...]


class ReadCache:
    """Entries in ``directory`` (created when the first entry is written)."""

    def __init__(self, directory: str | os.PathLike[str],
                 max_entries: int = MAX_ENTRIES) -> None:
        self.directory = Path(directory)
        self.max_entries = max_entries
        self._fingerprint: bytes | None = None

    @classmethod
    def default(cls) -> ReadCache | None:
        """The cache the environment names (see the module's docstring); None when off."""
        configured = os.environ.get(ENV)
        if configured is not None:
            return None if configured.strip() in ("", "off") else cls(configured)
        home = os.path.expanduser("~")
        base = os.environ.get("XDG_CACHE_HOME") or (
            os.path.join(home, ".cache") if os.path.isabs(home) else "")
        return cls(os.path.join(base, "flowreg", "manifests")) if base else None

    def key(self, path: str, raw: bytes, verify_checksums: bool) -> str:
        """The key of ``raw`` read from ``path`` by this install."""
        h = hashlib.sha256()
        h.update(f"flowreg-read-cache/{CACHE_FORMAT}\x00".encode())
        h.update(self.fingerprint())
        h.update(f"\x00{int(verify_checksums)}\x00{path}\x00".encode())
        h.update(raw)
        return h.hexdigest()

    def fingerprint(self) -> bytes:
        """flowreg's version and the size and mtime of its modules and CRD (computed once)."""
        if self._fingerprint is None:
            parts = [__version__]
            for file in sorted(_code_files()):
                with contextlib.suppress(OSError):
                    st = file.stat()
                    parts.append(f"{file}:{st.st_size}:{st.st_mtime_ns}")
            self._fingerprint = "\x00".join(parts).encode()
        return self._fingerprint

    def get(self, key: str) -> CachedFile | None:
        """The entry under ``key``; None for a miss (absent, unreadable or not an entry)."""
        path = self.directory / key
        try:
            with path.open("rb") as fh:
                raw = fh.read(MAX_ENTRY_BYTES + 1)
            if len(raw) > MAX_ENTRY_BYTES:
                return None
            data = orjson.loads(raw)
            if not isinstance(data, dict) or data.get("key") != key:
                return None
            documents = data["documents"]
            if type(documents) is not int or not isinstance(data["registries"], list):
                return None
            entry = CachedFile(documents, tuple(CachedRegistry.from_json(r)
                                                for r in data["registries"]))
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: pruned last
        return entry

    def put(self, key: str, documents: int, registries: Sequence[CachedRegistry]) -> None:
        """Keep an entry under ``key``; does nothing if it cannot be written."""
        data = orjson.dumps({"key": key, "documents": documents,
                             "registries": [r.to_json() for r in registries]})
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, self.directory / key)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            self._prune()
        except OSError:
            return

    def _prune(self) -> None:
        entries = []
        for path in self.directory.iterdir():
            with contextlib.suppress(OSError):
                entries.append((path.stat().st_mtime_ns, path))
        entries.sort(reverse=True)
        for _, path in entries[self.max_entries:]:
            with contextlib.suppress(OSError):
                path.unlink()


def _code_files() -> list[Path]:
    files = list(_PACKAGE.rglob("*.py"))
    files.extend(p for p in (_PACKAGE / "crds" / "flowregistry.yaml",
                             _PACKAGE.parents[1] / "crds" / "flowregistry.yaml") if p.exists())
    return files
