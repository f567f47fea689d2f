"""No-op re-applies of N flows split into K registries of one agent, in this fresh process.

``python -m bench.edge_several LOCATION N K all|one`` applies all K registries (``all``) or
the first alone (``one``) and prints ``{"wall", "changes", "rss_mib"}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from bench.flows import as_read, make_registry, split_registry
from bench.measure import peak_rss_mib
from flowreg.embed import HashingEmbedder
from flowreg.store import open_store
from flowreg.sync import SyncEngine


def main(argv: list[str]) -> None:
    location, n, k, only = argv[0], int(argv[1]), int(argv[2]), argv[3] == "one"
    registries = split_registry(as_read(make_registry(n)), k)[:1 if only else k]
    engine = SyncEngine(open_store(location), HashingEmbedder(384))

    async def apply_all() -> int:
        return sum([(await engine.apply(registry)).change_count for registry in registries])

    started = time.perf_counter()
    changes = asyncio.run(apply_all())
    wall = time.perf_counter() - started
    print(json.dumps({"wall": wall, "changes": changes, "rss_mib": peak_rss_mib()}))


if __name__ == "__main__":
    main(sys.argv[1:])
