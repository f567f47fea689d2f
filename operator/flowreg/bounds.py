"""The allowed range of every numeric setting, shared by the CLI's flags and the operator's
configuration so that the two shells accept exactly the same values.

``Bound.check(name, value)`` returns the value as an ``int`` or ``float`` or raises
``ValueError`` naming the setting, the range and the value given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Bound:
    """A closed range ``[low, high]`` of integers (``integer``) or finite numbers."""

    low: float
    high: float
    integer: bool = True
    unit: str = ""

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        kind = "an integer" if self.integer else "a number"
        return f"{kind} from {_num(self.low)} to {_num(self.high)}{unit}"

    def refusal(self, value: Any) -> str:
        """Why ``value`` is refused, without the setting's name."""
        return f"must be {self.describe()}, not {value!r}"

    def check(self, name: str, value: Any) -> Any:
        """``value`` as a number in range; ``ValueError`` naming ``name`` otherwise."""
        number: float | int
        try:
            if isinstance(value, bool):
                raise ValueError
            if self.integer:
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                number = int(value) if not isinstance(value, str) else int(value.strip(), 10)
            else:
                number = float(value)
                if not math.isfinite(number):
                    raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"{name} {self.refusal(value)}") from None
        if not self.low <= number <= self.high:
            raise ValueError(f"{name} {self.refusal(value)}")
        return number


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


BATCH_SIZE = Bound(1, 10_000)
"""Changes per write batch (one embedding call and one write call each)."""
PAGE_SIZE = Bound(1, 100_000)
MAX_DELETIONS = Bound(0, 1_000_000_000)
EMBEDDING_DIMENSION = Bound(1, 65_536)
"""Qdrant's own limit on a dense vector's size."""
QUERY_LIMIT = Bound(1, 1_000)
HISTORY_LIMIT = Bound(1, 100_000)
PORT = Bound(1, 65_535)
METRICS_PORT = Bound(0, 65_535)
"""0 disables the metrics endpoint."""
LOCK_TIMEOUT = Bound(0, 86_400, integer=False, unit="seconds")
"""0: fail at once when another process holds the store."""
STORE_TIMEOUT = Bound(1, 3_600, integer=False, unit="seconds")
EMBEDDER_TIMEOUT = Bound(0.1, 3_600, integer=False, unit="seconds")
EMBEDDER_BATCH_SIZE = Bound(1, 10_000)
EMBEDDER_CONCURRENCY = Bound(1, 256)
EMBEDDER_MAX_RETRIES = Bound(0, 100)
PEERING_LIFETIME = Bound(1, 86_400, unit="seconds")
DRIFT_CHECK_SECONDS = Bound(0.1, 86_400, integer=False, unit="seconds")
SHARDS = Bound(1, 100_000)
REPLICATION_FACTOR = Bound(1, 1_000)
"""At most the number of peers, which only the server knows: checked when creating."""
WRITE_CONSISTENCY_FACTOR = Bound(1, 1_000)
DEEP_CHECK_SECONDS = Bound(1, 30 * 86_400, integer=False, unit="seconds")
"""How often each registry is read in full (``deepCheckInterval``)."""
PROGRESS_EVERY_SECONDS = Bound(0.1, 3_600, integer=False, unit="seconds")
MAX_STATUS_NAMES = Bound(0, 1_000)
