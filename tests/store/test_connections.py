"""A store on a Qdrant server keeps its connections open between calls (qdrant-client's own
default opens one per call to ``127.0.0.1`` or ``localhost``: at the operator's call rate,
connecting was a sixth of its CPU)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest

from flowreg.embed import HashingEmbedder
from flowreg.flow import DeclaredFlows, Flow
from flowreg.store import open_store
from flowreg.sync import SyncEngine
from tests.support.qdrant_server import server_available, session_server

TCP_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))

pytestmark = pytest.mark.skipif(not server_available() or not TCP_TABLES[0].exists(),
                                reason="needs the Qdrant server binary and /proc/net/tcp")


def client_ports(server_port: int) -> set[int]:
    """Local ports of every TCP socket (any state, TIME_WAIT too) connected to ``server_port``
    on this machine."""
    ports = set()
    for table in TCP_TABLES:
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            local, remote = line.split()[1:3]
            if int(remote.rsplit(":", 1)[1], 16) == server_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


async def test_thirty_calls_reuse_one_connection():
    endpoint = session_server()
    port = urlparse(endpoint.url).port
    assert port is not None and urlparse(endpoint.url).hostname in ("127.0.0.1", "localhost")
    store = open_store(endpoint.url, "t_keepalive", api_key=endpoint.api_key)
    try:
        engine = SyncEngine(store, HashingEmbedder(), batch_size=10)
        before = client_ports(port)
        await engine.apply(DeclaredFlows("agent", "ns/reg", tuple(
            Flow(f"flow_{i:03d}", f"do thing {i}", (f"please do {i}",), ())
            for i in range(300))))
        opened = client_ports(port) - before
        assert store.stats.total >= 30
        assert len(opened) <= 2, f"{len(opened)} connections for {store.stats.total} calls"
    finally:
        await store.client.delete_collection("t_keepalive")  # type: ignore[attr-defined]
        await store.close()
