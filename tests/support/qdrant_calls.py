"""Count the calls a qdrant-client instance receives, at the client's own boundary."""

from __future__ import annotations

import inspect
from collections import Counter
from typing import Any

WRITES = ("upsert", "delete", "batch_update_points", "overwrite_payload", "set_payload",
          "delete_vectors", "update_vectors", "upload_points")


def count_calls(client: Any) -> Counter[str]:
    """Wrap every public coroutine method of ``client`` to count its calls; return the counter."""
    counts: Counter[str] = Counter()
    for name, _ in inspect.getmembers(type(client), inspect.iscoroutinefunction):
        if name.startswith("_"):
            continue
        method = getattr(client, name)

        async def wrapped(*args: Any, _method: Any = method, _name: str = name,
                          **kwargs: Any) -> Any:
            counts[_name] += 1
            return await _method(*args, **kwargs)

        setattr(client, name, wrapped)
    return counts


def writes(counts: Counter[str]) -> int:
    return sum(counts[name] for name in WRITES)
