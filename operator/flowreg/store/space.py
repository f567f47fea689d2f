"""Free disk space for an embedded store: checked before every write, never a crash.

Qdrant Edge keeps its write-ahead log, vectors, payloads and indexes in files it creates at
their full size without allocating them (sparse) and then writes through ``mmap``. On a full
filesystem the kernel cannot allocate the page a write touches and sends the process
``SIGBUS``: it dies by a signal, with no message (the data already written survives; a rerun
converges). A signal cannot be turned into an error afterwards, so it is prevented: before each
write the free space of the store's filesystem is compared with an estimate of what the write
will allocate, and a write that may not fit is refused with ``NoSpace`` (exit 4, "no space left
on device: need ~X MiB, Y MiB free at PATH") before Edge is called. The estimate is generous
(every byte of a vector and a payload counted several times, plus a fixed reserve for the pages
each file's first touch allocates), so a refusal comes while space remains; errors the engine
reports itself (``ENOSPC``, SQLite's "disk is full") are mapped to the same message.

What the estimate cannot foresee is another process filling the disk during the write itself.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping, Sequence
from typing import Any

from flowreg.errors import StoreUnavailable

MIB = 1024 * 1024
RESERVE = 8 * MIB
"""Allocated on top of every estimate: the first page of each of the ~20 files a segment
writes through mmap, the run history's SQLite pages, and headroom."""
NEW_SHARD = 48 * MIB
"""What creating a shard allocates (its payload pages are written out at creation: 40 MiB
measured with Edge 0.9), plus headroom."""
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
