"""What a user does: ``helm install`` the chart on a real node, apply the examples, wait.

The node is real (tests/support/node.py, the session's ``node`` fixture): the chart's Deployment
becomes a pod that the scheduler places and the kubelet runs in containerd, from the image built
by the Dockerfile, under the restricted Pod Security profile, its probes answered by the
operator, which reaches the apiserver through the ``kubernetes`` Service (kube-proxy). The store
is the Qdrant server the suite builds (an embedded store on the pod's emptyDir where no server
is built); tests/e2e/test_qdrant_chart.py runs Qdrant from its own chart instead.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.controlplane import scaled
from tests.support.images import Image
from tests.support.node import SERVICE_RANGE, NodeCluster, run
from tests.support.operator_harness import metric_value
from tests.support.processes import command_lines
from tests.support.qdrant_server import QdrantServer, server_binary
from tests.support.stores import points_held

REPO = Path(__file__).resolve().parents[2]
RELEASE, NAMESPACE = "flowreg", "flowreg-system"
POD_READY_TARGET = 60.0
"""Seconds from `helm install` to a Ready operator pod on a warm cache (the issue's target)."""


@pytest.fixture
def store(node: NodeCluster) -> Iterator[tuple[str, str | None, int | None]]:
    """(location, API key, gRPC port) the pod uses: a Qdrant server on the bridge (over gRPC,
    as the chart's default), else the emptyDir."""
    binary = server_binary()
    if binary is None:
        yield "/tmp/flowreg-store", None, None
        return
    assert node.bridge is not None
    server = QdrantServer(binary, host=node.bridge.gateway).start()
    try:
        yield server.endpoint.url, server.api_key, server.endpoint.grpc_port
    finally:
        server.stop()
        server.remove()


def restricted(node: NodeCluster, namespace: str) -> None:
    """``namespace`` (created unless it is ``default``) under the restricted Pod Security level."""
    if namespace != "default":
        node.kubectl("create", "namespace", namespace)
    node.kubectl("label", "--overwrite", "namespace", namespace,
                 "pod-security.kubernetes.io/enforce=restricted")


def install(node: NodeCluster, image: Image, store: tuple[str, str | None, int | None],
            release: str, namespace: str, *values: str) -> float:
    """``helm install`` the chart with its defaults plus the image, the store (its API key as a
    Secret) and ``values``; wait until its pods are Ready; return the seconds that took."""
    location, api_key, grpc_port = store
    repository, tag = image.ref.rsplit(":", 1)
    restricted(node, namespace)
    settings = [f"--set=image.repository={repository}", f"--set=image.tag={tag}",
                f"--set=stores.default.location={location}",
                f"--set=stores.default.grpcPort={grpc_port or 'null'}", *values]
    if api_key:
        node.kubectl("-n", namespace, "create", "secret", "generic", "qdrant-api-key",
                     f"--from-literal=api-key={api_key}")
        settings += ["--set=stores.default.apiKey.existingSecret=qdrant-api-key",
                     "--set=stores.default.apiKey.key=api-key"]
    started = time.monotonic()
    node.helm("install", release, str(REPO / "helm" / "flowreg"), "-n", namespace, *settings)
    waited = node.kubectl("-n", namespace, "wait", "--for=condition=Ready", "pod", "-l",
                          f"app.kubernetes.io/instance={release}",
                          f"--timeout={scaled(90):.0f}s", check=False, timeout=scaled(100))
    assert waited.returncode == 0, (
        waited.stderr + node.kubectl("-n", namespace, "describe", "pods").stdout
        + node.container_logs() + node.log("kubelet"))
    return time.monotonic() - started


def operator_pids() -> list[int]:
    """Host PIDs of `flowreg run` processes (containers share the host's PID view)."""
    return [pid for pid, argv in command_lines()
            if any(a.endswith(b"/flowreg") for a in argv[:2]) and b"run" in argv]


def test_helm_install_runs_the_operator_and_syncs_the_examples(
        node: NodeCluster, operator_image: Image, store: tuple[str, str | None, int | None]):
    location, api_key, _ = store
    restricted(node, "default")
    ready_after = install(node, operator_image, store, RELEASE, NAMESPACE)
    print(f"\noperator pod Ready {ready_after:.1f} s after helm install "
          f"(target {POD_READY_TARGET:.0f} s)")
    selector = f"app.kubernetes.io/instance={RELEASE}"

    pod = json.loads(node.kubectl("-n", NAMESPACE, "get", "pods", "-l", selector,
                                  "-o", "json").stdout)["items"][0]
    assert pod["spec"]["nodeName"] == "flowreg-node"
    assert pod["status"]["containerStatuses"][0]["image"].endswith(operator_image.ref
                                                                   .split("/", 1)[1])
    # The pod has no route off the machine: its subnet and the Service range only.
    pids = operator_pids()
    assert pids, "the operator process is not visible on the host"
    routes = run("nsenter", f"--net=/proc/{pids[0]}/ns/net", "ip", "-4", "route").stdout
    assert "default" not in routes and SERVICE_RANGE in routes, routes

    node.kubectl("apply", "-f", str(REPO / "examples"))
    waited = node.kubectl("wait", "--for=condition=Ready", "flowregistry/finance-bot",
                          f"--timeout={scaled(120):.0f}s", check=False, timeout=scaled(140))
    logs = node.kubectl("-n", NAMESPACE, "logs", "-l", selector, "--tail=50", check=False)
    assert waited.returncode == 0, (waited.stderr + logs.stdout + logs.stderr
                                    + node.container_logs())
    status = json.loads(node.kubectl("get", "flowregistry", "finance-bot", "-o",
                                     "json").stdout)["status"]
    assert status["lastSync"]["created"] == 6, status
    if api_key:  # the flows are in the server, as the pod wrote them
        held, _ = points_held(location, "finance_bot_v1", api_key)
        assert held == 6

    # helm uninstall leaves no operator pod and no operator process.
    node.kubectl("delete", "-f", str(REPO / "examples"), f"--timeout={scaled(60):.0f}s")
    node.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", f"--timeout={scaled(60):.0f}s")
    node.wait_pods_gone(NAMESPACE)
    deadline = time.monotonic() + scaled(30)
    while operator_pids():
        assert time.monotonic() < deadline, f"operator processes left: {operator_pids()}"
        time.sleep(0.5)


def metric(pod_ip: str, name: str) -> float | None:
    """A metric scraped straight from the pod (the host reaches pod IPs over the bridge)."""
    try:
        with urllib.request.urlopen(f"http://{pod_ip}:8080/metrics", timeout=5) as response:
            return metric_value(response.read().decode(), name)
    except OSError:
        return None


def test_helm_install_with_ha_runs_one_active_replica_and_a_standby_that_takes_over(
        node: NodeCluster, operator_image: Image, store: tuple[str, str | None, int | None]):
    """The chart's HA values as pods: the peering CRDs come from the chart's crds/, the
    replicas elect one active operator, and deleting it hands the work to the other."""
    namespace, lifetime = "flowreg-ha", 10
    install(node, operator_image, store, "flowreg-ha", namespace, "--set=replicas=2",
            "--set=ha.enabled=true", f"--set=ha.peeringLifetime={lifetime}")
    selector = "app.kubernetes.io/instance=flowreg-ha"

    def standby_of_pods() -> dict[str, float | None]:
        pods = json.loads(node.kubectl("-n", namespace, "get", "pods", "-l", selector,
                                       "-o", "json").stdout)["items"]
        return {p["metadata"]["name"]: metric(p["status"].get("podIP", ""), "flowreg_standby")
                for p in pods if p["metadata"].get("deletionTimestamp") is None}

    deadline = time.monotonic() + scaled(3 * lifetime)
    while sorted(v for v in standby_of_pods().values() if v is not None) != [0.0, 1.0]:
        assert time.monotonic() < deadline, f"no single active replica: {standby_of_pods()}"
        time.sleep(0.5)
    active = next(name for name, v in standby_of_pods().items() if v == 0.0)
    peering = json.loads(node.kubectl("get", "clusterkopfpeering", "flowreg",
                                      "-o", "json").stdout)
    assert set(standby_of_pods()) <= set(peering.get("status") or {}), peering

    manifest = {"apiVersion": "flowreg.dev/v1alpha1", "kind": "FlowRegistry",
                "metadata": {"name": "ha-check", "namespace": "default"},
                "spec": {"agentId": "ha_check", "flows": [
                    {"name": "greet", "description": "Say hello to the user"}]}}
    node.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    node.kubectl("wait", "--for=condition=Ready", "flowregistry/ha-check",
                 f"--timeout={scaled(60):.0f}s", timeout=scaled(70))

    # The active replica goes; the standby takes over and syncs the next change.
    node.kubectl("-n", namespace, "delete", "pod", active, "--grace-period=0", "--force")
    manifest["spec"]["flows"].append({"name": "bye", "description": "Say goodbye"})
    node.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    waited = node.kubectl("wait", "--for=jsonpath={.status.observedGeneration}=2",
                          "flowregistry/ha-check", f"--timeout={scaled(6 * lifetime):.0f}s",
                          check=False, timeout=scaled(6 * lifetime + 10))
    assert waited.returncode == 0, waited.stderr + node.container_logs()
    status = json.loads(node.kubectl("get", "flowregistry", "ha-check", "-o",
                                     "json").stdout)["status"]
    assert status["lastSync"]["created"] == 1 and status["flowCount"] == 2, status

    node.kubectl("delete", "flowregistry", "ha-check", "-n", "default",
                 f"--timeout={scaled(60):.0f}s")
    node.helm("uninstall", "flowreg-ha", "-n", namespace, "--wait")
    node.wait_pods_gone(namespace)
