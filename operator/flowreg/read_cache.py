"""What reading a manifest file found, kept on disk so that an unchanged file is not read again.

Reading is most of a no-op ``flowreg apply``: 40 MB of YAML (50,000 flows) takes seconds to
parse and validate, while the sync that follows compares one digest per registry. So when a
file reads without a problem, its registries' summaries (names and content checksums in
declaration order, policy, metadata, the cluster size warning) are kept here, and the next
read of the same bytes takes them instead of parsing. A registry whose digest then matches the
store is done; any other is read in full before its plan (``flow.DeferredFlows``).

Key: sha256 over this format; a fingerprint of the code that reads manifests (flowreg's
version, the Python version, the content of every module and data file of the ``flowreg``
package, and the installed version, path, size and modification time of every file of the YAML
parsers, the schema validator and the JSON encoder behind content checksums), so an edited or
upgraded install never takes an entry it did not write; the text of the CRD this process
validates against (``$FLOWREG_CRD`` included); whether declared checksums were verified; the
path as given (problems and reports name it); and the file's bytes. An entry holds its key;
one that is missing, unreadable, oversized, malformed or made under another key is a miss,
never an error. A file with any problem is not kept. When a deferred registry is read in full,
everything the entry said of it (policy and metadata too) must be what the file gives, or the
apply stops before writing it.

Where: ``$FLOWREG_CACHE_DIR`` (``off`` or empty: no cache), else
``$XDG_CACHE_HOME/flowreg/manifests``, else ``~/.cache/flowreg/manifests``. A directory that is
not the user's own, or that others may write into, is not used (another user could plant an
entry). Entries are written atomically (a temporary file renamed), the least recently used
beyond ``MAX_ENTRIES`` are removed (only entries and stale temporary files: nothing else in the
directory), and any failure to create, write or prune (read-only home, full disk) leaves the
command working as if there were no cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
import sys
import tempfile
import time
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
MAX_ENTRY_BYTES = 64 * 2**20
"""An entry larger than this is not read (a manifest is at most 16 MiB, and its entry holds
less than four times its bytes)."""
READERS = {"yaml_rs": "yaml_rs", "yaml": "pyyaml", "jsonschema_rs": "jsonschema_rs",
           "orjson": "orjson"}
"""The packages whose code decides what a manifest reads to (in the key's fingerprint), each
with the name of its distribution (whose installed version is in the fingerprint too)."""
TMP_PREFIX = ".tmp-"
_ENTRY = re.compile(r"^[0-9a-f]{64}$")
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
        self._fingerprint = _fingerprint()

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

    def key(self, path: str, raw: bytes, verify_checksums: bool, crd_digest: str) -> str:
        """The key of ``raw`` read from ``path`` by this install, validated against the CRD
        whose text has the sha256 ``crd_digest`` (``schema.crd_digest``)."""
        h = hashlib.sha256()
        h.update(f"flowreg-read-cache/{CACHE_FORMAT}\x00".encode())
        h.update(self.fingerprint())
        h.update(f"\x00{crd_digest}\x00{int(verify_checksums)}\x00".encode())
        h.update(os.fsencode(path))
        h.update(b"\x00")
        h.update(raw)
        return h.hexdigest()

    def fingerprint(self) -> bytes:
        """What the reading code is (computed once, when the cache is made): see the module's
        docstring."""
        return self._fingerprint

    def _trusted(self) -> bool:
        """Whether the directory is this user's and nobody else may write into it (an entry
        planted by another user could claim a registry is unchanged)."""
        try:
            st = self.directory.stat()
        except OSError:
            return False
        return st.st_uid == os.getuid() and not st.st_mode & 0o022

    def get(self, key: str) -> CachedFile | None:
        """The entry under ``key``; None for a miss (absent, unreadable or not an entry)."""
        path = self.directory / key
        if not self._trusted():
            return None
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

    def discard(self, key: str) -> None:
        """Remove the entry under ``key``, if any."""
        with contextlib.suppress(OSError):
            (self.directory / key).unlink()

    def put(self, key: str, documents: int, registries: Sequence[CachedRegistry]) -> None:
        """Keep an entry under ``key``; does nothing if it cannot be written."""
        try:
            data = orjson.dumps({"key": key, "documents": documents,
                                 "registries": [r.to_json() for r in registries]})
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self._trusted():
                return
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=TMP_PREFIX)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, self.directory / key)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            self._prune()
        except (OSError, orjson.JSONEncodeError):
            return

    def _prune(self) -> None:
        """Remove entries beyond ``max_entries`` (least recently used first) and temporary
        files left for an hour; nothing else in the directory is touched."""
        entries = []
        stale = time.time() - 3600
        for path in self.directory.iterdir():
            with contextlib.suppress(OSError):
                if _ENTRY.match(path.name):
                    entries.append((path.stat().st_mtime_ns, path))
                elif path.name.startswith(TMP_PREFIX) and path.stat().st_mtime < stale:
                    path.unlink()
        entries.sort(reverse=True)
        for _, path in entries[self.max_entries:]:
            with contextlib.suppress(OSError):
                path.unlink()


def _stat_line(file: Path) -> str:
    try:
        st = file.stat()
    except OSError:
        return f"{file}:absent"
    return f"{file}:{st.st_size}:{st.st_mtime_ns}"


def _fingerprint() -> bytes:
    h = hashlib.sha256(f"{__version__}\x00{sys.version}\x00".encode())
    for file in sorted(p for p in _PACKAGE.rglob("*") if p.suffix in (".py", ".yaml")):
        h.update(os.fsencode(file.relative_to(_PACKAGE)))
        try:
            h.update(b"\x00" + file.read_bytes() + b"\x00")
        except OSError:
            h.update(b"\x00absent\x00")
    listings: dict[Path, tuple[str, ...]] = {}  # each site-packages directory listed once
    for module, distribution in sorted(READERS.items()):
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            h.update(f"{module}:absent\x00".encode())
            continue
        origin = Path(spec.origin)
        files = sorted(p for p in origin.parent.iterdir() if p.is_file()) \
            if spec.submodule_search_locations else [origin]
        site = origin.parent.parent
        if site not in listings:
            listings[site] = _listing(site)
        parts = [module, _installed_version(listings[site], distribution)]
        parts.extend(_stat_line(file) for file in files)
        h.update("\x00".join(parts).encode("utf-8", "surrogateescape"))
    return h.digest()


def _listing(site: Path) -> tuple[str, ...]:
    """The names in a site-packages directory (one listing for every reader installed there)."""
    try:
        return tuple(os.listdir(site))
    except OSError:
        return ()


def _installed_version(names: tuple[str, ...], distribution: str) -> str:
    """The names of ``distribution``'s ``.dist-info`` directories among ``names`` (they carry
    its version), without importing ``importlib.metadata``."""
    prefix = distribution.lower().replace("-", "_") + "-"
    return ",".join(sorted(name for name in names
                           if name.lower().startswith(prefix) and name.endswith(".dist-info")))
