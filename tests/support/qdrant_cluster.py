"""A Qdrant cluster for the tests: three peers of the binary hack/qdrant.sh builds, on loopback.

Each peer is a ``QdrantServer`` (its own storage, free HTTP, gRPC and p2p ports, the cluster's
one API key, dying with the test process) started in cluster mode: the first with ``--uri``
(its p2p address), the others with ``--bootstrap`` (the first's) and ``--uri``. The cluster is
ready when every peer answers ``/readyz`` and reports every peer in consensus under one leader;
a collection is ready when every replica of every shard is ``Active`` on every peer.

``session_cluster()`` is the session's cluster (the store tests run on it); fault tests start
clusters of their own, kill, freeze and restart peers (``kill``, ``freeze``, ``thaw``,
``restart``).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.processes import free_port
from tests.support.qdrant_server import (
    PORT_TRIES,
    STARTUP_BUDGET,
    Endpoint,
    PortTaken,
    QdrantServer,
    server_binary,
)

PEERS = 3
CONSENSUS_BUDGET = 120.0
"""Seconds for every peer to join and agree (a guard against a hang, not an expectation)."""
IDLE_STARTUP = 3.0
"""Seconds the cluster takes to start and agree on an idle 2-core machine."""


class QdrantCluster:
    """``peers`` Qdrant processes forming one cluster on 127.0.0.1."""

    def __init__(self, binary: Path, peers: int = PEERS, *,
                 env: dict[str, str] | None = None) -> None:
        self.binary, self.peers, self.env = binary, peers, dict(env or {})
        self.nodes: list[QdrantServer] = []
        self.p2p_ports: list[int] = []
        self.startup_seconds = IDLE_STARTUP
        self._make_nodes()

    def _make_nodes(self) -> None:
        """New peers, with new storage and new free ports."""
        self.nodes, self.p2p_ports = [], []
        for _ in range(self.peers):
            node = QdrantServer(self.binary)
            port = free_port()
            node.extra_env = {"QDRANT__CLUSTER__ENABLED": "true",
                              "QDRANT__CLUSTER__P2P__PORT": str(port), **self.env}
            node.args = ["--uri", f"http://127.0.0.1:{port}"]
            self.nodes.append(node)
            self.p2p_ports.append(port)
        key = self.nodes[0].api_key
        for node in self.nodes[1:]:
            node.api_key = key
            node.args += ["--bootstrap", f"http://127.0.0.1:{self.p2p_ports[0]}"]

    @property
    def endpoint(self) -> Endpoint:
        """The first peer's endpoint (any peer serves the whole cluster)."""
        return self.nodes[0].endpoint

    @property
    def slowdown(self) -> float:
        """How much slower than idle this machine started the cluster (at least 1): the
        factor by which the tests stretch their deadlines."""
        return max(1.0, self.startup_seconds / IDLE_STARTUP)

    def start(self, timeout: float = CONSENSUS_BUDGET) -> QdrantCluster:
        """Start the peers one at a time (each joins through the first) and wait for
        consensus. A peer's port (its p2p one included) taken by another process meanwhile
        starts the whole cluster again on new ports and new storage (``PORT_TRIES`` in all): a
        peer that half-joined must not stay in the consensus."""
        started = time.monotonic()
        deadline = started + timeout
        attempt = 1
        while True:
            try:
                for node in self.nodes:
                    node.start(max(1.0, min(STARTUP_BUDGET, deadline - time.monotonic())))
            except PortTaken:
                if attempt == PORT_TRIES:
                    raise
                self.remove()
                self._make_nodes()
                attempt += 1
                continue
            break
        self.wait_consensus(max(1.0, deadline - time.monotonic()))
        self.startup_seconds = time.monotonic() - started
        return self

    def get(self, index: int, path: str, timeout: float = 5.0) -> dict[str, Any]:
        """GET ``path`` from peer ``index`` (its REST port); the ``result`` of the answer."""
        node = self.nodes[index]
        request = urllib.request.Request(f"http://127.0.0.1:{node.http_port}{path}",
                                         headers={"api-key": node.api_key})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())["result"]

    def _live(self) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if n.proc is not None]

    def wait_consensus(self, timeout: float = CONSENSUS_BUDGET) -> None:
        """Until every running peer lists all peers and agrees on one leader."""
        self._wait(timeout, self._in_consensus, "every peer in consensus")

    def _in_consensus(self) -> bool:
        leaders = set()
        for i in self._live():
            status = self.get(i, "/cluster")
            if status.get("status") != "enabled" or len(status["peers"]) != len(self.nodes):
                return False
            raft = status.get("raft_info") or {}
            thread = (status.get("consensus_thread_status") or {}).get(
                "consensus_thread_status")
            if not raft.get("leader") or thread != "working":
                return False
            leaders.add(raft["leader"])
        return len(leaders) == 1

    def wait_active(self, collection: str, timeout: float = CONSENSUS_BUDGET) -> None:
        """Until every replica of every shard of ``collection`` is Active on every peer and no
        shard transfer runs."""
        self._wait(timeout, lambda: self.replicas_active(collection),
                   f"every replica of {collection} Active")

    def replicas_active(self, collection: str) -> bool:
        for i in self._live():
            info = self.get(i, f"/collections/{collection}/cluster")
            states = [s["state"] for s in info["local_shards"] + info["remote_shards"]]
            if info.get("shard_transfers") or any(s != "Active" for s in states):
                return False
        return True

    def local_counts(self, collection: str) -> dict[int, dict[int, int]]:
        """Per peer, the points each shard replica it holds counts locally."""
        counts: dict[int, dict[int, int]] = {}
        for i in self._live():
            info = self.get(i, f"/collections/{collection}/cluster")
            counts[i] = {s["shard_id"]: s["points_count"] for s in info["local_shards"]}
        return counts

    def _wait(self, timeout: float, ready: Any, what: str) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if ready():
                    return
            except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
                last = exc
            time.sleep(0.1)
        logs = "\n".join(f"peer {i}: {n.log()[-800:]}" for i, n in enumerate(self.nodes))
        raise TimeoutError(f"not {what} within {timeout:.0f} s ({last!r}):\n{logs}")

    def kill(self, index: int) -> None:
        """SIGKILL peer ``index`` (its storage stays for ``restart``)."""
        node = self.nodes[index]
        assert node.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.proc.pid, signal.SIGKILL)
        node.proc.wait(30)
        node.proc = None

    def freeze(self, index: int) -> None:
        """SIGSTOP peer ``index``: to the others and to clients, a partitioned node."""
        proc = self.nodes[index].proc
        assert proc is not None
        os.killpg(proc.pid, signal.SIGSTOP)

    def thaw(self, index: int) -> None:
        proc = self.nodes[index].proc
        assert proc is not None
        os.killpg(proc.pid, signal.SIGCONT)

    def restart(self, index: int, timeout: float = CONSENSUS_BUDGET) -> None:
        """Start peer ``index`` again on its storage and ports; wait for consensus."""
        self.nodes[index].start(STARTUP_BUDGET)
        self.wait_consensus(timeout)

    def remove(self) -> None:
        for node in self.nodes:
            if node.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.proc.pid, signal.SIGCONT)
            node.remove()


_session: QdrantCluster | None = None


def cluster_available() -> bool:
    return server_binary() is not None


def session_cluster() -> QdrantCluster:
    """The session's three-peer cluster, started on first use."""
    global _session
    if _session is None:
        binary = server_binary()
        if binary is None:
            raise RuntimeError("no Qdrant server binary: run hack/qdrant.sh")
        _session = QdrantCluster(binary).start()
        atexit.register(_session.remove)
    return _session


def stop_session_cluster() -> None:
    global _session
    if _session is not None:
        _session.remove()
        _session = None
