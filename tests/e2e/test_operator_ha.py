"""Two live replicas of `flowreg run --peering`, as the chart's HA values run them: exactly one
reconciles, the other says in its metrics that it stands by, and when the active one is
SIGKILLed mid-sync the standby takes over and converges with no duplicates."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from flowreg.schema import GROUP, PLURAL, VERSION
from tests.support.controlplane import scaled
from tests.support.embedding_server import EmbeddingServer
from tests.support.operator_harness import (
    OperatorProcess,
    big_flows,
    create,
    metric_value,
    registry,
    wait_for,
    wait_ready,
)
from tests.support.processes import free_port
from tests.support.qdrant_server import HOW_TO_BUILD, QdrantServer, require_binary, server_binary
from tests.support.stores import points_held

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.skipif(
    server_binary() is None and os.environ.get("CI") != "true",
    reason=HOW_TO_BUILD)]

REPO = Path(__file__).resolve().parents[2]
LIFETIME = 10  # seconds without a heartbeat before the standby takes over
N = 1000
TIMINGS: dict[str, float] = {}


@pytest.fixture
def ha_namespace(kube_api, apply_manifest, control_plane, tmp_path) -> Iterator[str]:
    """A namespace with the chart's KopfPeering CRD (crds/) and peering object (helm template)."""
    name = f"flowreg-ha-{uuid.uuid4().hex[:8]}"
    apply_manifest(REPO / "helm" / "flowreg" / "crds" / "kopf-peerings.yaml")
    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    rendered = subprocess.run(
        [str(control_plane.helm), "template", "flowreg", str(REPO / "helm" / "flowreg"),
         "--namespace", name, "--set", "ha.enabled=true", "--set", "replicas=2",
         "--set", "watch.allNamespaces=false", "--set", f"watch.namespaces={{{name}}}",
         "--show-only", "templates/peering.yaml"],
        capture_output=True, text=True, check=True).stdout
    peering = tmp_path / "peering.yaml"
    peering.write_text(rendered, encoding="utf-8")
    apply_manifest(peering)
    yield name
    with contextlib.suppress(client.ApiException):
        client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
            GROUP, VERSION, name, PLURAL, "big", {"metadata": {"finalizers": None}})
    core.delete_namespace(name)


def metric(proc: OperatorProcess, name: str) -> float:
    """The value of a metric (summed over labels); 0 if absent."""
    return metric_value(proc.scrape(), name) or 0.0


def test_one_replica_reconciles_and_the_standby_takes_over_when_it_dies(
        crd_installed, kube_api, kubeconfig_path, tmp_path, ha_namespace):
    agent = f"agent_{uuid.uuid4().hex[:8]}"
    binary = require_binary()
    qdrant = QdrantServer(binary).start()
    embeddings = EmbeddingServer(dimension=384, latency=0.1).__enter__()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "stores": {"default": {"location": qdrant.endpoint.url, "apiKeyEnv": "QDRANT_KEY",
                               "batchSize": 20,
                               "embedder": {"kind": "openai", "url": embeddings.base_url,
                                            "model": "m", "dimension": 384}}},
        "progressEverySeconds": 0.3, "driftCheckSeconds": 1.0}), encoding="utf-8")
    replicas = []
    for i in range(2):
        proc = OperatorProcess(kubeconfig_path, config, ha_namespace, tmp_path / f"op{i}.log",
                               liveness_port=free_port(), metrics_port=free_port())
        proc.args += ["--peering", "flowreg", "--peering-lifetime", str(LIFETIME)]
        proc.env["QDRANT_KEY"] = qdrant.api_key
        replicas.append(proc)
    active, standby = replicas
    try:
        active.start()
        active.wait_alive()
        time.sleep(1.0)  # the first replica has registered in the peering object
        standby.start()
        standby.wait_alive()
        deadline = time.monotonic() + scaled(30)
        while metric(standby, "flowreg_standby") != 1.0:
            assert time.monotonic() < deadline, "the second replica never stood by"
            time.sleep(0.2)
        assert metric(active, "flowreg_standby") == 0.0

        create(kube_api, registry(ha_namespace, "big", agent, big_flows(N)))
        wait_for(kube_api, ha_namespace, "big",
                 lambda o: ((o.get("status") or {}).get("progress") or {}).get("done", 0) > 0,
                 timeout=120, what="sync under way")
        # the sync under way is the active replica's: the standby has not touched anything
        assert metric(standby, "flowreg_store_operations_total") == 0
        assert metric(standby, "flowreg_syncs_total") == 0
        assert metric(standby, "flowreg_standby") == 1.0

        active.kill()
        killed = time.monotonic()
        while metric(standby, "flowreg_standby") != 0.0:
            assert time.monotonic() - killed < scaled(LIFETIME * 6), "no takeover"
            time.sleep(0.2)
        TIMINGS["takeover"] = time.monotonic() - killed
        obj = wait_ready(kube_api, ha_namespace, "big", timeout=240)
        TIMINGS["ready after kill"] = time.monotonic() - killed
        assert obj["status"]["flowCount"] == N

        assert points_held(qdrant.endpoint.url, agent, qdrant.api_key) == (N, N)
        print(f"\nHA takeover: standby active {TIMINGS['takeover']:.1f} s after SIGKILL "
              f"(peering lifetime {LIFETIME} s), registry Ready after "
              f"{TIMINGS['ready after kill']:.1f} s")
    finally:
        for proc in replicas:
            proc.stop()
        embeddings.__exit__(None, None, None)
        qdrant.remove()
