"""The operator as in production: a `flowreg run` process syncing into a real Qdrant server
(the binary hack/qdrant.sh builds), with faults on real processes: the server frozen, killed
and restarted mid-sync, and a wrong API key. The test reads Qdrant directly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from flowreg.schema import GROUP, PLURAL, VERSION
from tests.support.embedding_server import EmbeddingServer
from tests.support.operator_harness import (
    OperatorProcess,
    big_flows,
    condition,
    create,
    events_for,
    get_registry,
    registry,
    wait_for,
    wait_ready,
)
from tests.support.processes import free_port
from tests.support.qdrant_server import HOW_TO_BUILD, QdrantServer, require_binary, server_binary
from tests.support.stores import points_held

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    server_binary() is None and os.environ.get("CI") != "true",
    reason=HOW_TO_BUILD)]

KEY_ENV = "FLOWREG_TEST_QDRANT_KEY"
CLIENT_TIMEOUT = 5.0
N = 2000


@pytest.fixture
def qdrant() -> Iterator[QdrantServer]:
    binary = require_binary()
    server = QdrantServer(binary).start()
    yield server
    with contextlib.suppress(ProcessLookupError):
        if server.proc is not None:
            os.killpg(server.proc.pid, signal.SIGCONT)
    server.remove()


@pytest.fixture
def embeddings() -> Iterator[EmbeddingServer]:
    # 0.1 s round trips: a 2,000-flow sync (100 batches of 20) is under way long enough to be
    # frozen or killed in the middle.
    with EmbeddingServer(dimension=384, latency=0.1) as server:
        yield server


@pytest.fixture
def ns(kube_api: client.ApiClient) -> Iterator[str]:
    name = f"flowreg-srv-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    with contextlib.suppress(client.ApiException):
        for item in client.CustomObjectsApi(kube_api).list_namespaced_custom_object(
                GROUP, VERSION, name, PLURAL)["items"]:
            client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
                GROUP, VERSION, name, PLURAL, item["metadata"]["name"],
                {"metadata": {"finalizers": None}})
    core.delete_namespace(name)


def start_operator(tmp_path: Path, kubeconfig_path: Path, namespace: str, qdrant: QdrantServer,
                   embeddings: EmbeddingServer | None, key: str) -> OperatorProcess:
    store = {"location": qdrant.endpoint.url, "apiKeyEnv": KEY_ENV, "batchSize": 20,
             "timeout": CLIENT_TIMEOUT}
    if embeddings is not None:
        store["embedder"] = {"kind": "openai", "url": embeddings.base_url,
                             "model": "test-model", "dimension": 384}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"stores": {"default": store}, "progressEverySeconds": 0.3,
                                      "driftCheckSeconds": 1.0}), encoding="utf-8")
    proc = OperatorProcess(kubeconfig_path, config, namespace, tmp_path / "operator.log",
                           liveness_port=free_port(), metrics_port=free_port())
    proc.env[KEY_ENV] = key
    proc.start()
    proc.wait_alive()
    return proc


def points_of(qdrant: QdrantServer, agent: str) -> tuple[int, int]:
    """(points, distinct flow names) the server holds for ``agent``."""
    return points_held(qdrant.endpoint.url, agent, qdrant.api_key)


def under_way(obj: dict) -> bool:
    return ((obj.get("status") or {}).get("progress") or {}).get("done", 0) > 0


def test_a_frozen_server_is_reported_then_the_sync_recovers(
        crd_installed, kube_api, kubeconfig_path, tmp_path, ns, qdrant, embeddings):
    agent = f"agent_{uuid.uuid4().hex[:8]}"
    proc = start_operator(tmp_path, kubeconfig_path, ns, qdrant, embeddings, qdrant.api_key)
    try:
        create(kube_api, registry(ns, "big", agent, big_flows(N)))
        wait_for(kube_api, ns, "big", under_way, timeout=120, what="sync under way")
        assert qdrant.proc is not None
        os.killpg(qdrant.proc.pid, signal.SIGSTOP)
        try:
            obj = wait_ready(kube_api, ns, "big", reason="StoreUnavailable",
                             timeout=CLIENT_TIMEOUT * 6)
            assert condition(obj, "Reconciling")["status"] == "True"
            assert qdrant.endpoint.url in obj["status"]["lastError"]
        finally:
            os.killpg(qdrant.proc.pid, signal.SIGCONT)
        wait_ready(kube_api, ns, "big", timeout=240)
        assert points_of(qdrant, agent) == (N, N)
    finally:
        proc.stop()


def test_a_server_killed_mid_sync_and_restarted_converges_without_duplicates(
        crd_installed, kube_api, kubeconfig_path, tmp_path, ns, qdrant, embeddings):
    agent = f"agent_{uuid.uuid4().hex[:8]}"
    proc = start_operator(tmp_path, kubeconfig_path, ns, qdrant, embeddings, qdrant.api_key)
    try:
        create(kube_api, registry(ns, "big", agent, big_flows(N)))
        wait_for(kube_api, ns, "big", under_way, timeout=120, what="sync under way")
        assert qdrant.proc is not None
        os.killpg(qdrant.proc.pid, signal.SIGKILL)
        qdrant.proc.wait(10)
        wait_ready(kube_api, ns, "big", reason="StoreUnavailable", timeout=CLIENT_TIMEOUT * 6)
        qdrant.start()  # same storage, same ports
        obj = wait_ready(kube_api, ns, "big", timeout=240)
        assert obj["status"]["flowCount"] == N
        assert points_of(qdrant, agent) == (N, N)
    finally:
        proc.stop()


def test_a_wrong_api_key_names_the_store_and_never_the_key(
        crd_installed, kube_api, kubeconfig_path, tmp_path, ns, qdrant):
    agent = f"agent_{uuid.uuid4().hex[:8]}"
    wrong = f"wrong-{uuid.uuid4().hex}"
    proc = start_operator(tmp_path, kubeconfig_path, ns, qdrant, None, wrong)
    try:
        create(kube_api, registry(ns, "locked", agent, big_flows(3)))
        obj = wait_ready(kube_api, ns, "locked", reason="StoreUnavailable", timeout=60)
        ready = condition(obj, "Ready")
        assert qdrant.endpoint.url in obj["status"]["lastError"]
        assert "401" in obj["status"]["lastError"] or "403" in obj["status"]["lastError"]
    finally:
        proc.stop()
    seen = [yaml.safe_dump(get_registry(kube_api, ns, "locked")), str(ready),
            (tmp_path / "operator.log").read_text(),
            *[f"{e.reason} {e.message}" for e in events_for(kube_api, ns, "locked")]]
    assert not any(wrong in text for text in seen)
    assert points_of(qdrant, agent) == (0, 0)
