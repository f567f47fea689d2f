"""One process at a time on an embedded store directory, and the others wait their turn.

The lock is an ``flock`` on the store directory itself (no file is written into it, so a
directory that turns out not to be a store is left untouched). It is taken before the directory
is inspected, migrated or given a shard, and held until the store is closed; the kernel drops it
when the process dies, however it dies. A second process waits for it up to ``timeout`` seconds
(``0``: not at all) and then gets ``StoreUnavailable`` naming the store and the wait, so two
applies started together on a new store run one after the other instead of both refusing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from pathlib import Path

from flowreg.errors import StoreUnavailable

DEFAULT_LOCK_TIMEOUT = 30.0
POLL_SECONDS = 0.05


class StoreLock:
    """An exclusive lock on the directory ``path``, held from ``acquire`` until ``release``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @classmethod
    def acquire(cls, path: str | Path, timeout: float = DEFAULT_LOCK_TIMEOUT) -> StoreLock:
        """The lock of the directory ``path`` (created if missing), waiting up to ``timeout``
        seconds for another process to release it."""
        lock = cls(Path(path))
        lock.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        deadline = time.monotonic() + max(0.0, timeout)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                        raise
                if time.monotonic() >= deadline:
                    waited = (f"waited {timeout:g} s for it" if timeout > 0
                              else "the lock timeout is 0: no wait")
                    raise StoreUnavailable(
                        f"the embedded store {lock.path} is in use by another process "
                        f"({waited}; an embedded store admits one process at a time: raise "
                        "--lock-timeout, or use a Qdrant server for concurrent access)")
                time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        except BaseException:
            os.close(fd)
            raise
        lock._fd = fd
        return lock

    def release(self) -> None:
        """Release the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
