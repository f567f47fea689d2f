"""A cold open + snapshot of an embedded store, in this fresh process (imports included).

``python -m bench.edge_cold LOCATION AGENT`` prints ``{"wall": seconds, "points": n}``.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import asyncio  # noqa: E402  (the clock starts before the imports it measures)
import json  # noqa: E402
import sys  # noqa: E402


def main(argv: list[str]) -> None:
    from flowreg.store import open_store

    location, agent = argv
    store = open_store(location)
    snapshot = asyncio.run(store.snapshot(agent))
    print(json.dumps({"wall": time.perf_counter() - STARTED, "points": len(snapshot)}))


if __name__ == "__main__":
    main(sys.argv[1:])
