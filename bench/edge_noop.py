"""A no-op re-apply of the 1%-changed registry of N flows, in this fresh process (the flows
as reading a manifest leaves them: content checksums computed before the clock starts).

``python -m bench.edge_noop LOCATION N`` prints ``{"wall", "changes", "rss_mib"}`` (the
process's own peak RSS).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from bench.flows import as_read, change_one_percent, make_registry
from bench.measure import peak_rss_mib
from flowreg.embed import HashingEmbedder
from flowreg.store import open_store
from flowreg.sync import SyncEngine


def main(argv: list[str]) -> None:
    location, n = argv[0], int(argv[1])
    registry = as_read(change_one_percent(make_registry(n)))  # what the store holds by now
    engine = SyncEngine(open_store(location), HashingEmbedder(384))
    started = time.perf_counter()
    report = asyncio.run(engine.apply(registry))
    wall = time.perf_counter() - started
    print(json.dumps({"wall": wall, "changes": report.change_count,
                      "rss_mib": peak_rss_mib()}))


if __name__ == "__main__":
    main(sys.argv[1:])
