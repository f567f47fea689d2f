"""The cyclic garbage collector: paused around work that makes many acyclic objects, and set
for a long-running process."""

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


YOUNG_COLLECTION_EVERY = 10_000
"""Net allocations between two collections of the youngest generation in a long-running
process (Python's default: 700)."""
MIDDLE_COLLECTION_AFTER = 10
"""Collections of the youngest generation before one of the middle (Python's default)."""
OLD_COLLECTION_AFTER = 2
"""Collections of the middle generation before a full collection may run (Python's default:
10); a full one runs only once the old generation has also grown by a quarter since the last."""


def tune_for_service() -> None:
    """Set the collector for a long-running process whose heap grows with what it serves (the
    operator holds every object it watches, a fleet of registries some hundreds of MiB).

    The garbage made so far is freed, then what is left (modules, configuration) is frozen:
    collections never scan it again. From then on the youngest generation is collected every
    ``YOUNG_COLLECTION_EVERY`` allocations, so far fewer objects that are still in use get
    scanned and promoted, and a full collection (a scan of the whole heap) waits for
    ``OLD_COLLECTION_AFTER`` middle ones. Garbage cycles live longer before they are freed;
    objects without cycles are freed when their last reference goes, as always.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, MIDDLE_COLLECTION_AFTER, OLD_COLLECTION_AFTER)
