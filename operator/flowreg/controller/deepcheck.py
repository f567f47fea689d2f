"""When each registry's next deep check is due.

A re-sync at ``spec.interval`` compares the registry's digest (one read); only a deep check
reads every point of the registry and recomputes its checksums from the stored content, which is
how flows edited, added or deleted behind flowreg's back are found. Deep checks run at the
operator's ``deepCheckInterval``. A registry this process has not deep-checked yet (every one
after a restart) gets its first deep check at a random point of that interval, so a restart
over thousands of registries spreads their full reads out instead of making them all at once.
An out-of-band edit therefore goes unseen for at most ``deepCheckInterval`` plus one
``spec.interval``; across an operator restart, at most twice that.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class DeepCheckClock:
    """Per registry (by uid), the monotonic time its next deep check is due."""

    def __init__(self, every: float, *, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        if every <= 0:
            raise ValueError("the deep check interval must be positive")
        self.every = every
        self._clock = clock
        self._rng = rng or random.Random()
        self._next: dict[str, float] = {}

    def due(self, uid: str) -> bool:
        """Whether ``uid``'s deep check is due (the first call schedules it, jittered)."""
        now = self._clock()
        at = self._next.get(uid)
        if at is None:
            at = self._next[uid] = now + self._rng.uniform(0.0, self.every)
        return now >= at

    def done(self, uid: str) -> None:
        """``uid`` was deep-checked now: the next one is a whole interval away."""
        self._next[uid] = self._clock() + self.every

    def forget(self, uid: str) -> None:
        self._next.pop(uid, None)
