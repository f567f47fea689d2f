"""The cyclic garbage collector paused around work that makes many acyclic objects."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block, and leave it as it was found
    (enabled again only if it was enabled before).

    For blocks that make tens of thousands of acyclic, short-lived objects (reading manifests,
    snapshots of a store): each collection would scan every object of the process and find
    nothing to free. Free what the block made before it ends, or the collector runs as soon as
    it resumes.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
