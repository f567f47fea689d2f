"""Measuring helpers every benchmark shares: Qdrant call counts, phases, medians, embedders.

``count_calls`` wraps a qdrant-client instance's Qdrant methods to count them; ``Phase``
measures one phase (wall time, embedding calls and texts, Qdrant calls and writes);
``median`` picks the median run; ``make_embedder`` gives the embedder a benchmark names.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from flowreg.embed import HashingEmbedder
from flowreg.embed.base import CountingEmbedder
from flowreg.embed.openai import OpenAIEmbedder

COUNTED = ("scroll", "upsert", "delete", "retrieve", "batch_update_points", "overwrite_payload",
           "set_payload", "create_collection", "collection_exists", "get_collection", "count",
           "query_points", "search")
WRITES = ("upsert", "delete", "batch_update_points", "overwrite_payload", "set_payload")


def count_calls(client: Any) -> Counter[str]:
    """Count calls of the client's Qdrant methods (sync or async) on this instance."""
    counts: Counter[str] = Counter()
    for name in COUNTED:
        method = getattr(client, name, None)
        if method is None:
            continue
        if asyncio.iscoroutinefunction(method):
            async def wrapped_async(*a: Any, _m: Any = method, _n: str = name,
                                    **k: Any) -> Any:
                counts[_n] += 1
                return await _m(*a, **k)
            setattr(client, name, wrapped_async)
        else:
            def wrapped(*a: Any, _m: Any = method, _n: str = name, **k: Any) -> Any:
                counts[_n] += 1
                return _m(*a, **k)
            setattr(client, name, wrapped)
    return counts


def make_embedder(kind: str, url: str | None) -> Any:
    if kind == "hashing":
        return HashingEmbedder(384)
    assert url, "the latency embedder needs the server URL"
    # flowreg's defaults: 100 texts a request (one request per batch), 4 requests in flight.
    return OpenAIEmbedder(url, "bench-model", dimension=384, api_key_env=None)


class Phase:
    """Measures one phase: wall time, embedding calls/texts, Qdrant calls/writes."""

    def __init__(self, name: str, counts: Counter[str], emb: CountingEmbedder) -> None:
        self.name, self.counts, self.emb = name, counts, emb

    def __enter__(self) -> Phase:
        self.c0, self.e0 = self.counts.copy(), (self.emb.calls, self.emb.texts)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0

    def result(self) -> dict[str, Any]:
        calls = self.counts - self.c0
        return {"phase": self.name, "wall": self.wall,
                "emb_calls": self.emb.calls - self.e0[0],
                "emb_texts": self.emb.texts - self.e0[1],
                "q_calls": sum(calls.values()),
                "q_writes": sum(calls[w] for w in WRITES)}


def median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median wall time, with every run's wall time in ``runs``."""
    ordered = sorted(runs, key=lambda r: r["wall"])
    return {**ordered[len(ordered) // 2], "runs": [r["wall"] for r in runs]}


def peak_rss_mib() -> float:
    """This process's peak resident set size (``VmHWM``), in MiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmHWM"))
    return int(line.split()[1]) / 1024
