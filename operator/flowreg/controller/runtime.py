"""The running operator's reconciler and event loop, reachable from outside kopf.

Tests that run the operator in-process (kopf's ``KopfRunner`` runs it in a thread with its own
loop) read Qdrant through the operator's own store handles: ``call(coro_fn)`` runs a coroutine
on the operator's loop, so the test and the operator never use an embedded store concurrently
from two threads. A test may also ``preinstall`` a reconciler so that its stores outlive an
operator restart (``keep_open``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from flowreg.controller.reconcile import Reconciler

T = TypeVar("T")
_lock = threading.Lock()
_state: dict[str, Any] = {"reconciler": None, "loop": None, "preinstalled": None}


def preinstall(reconciler: Reconciler | None) -> None:
    """Make the next operator start use ``reconciler`` (and not close its stores on stop)."""
    with _lock:
        _state["preinstalled"] = reconciler


def current_reconciler() -> Reconciler | None:
    """The preinstalled reconciler, if any."""
    return _state["preinstalled"]


def keep_open() -> bool:
    return _state["preinstalled"] is not None


def install(reconciler: Reconciler, loop: asyncio.AbstractEventLoop) -> None:
    with _lock:
        _state["reconciler"], _state["loop"] = reconciler, loop


def uninstall() -> None:
    with _lock:
        _state["reconciler"], _state["loop"] = None, None


def reconciler() -> Reconciler:
    """The running operator's reconciler; ``RuntimeError`` if no operator runs here."""
    found = _state["reconciler"]
    if found is None:
        raise RuntimeError("no operator is running in this process")
    return found  # type: ignore[no-any-return]


def call(fn: Callable[[Reconciler], Awaitable[T]], timeout: float = 60.0) -> T:
    """Run ``fn(reconciler)`` on the operator's loop from another thread; return its result."""
    loop = _state["loop"]
    if loop is None:
        raise RuntimeError("no operator is running in this process")
    future = asyncio.run_coroutine_threadsafe(_run(fn), loop)
    return future.result(timeout)


async def _run(fn: Callable[[Reconciler], Awaitable[T]]) -> T:
    return await fn(reconciler())
