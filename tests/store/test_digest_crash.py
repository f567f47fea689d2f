"""A sync SIGKILLed before each of its store writes (clearing the digest, every batch, writing
the digest) never leaves a stale store that looks current: whichever declaration is synced
next, the old or the new one, the store ends up holding exactly it (a deep check finds
nothing to do)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from flowreg.embed import HashingEmbedder
from flowreg.flow import DeclaredFlows, Flow
from flowreg.store import FlowStore, open_store
from flowreg.sync import SyncEngine
from tests.support.qdrant_server import server_available, session_server
from tests.support.stores import drop

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

OLD = [(i, "") for i in range(10)]
NEW = [(i, " v2") for i in range(8)] + [(i, "") for i in range(10, 13)]
"""8 flows updated, 3 created, 2 deleted: 13 changes, in 4 batches of 4."""
WRITE_CALLS = 6  # clear the digest, 4 batches, write the digest

CHILD = textwrap.dedent("""
    import asyncio, os, signal, sys
    from flowreg.embed import HashingEmbedder
    from flowreg.store import open_store
    from flowreg.sync import SyncEngine
    from tests.store.test_digest_crash import NEW, declared

    location, collection, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])

    async def main():
        store = open_store(location, collection, api_key=os.environ.get("KEY") or None)
        made = 0
        write = store._write

        async def killing_write(writes, deletes):
            nonlocal made
            if made == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            made += 1
            await write(writes, deletes)

        store._write = killing_write
        await SyncEngine(store, HashingEmbedder(), batch_size=4).apply(declared(NEW))
        await store.close()

    asyncio.run(main())
""")


def declared(flows: list[tuple[int, str]]) -> DeclaredFlows:
    return DeclaredFlows("agent", "ns/reg", tuple(
        Flow(f"flow_{i:03d}", f"do thing {i}{salt}", (f"please do {i}",)) for i, salt in flows))


def backends() -> list[str]:
    return ["edge", "server"] if server_available() else ["edge"]


def location_of(kind: str, tmp_path) -> tuple[str, str, str]:
    if kind == "edge":
        return str(tmp_path / "store"), "flows", ""
    endpoint = session_server()
    return endpoint.url, f"crash_{os.urandom(6).hex()}", endpoint.api_key or ""


async def sync(location: str, collection: str, key: str, flows: list[tuple[int, str]],
               *, deep: bool = False, dry: bool = False):
    store: FlowStore = open_store(location, collection, api_key=key or None)
    try:
        engine = SyncEngine(store, HashingEmbedder(), batch_size=4)
        if dry:
            return (await engine.plan(declared(flows), deep=True)).report
        return await engine.apply(declared(flows), deep=deep)
    finally:
        await store.close()


@pytest.mark.slow
@pytest.mark.parametrize("kind", backends())
@pytest.mark.parametrize("then", ["old", "new"])
@pytest.mark.parametrize("kill_at", range(WRITE_CALLS))
def test_a_sync_killed_before_any_write_never_looks_current(tmp_path, kind, then, kill_at):
    location, collection, key = location_of(kind, tmp_path)
    first = asyncio.run(sync(location, collection, key, OLD))
    assert first.digest == "written"
    child = subprocess.run([sys.executable, "-c", CHILD, location, collection, str(kill_at)],
                           env={**os.environ, "KEY": key}, cwd=REPO, capture_output=True,
                           text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr

    flows = OLD if then == "old" else NEW
    report = asyncio.run(sync(location, collection, key, flows))
    # Killed before its first write, the old declaration is still whole and current.
    untouched = kill_at == 0 and then == "old"
    assert report.digest == ("matched" if untouched else "written")
    check = asyncio.run(sync(location, collection, key, flows, dry=True))
    assert check.change_count == 0 and len(check.skipped) == len(flows)
    if kind == "server":
        asyncio.run(drop(open_store(location, collection, api_key=key)))
