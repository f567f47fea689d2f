"""The cost of the free-space check an embedded store makes before loading and each write.

Applies ``N`` flows into a new Qdrant Edge store at several batch sizes and prints, per batch
size, the apply's duration, its write calls, how often the check re-read the shard's file sizes
and the time that took in all (measured by wrapping it).

Usage: ``python -m bench.space_check [N] [DIR]`` (default 3000 flows, in a temporary directory).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import flowreg.store.space as space
from bench.flows import make_registry
from flowreg.embed.hashing import HashingEmbedder
from flowreg.store import open_store
from flowreg.sync import SyncEngine


def main(n: int, where: str | None) -> None:
    spent = {"seconds": 0.0, "calls": 0}
    measured = space.unallocated_bytes

    def timed(path: object) -> int:
        started = time.perf_counter()
        try:
            return measured(path)  # type: ignore[arg-type]
        finally:
            spent["seconds"] += time.perf_counter() - started
            spent["calls"] += 1

    space.unallocated_bytes = timed  # type: ignore[assignment]
    registry = make_registry(n)
    print(f"{'batch':>6} {'apply s':>8} {'writes':>7} {'checks':>7} {'check s':>8} {'share':>6}")
    for batch in (5, 20, 100, 500):
        spent.update(seconds=0.0, calls=0)
        with tempfile.TemporaryDirectory(dir=where) as tmp:
            engine = SyncEngine(open_store(str(Path(tmp) / "q")), HashingEmbedder(384),
                                batch_size=batch)
            report = asyncio.run(engine.apply(registry))
            asyncio.run(engine.store.close())
        share = spent["seconds"] / report.duration_seconds
        print(f"{batch:>6} {report.duration_seconds:>8.3f} {report.store_writes:>7} "
              f"{spent['calls']:>7} {spent['seconds']:>8.3f} {share:>6.1%}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000,
         sys.argv[2] if len(sys.argv) > 2 else None)
