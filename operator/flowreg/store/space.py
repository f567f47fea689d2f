"""Free disk space for an embedded store: checked before every write, never a crash.

Where the SIGBUS comes from: Qdrant Edge keeps its write-ahead log, vectors, payloads and
payload indexes in files it creates at their full size without allocating them (sparse: a
32 MiB log segment, a 32 MiB vector chunk, 4 MiB index pages...) and then uses through
``mmap``. Writing, or pre-faulting a mapping as Edge does when it loads a shard, makes the kernel
allocate the pages; on a full filesystem it cannot, and sends the process ``SIGBUS``. The
process dies by the signal with no message (what was written survives; a rerun converges).

A signal cannot be turned into an error afterwards, so it is prevented: before a shard is
loaded or created and before each write, the free space of its filesystem is compared with what
Edge may allocate: every byte its files could still allocate (apparent size minus allocated
size: the upper bound of what loading and writing into them can take), plus the batch (each
vector and payload byte counted several times), plus a reserve for one new file of the largest
kind. If that is short, ``NoSpace`` is raised (exit 4, "no space left on device: need ~X MiB,
Y MiB free at PATH") before Edge is called. Errors the engine reports itself (``ENOSPC``,
SQLite's "disk is full") are mapped to the same message.

The bound is generous: a store of a few thousand flows needs about 150 MiB free to be written.
What it cannot foresee is another process filling the disk during the write itself.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping, Sequence
from typing import Any

from flowreg.errors import StoreUnavailable

MIB = 1024 * 1024
RESERVE = 36 * MIB
"""On top of every estimate: one new file of the largest kind Edge creates while writing (a
32 MiB log segment, vector chunk or payload page), the run history's pages, and headroom."""
NEW_SHARD = 48 * MIB
"""What creating a shard allocates (its payload pages are written out at creation: 40 MiB
measured with Edge 0.9), plus headroom; its sparse files are checked at the first write."""
COPIES = 4
"""Each vector and payload byte lands in the write-ahead log and in its segment storage; a
payload also in its indexes: counted four times."""
POINT_OVERHEAD = 512
"""Per point: id tracker, version, index and log framing."""

_ENOSPC_TEXT = ("no space left on device", "os error 28", "database or disk is full",
                "disk is full", "enospc")


class NoSpace(StoreUnavailable):
    """The filesystem of an embedded store has not enough free space for the next write."""

    reason = "NoSpace"

    def __init__(self, path: str, need: int, free: int) -> None:
        self.path, self.need, self.free = path, need, free
        super().__init__(f"no space left on device: need ~{_mib(need)} MiB, {_mib(free)} MiB "
                         f"free at {path}")


def free_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes an unprivileged process may still allocate on the filesystem of ``path``."""
    st = os.statvfs(path)
    return int(st.f_bavail) * int(st.f_frsize)


def batch_bytes(points: Sequence[tuple[Sequence[float] | None, Mapping[str, Any] | str]],
                deletes: int = 0) -> int:
    """The estimated allocation of one write: ``points`` as (vector or None, payload as
    stored) pairs, plus ``deletes`` deletions (see ``COPIES``)."""
    import orjson

    total = RESERVE + deletes * POINT_OVERHEAD
    for vector, payload in points:
        size = len(payload) if isinstance(payload, str) else len(orjson.dumps(payload))
        total += POINT_OVERHEAD + COPIES * (size + 4 * len(vector or ()))
    return total


def unallocated_bytes(directory: str | os.PathLike[str]) -> int:
    """What the files under ``directory`` could still allocate: for each, its apparent size
    minus the bytes allocated to it (sparse files Edge maps into memory)."""
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue
            total += max(0, st.st_size - st.st_blocks * 512)
    return total


class SpaceGuard:
    """The free-space check before each write into one shard directory.

    Reading the size of every file of a shard costs about half a millisecond; a store with
    more than ``SLACK`` to spare re-reads them only every ``EVERY`` writes and uses the last
    total meanwhile (what new files can add in that many writes is what ``SLACK`` covers:
    a batch whose estimate times ``EVERY`` exceeds it is always checked afresh). Near the
    limit, every write re-reads them.
    """

    EVERY = 32
    SLACK = 1024 * MIB

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = directory
        self._unallocated: int | None = None
        self._since = 0

    def check(self, batch: int) -> None:
        """Raise ``NoSpace`` unless the unallocated bytes of the shard's files plus ``batch``
        (``batch_bytes`` of the write) are free."""
        free = free_bytes(self.directory)
        if (self._unallocated is None or self._since >= self.EVERY
                or (batch - RESERVE) * self.EVERY > self.SLACK
                or free < self._unallocated + batch + self.SLACK):
            self._unallocated = unallocated_bytes(self.directory)
            self._since = 0
        self._since += 1
        need = self._unallocated + batch
        if free < need:
            raise NoSpace(str(self.directory), need, free)


def ensure_space(path: str | os.PathLike[str], need: int) -> None:
    """Raise ``NoSpace`` unless the filesystem of ``path`` has ``need`` bytes free."""
    free = free_bytes(path)
    if free < need:
        raise NoSpace(str(path), need, free)


def is_out_of_space(exc: BaseException) -> bool:
    """Whether ``exc`` (an OSError, an Edge or SQLite error) says the disk is full."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _ENOSPC_TEXT)


def no_space(path: str | os.PathLike[str], need: int = RESERVE) -> NoSpace:
    """The ``NoSpace`` error for an engine's own out-of-space failure at ``path``."""
    try:
        free = free_bytes(path)
    except OSError:
        free = 0
    return NoSpace(str(path), need, free)


def _mib(n: int) -> str:
    return f"{n / MIB:.1f}".rstrip("0").rstrip(".") if n < 10 * MIB else str(round(n / MIB))
