"""The cluster a user runs: Qdrant from its official chart, flowreg's chart reaching it by name.

On the session's real node (kube-proxy, CoreDNS): Qdrant's chart installs three replicas in
cluster mode with an API key in a Secret and a local PersistentVolume each, from an image of the
suite's own Qdrant binary, under the restricted Pod Security level (tests/support/qdrant_chart.py).
flowreg's chart points at ``http://qdrant.qdrant.svc:6333`` with that API key (copied from
Qdrant's Secret) and the recommended cluster settings (docs/operations.md). Then: a FlowRegistry
of 2,000 flows becomes Ready; a Qdrant pod deleted mid-sync comes back and the registry is Ready
again; a ``helm upgrade`` that rolls the operator's pod mid-sync. After each, every replica of
every shard holds the same points, and the registry's are exactly its flows (and its digest).
One Qdrant install serves the module.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from tests.support.controlplane import scaled
from tests.support.images import Image, build_node_image
from tests.support.node import NodeCluster
from tests.support.operator_harness import (
    big_flows,
    create,
    ready_at_generation,
    registry,
    wait_for,
)
from tests.support.qdrant_chart import (
    NAMESPACE as QDRANT_NAMESPACE,
)
from tests.support.qdrant_chart import (
    SECRET,
    SECRET_KEY,
    SERVICE_URL,
    QdrantRelease,
    chart_path,
)
from tests.support.qdrant_server import server_binary
from tests.support.skips import loud_skip
from tests.support.stores import points_held
from tests.support.timings import record_timing

REPO = Path(__file__).resolve().parents[2]
RELEASE = NAMESPACE = "flowreg"
AGENTS = "agents"
COLLECTION = "flowreg_flows"
N = 2000
CLUSTER = {"shards": 3, "replicationFactor": 2, "writeConsistencyFactor": 1,
           "readConsistency": "majority", "writeOrdering": "medium"}
"""The recommended settings on a three-peer cluster (docs/operations.md, "Qdrant cluster")."""
SYNCED: list[str] = []
"""Agents whose registries this module synced: their points (and digests) are the collection."""


@pytest.fixture(scope="module")
def qdrant(node: NodeCluster) -> Iterator[QdrantRelease]:
    chart, binary = chart_path(), server_binary()
    missing = ("no Qdrant server binary (hack/qdrant.sh)" if binary is None
               else "no Qdrant chart archive ($FLOWREG_QDRANT_CHART)" if chart is None else None)
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Qdrant from its chart: {missing}")
        loud_skip(f"Qdrant from its chart: {missing}")
    assert chart is not None
    image = build_node_image("qdrant")
    release = QdrantRelease.install(node, image, chart)
    record_timing("Qdrant chart: image built or reused", image.build_seconds)
    for part, seconds in release.timings.items():
        record_timing(f"Qdrant chart: {part}", seconds)
    yield release
    release.uninstall()


@pytest.fixture(scope="module")
def kube(node: NodeCluster) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(node.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="module")
def flowreg(node: NodeCluster, qdrant: QdrantRelease, operator_image: Image) -> Iterator[str]:
    """flowreg's chart installed against Qdrant's Service; yields the values file."""
    for namespace in (NAMESPACE, AGENTS):
        node.kubectl("create", "namespace", namespace)
        node.kubectl("label", "namespace", namespace,
                     "pod-security.kubernetes.io/enforce=restricted")
    # The API key from Qdrant's Secret, into a Secret of flowreg's namespace.
    key = node.kubectl("-n", QDRANT_NAMESPACE, "get", "secret", SECRET, "-o",
                       f"jsonpath={{.data.{SECRET_KEY}}}").stdout
    node.apply([{"apiVersion": "v1", "kind": "Secret",
                 "metadata": {"name": "qdrant-api-key", "namespace": NAMESPACE},
                 "data": {"api-key": key}}])
    repository, tag = operator_image.ref.rsplit(":", 1)
    values = node.work_dir / "flowreg-values.yaml"
    values.write_text(json.dumps({
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "stores": {"default": {
            "location": SERVICE_URL,
            "apiKey": {"existingSecret": "qdrant-api-key", "key": "api-key"},
            "batchSize": 10, "cluster": CLUSTER}},
        "driftCheckSeconds": 2}))
    node.helm("install", RELEASE, str(REPO / "helm" / "flowreg"), "-n", NAMESPACE,
              "-f", str(values))
    rollout(node)
    yield str(values)
    node.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait")


def rollout(node: NodeCluster) -> None:
    waited = node.kubectl("-n", NAMESPACE, "rollout", "status", f"deployment/{RELEASE}",
                          f"--timeout={scaled(120):.0f}s", check=False, timeout=scaled(130))
    assert waited.returncode == 0, waited.stderr + node.container_logs()


def operator_pod(node: NodeCluster) -> str:
    pods = json.loads(node.kubectl("-n", NAMESPACE, "get", "pods", "-l",
                                   f"app.kubernetes.io/instance={RELEASE}", "-o",
                                   "json").stdout)["items"]
    return next(p["metadata"]["name"] for p in pods
                if p["metadata"].get("deletionTimestamp") is None)


def start_sync(kube: client.ApiClient, name: str) -> str:
    agent = f"agent_{uuid.uuid4().hex[:8]}"
    create(kube, registry(AGENTS, name, agent, big_flows(N)))
    return agent


def wait_mid_sync(qdrant: QdrantRelease, agent: str) -> int:
    """Until the sync of ``agent`` has written some of its flows, not all; how many."""
    deadline = time.monotonic() + scaled(120)
    while time.monotonic() < deadline:
        held = qdrant.count(COLLECTION, agent)
        if 0 < held < N:
            return held
        assert held < N, "the sync finished before the test could act in its middle"
        time.sleep(0.05)
    raise TimeoutError(f"the sync of {agent} did not start")


def wait_ready(node: NodeCluster, kube: client.ApiClient, name: str,
               timeout: float) -> dict[str, Any]:
    try:
        return wait_for(kube, AGENTS, name, ready_at_generation, timeout=timeout,
                        what="Ready")
    except TimeoutError as exc:
        logs = node.kubectl("-n", NAMESPACE, "logs", "-l",
                            f"app.kubernetes.io/instance={RELEASE}", "--tail=40", check=False)
        raise AssertionError(f"{exc}\n{logs.stdout}{logs.stderr}") from None


def assert_exact(qdrant: QdrantRelease, agent: str) -> None:
    """The registry's flows once each through the Service; every replica of every shard the
    same; the shards' points together exactly the module's registries and their digests."""
    qdrant.wait(lambda: qdrant.replicas_active(COLLECTION), "every replica Active", 240)
    ip = next(iter(qdrant.pod_ips().values()))
    assert points_held(f"http://{ip}:6333", agent, qdrant.api_key) == (N, N)
    per_shard: dict[int, set[int]] = {}
    counts = qdrant.local_counts(COLLECTION)
    for shards in counts.values():
        for shard, count in shards.items():
            per_shard.setdefault(shard, set()).add(count)
    assert len(per_shard) == CLUSTER["shards"], counts
    assert all(len(c) == 1 for c in per_shard.values()), counts  # replicas agree
    replicas = sum(len(shards) for shards in counts.values())
    assert replicas == CLUSTER["shards"] * CLUSTER["replicationFactor"], counts
    assert sum(next(iter(c)) for c in per_shard.values()) == (N + 1) * len(SYNCED), counts


def test_a_registry_of_2000_flows_becomes_ready_through_the_service_name(
        node: NodeCluster, qdrant: QdrantRelease, flowreg: str, kube: client.ApiClient):
    started = time.monotonic()
    agent = start_sync(kube, "first")
    obj = wait_ready(node, kube, "first", timeout=300)
    print(f"\n{N} flows Ready {time.monotonic() - started:.1f} s after create")
    assert obj["status"]["flowCount"] == N and obj["status"]["lastSync"]["created"] == N
    SYNCED.append(agent)
    assert_exact(qdrant, agent)
    # The operator reached Qdrant by the Service's name: the store it logged is the URL.
    logs = node.kubectl("-n", NAMESPACE, "logs", operator_pod(node)).stdout
    assert SERVICE_URL in logs


def test_a_qdrant_pod_deleted_mid_sync_comes_back_and_the_registry_is_ready_and_exact(
        node: NodeCluster, qdrant: QdrantRelease, flowreg: str, kube: client.ApiClient):
    def uid() -> str:
        return node.kubectl("-n", QDRANT_NAMESPACE, "get", "pod", "qdrant-1", "-o",
                            "jsonpath={.metadata.uid}", check=False).stdout

    agent = start_sync(kube, "replica-lost")
    before = uid()
    held = wait_mid_sync(qdrant, agent)
    started = time.monotonic()
    node.kubectl("-n", QDRANT_NAMESPACE, "delete", "pod", "qdrant-1", "--wait=false")
    qdrant.wait(lambda: uid() not in ("", before), "qdrant-1 recreated", 120)
    qdrant.wait_ready()
    back = time.monotonic() - started
    obj = wait_ready(node, kube, "replica-lost", timeout=300)
    print(f"\nqdrant-1 deleted with {held}/{N} flows written; Ready again {back:.1f} s "
          f"later; registry Ready {time.monotonic() - started:.1f} s after the delete")
    assert obj["status"]["flowCount"] == N
    SYNCED.append(agent)
    qdrant.wait_consensus()
    assert_exact(qdrant, agent)


def test_helm_upgrade_rolling_the_operator_mid_sync_loses_and_duplicates_nothing(
        node: NodeCluster, qdrant: QdrantRelease, flowreg: str, kube: client.ApiClient):
    agent = start_sync(kube, "upgraded")
    pod = operator_pod(node)
    held = wait_mid_sync(qdrant, agent)
    node.helm("upgrade", RELEASE, str(REPO / "helm" / "flowreg"), "-n", NAMESPACE,
              "-f", flowreg, f"--set-string=podAnnotations.rolled={uuid.uuid4().hex[:8]}")
    rollout(node)
    assert operator_pod(node) != pod  # the upgrade rolled the pod
    obj = wait_ready(node, kube, "upgraded", timeout=300)
    print(f"\nhelm upgrade with {held}/{N} flows written; registry Ready: "
          f"{obj['status']['lastSync']}")
    assert obj["status"]["flowCount"] == N
    SYNCED.append(agent)
    assert_exact(qdrant, agent)
