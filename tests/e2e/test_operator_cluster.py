"""The operator (a `flowreg run` process) against a three-peer Qdrant cluster, replication
factor 2: a peer SIGKILLed in the middle of a sync, and the FlowRegistry is Ready again with
exactly its flows, on every replica."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.test_operator_server import embeddings, ns  # noqa: F401 (fixtures)
from tests.support.embedding_server import EmbeddingServer
from tests.support.operator_harness import (
    OperatorProcess,
    big_flows,
    create,
    registry,
    wait_for,
    wait_ready,
)
from tests.support.processes import free_port
from tests.support.qdrant_cluster import QdrantCluster
from tests.support.qdrant_server import server_binary
from tests.support.stores import points_held

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.skipif(
    server_binary() is None, reason="no Qdrant server binary: run hack/qdrant.sh")]

KEY_ENV = "FLOWREG_TEST_QDRANT_KEY"
COLLECTION = "flowreg_flows"
N = 2000


@pytest.fixture
def cluster() -> Iterator[QdrantCluster]:
    binary = server_binary()
    assert binary is not None
    running = QdrantCluster(binary).start()
    yield running
    running.remove()


def under_way(obj: dict) -> bool:
    return ((obj.get("status") or {}).get("progress") or {}).get("done", 0) > 0


def test_a_peer_killed_mid_sync_leaves_the_registry_ready_and_exact(
        crd_installed, kube_api, kubeconfig_path, tmp_path: Path, ns: str,  # noqa: F811
        cluster: QdrantCluster, embeddings: EmbeddingServer):  # noqa: F811
    store = {"location": cluster.endpoint.url, "apiKeyEnv": KEY_ENV, "batchSize": 20,
             "timeout": 5.0, "cluster": {"shards": 3, "replicationFactor": 2},
             "embedder": {"kind": "openai", "url": embeddings.base_url, "model": "test-model",
                          "dimension": 384}}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"stores": {"default": store}, "progressEverySeconds": 0.3,
                                      "driftCheckSeconds": 1.0}), encoding="utf-8")
    proc = OperatorProcess(kubeconfig_path, config, ns, tmp_path / "operator.log",
                           liveness_port=free_port(), metrics_port=free_port())
    proc.env[KEY_ENV] = cluster.endpoint.api_key or ""
    proc.start()
    proc.wait_alive()
    agent = f"agent_{uuid.uuid4().hex[:8]}"
    try:
        create(kube_api, registry(ns, "big", agent, big_flows(N)))
        wait_for(kube_api, ns, "big", under_way, timeout=120 * cluster.slowdown,
                 what="sync under way")
        cluster.kill(2)
        cluster.restart(2)
        obj = wait_ready(kube_api, ns, "big", timeout=240 * cluster.slowdown)
        assert obj["status"]["flowCount"] == N
        cluster.wait_active(COLLECTION)
        assert points_held(cluster.endpoint.url, agent, cluster.endpoint.api_key) == (N, N)
        per_shard: dict[int, set[int]] = {}
        for shards in cluster.local_counts(COLLECTION).values():
            for shard, count in shards.items():
                per_shard.setdefault(shard, set()).add(count)
        assert all(len(c) == 1 for c in per_shard.values()), per_shard
        assert sum(next(iter(c)) for c in per_shard.values()) == N + 1  # and the digest
    finally:
        proc.stop()
