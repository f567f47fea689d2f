"""The suite's Qdrant server harness against a port taken by another process: a free port is
only free when it is chosen, and a server that finds one of its ports taken runs on without it,
never answering. A first start moves to new ports; a restart (clients hold its ports) says so at
once instead of waiting out its deadline."""

from __future__ import annotations

import socket
import time

import pytest

from tests.support.qdrant_cluster import QdrantCluster
from tests.support.qdrant_server import PortTaken, QdrantServer, server_binary


@pytest.fixture
def taken_port_server() -> tuple[QdrantServer, socket.socket]:
    binary = server_binary()
    if binary is None:
        pytest.skip("no Qdrant server built")
    server = QdrantServer(binary)
    holder = socket.socket()
    holder.bind(("127.0.0.1", server.http_port))  # another process got there first
    holder.listen()
    yield server, holder
    holder.close()
    server.remove()


def test_a_first_start_moves_to_new_ports(taken_port_server):
    server, holder = taken_port_server
    chosen = server.http_port
    server.start()
    assert server.http_port != chosen
    assert holder.getsockname()[1] == chosen


def test_a_restart_on_a_taken_port_fails_at_once(taken_port_server):
    server, _ = taken_port_server
    server.start()
    server.stop()
    with socket.socket() as again:  # the server's port, taken while it was down
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # its closed connections
        again.bind(("127.0.0.1", server.http_port))
        again.listen()
        started = time.monotonic()
        with pytest.raises(PortTaken):
            server.start(timeout=60)
        assert time.monotonic() - started < 30


def test_a_cluster_whose_p2p_port_was_taken_starts_again_on_new_ports():
    binary = server_binary()
    if binary is None:
        pytest.skip("no Qdrant server built")
    cluster = QdrantCluster(binary)
    taken = cluster.p2p_ports[1]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        try:
            cluster.start()
            assert taken not in cluster.p2p_ports
            assert len(cluster.get(0, "/cluster")["peers"]) == 3
        finally:
            cluster.remove()
