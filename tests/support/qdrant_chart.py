"""Qdrant installed on the test node from its official Helm chart, as a user installs it.

``QdrantRelease.install(node, image)`` runs the suite's helm on the chart archive beside the
repository (``../shared/charts/qdrant-helm-<version>.tgz``, or ``$FLOWREG_QDRANT_CHART``) with
``VALUES``: three replicas in cluster mode (the chart's default config), an API key the chart
generates and keeps in the Secret ``qdrant-apikey``, a volume per pod from static local
PersistentVolumes, the image hack/node-images.sh builds from the suite's binary (never pulled),
and the restricted Pod Security level, which the namespace enforces. What the chart's defaults
would break under restricted: its ``ensure-dir-ownership`` init container runs ``chown`` as
root (off: the pod's ``fsGroup`` makes the volume writable instead), and its containers keep
their capabilities and no seccomp profile (dropped; RuntimeDefault).

The release is ready when the StatefulSet's pods are Ready and every peer sees all peers in
consensus under one leader; ``local_counts`` and ``replicas_active`` read each pod directly
(the host reaches pod IPs over the node's bridge).
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.controlplane import REPO, scaled
from tests.support.images import Image
from tests.support.node import STORAGE_CLASS, NodeCluster

CHART_VERSION = "1.19.0"
RELEASE = NAMESPACE = "qdrant"
REPLICAS = 3
SECRET, SECRET_KEY = "qdrant-apikey", "api-key"
"""The Secret the chart makes with ``apiKey: true``, and its key."""
SERVICE_URL = f"http://{RELEASE}.{NAMESPACE}.svc:6333"
"""How pods reach Qdrant: the chart's ClusterIP Service, by name."""
RESTRICTED = {"seccompProfile": {"type": "RuntimeDefault"}, "capabilities": {"drop": ["ALL"]}}


def chart_path() -> Path | None:
    """The official chart's archive, or None where it is absent."""
    named = os.environ.get("FLOWREG_QDRANT_CHART")
    path = Path(named) if named else (REPO.parent / "shared" / "charts"
                                      / f"qdrant-helm-{CHART_VERSION}.tgz")
    return path if path.is_file() else None


def values(image: Image, storage_class: str) -> dict[str, Any]:
    """The values ``install`` gives the chart (everything else is the chart's default)."""
    repository, tag = image.ref.rsplit(":", 1)
    return {
        "replicaCount": REPLICAS,
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "apiKey": True,
        "persistence": {"storageClassName": storage_class, "size": "1Gi"},
        "updateVolumeFsOwnership": False,
        "podSecurityContext": {"fsGroup": 3000, "fsGroupChangePolicy": "Always",
                               "runAsNonRoot": True,
                               "seccompProfile": {"type": "RuntimeDefault"}},
        "containerSecurityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                                     "runAsGroup": 2000, "allowPrivilegeEscalation": False,
                                     "privileged": False, "readOnlyRootFilesystem": True,
                                     **RESTRICTED},
    }


@dataclass
class QdrantRelease:
    node: NodeCluster
    chart: Path
    api_key: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def install(cls, node: NodeCluster, image: Image, chart: Path,
                timeout: float = 240) -> QdrantRelease:
        release = cls(node, chart)
        started = time.monotonic()
        release.timings["image-import"] = node.load(image.tar)
        node.local_volumes(REPLICAS, prefix="qdrant")
        node.kubectl("create", "namespace", NAMESPACE)
        node.kubectl("label", "namespace", NAMESPACE,
                     "pod-security.kubernetes.io/enforce=restricted")
        values_file = node.work_dir / "qdrant-values.yaml"
        values_file.write_text(yaml.safe_dump(values(image, STORAGE_CLASS)))
        mark = time.monotonic()
        node.helm("install", RELEASE, str(chart), "-n", NAMESPACE, "-f", str(values_file))
        release.wait_ready(timeout)
        release.timings["ready"] = time.monotonic() - mark
        secret = json.loads(node.kubectl("-n", NAMESPACE, "get", "secret", SECRET,
                                         "-o", "json").stdout)
        release.api_key = base64.b64decode(secret["data"][SECRET_KEY]).decode()
        release.wait_consensus(timeout)
        release.timings["consensus"] = time.monotonic() - mark
        release.timings["total"] = time.monotonic() - started
        return release

    def wait_ready(self, timeout: float = 240) -> None:
        """Until the StatefulSet has rolled out every replica, Ready."""
        waited = self.node.kubectl("-n", NAMESPACE, "rollout", "status", f"statefulset/{RELEASE}",
                                   f"--timeout={scaled(timeout):.0f}s", check=False,
                                   timeout=scaled(timeout) + 10)
        assert waited.returncode == 0, (
            waited.stderr + self.node.kubectl("-n", NAMESPACE, "describe", "pods",
                                              check=False).stdout
            + self.node.kubectl("get", "pv,pvc", "-A", check=False).stdout
            + self.node.container_logs())

    def pod_ips(self) -> dict[str, str]:
        pods = json.loads(self.node.kubectl("-n", NAMESPACE, "get", "pods", "-l",
                                            f"app.kubernetes.io/instance={RELEASE}",
                                            "-o", "json").stdout)["items"]
        return {p["metadata"]["name"]: p["status"].get("podIP", "") for p in pods
                if p["metadata"].get("deletionTimestamp") is None}

    def request(self, ip: str, path: str, body: dict[str, Any] | None = None,
                timeout: float = 5.0) -> Any:
        """``path`` on the pod at ``ip`` (GET, or POST of ``body``); the answer's ``result``."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://{ip}:6333{path}", data=data, headers={
            "api-key": self.api_key, "content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())["result"]

    def in_consensus(self) -> bool:
        leaders = set()
        ips = self.pod_ips()
        if len(ips) != REPLICAS:
            return False
        for ip in ips.values():
            status = self.request(ip, "/cluster")
            raft = status.get("raft_info") or {}
            if len(status.get("peers", {})) != REPLICAS or not raft.get("leader"):
                return False
            leaders.add(raft["leader"])
        return len(leaders) == 1

    def replicas_active(self, collection: str) -> bool:
        """Every replica of every shard of ``collection`` Active on every pod, no transfer."""
        for ip in self.pod_ips().values():
            info = self.request(ip, f"/collections/{collection}/cluster")
            states = [s["state"] for s in info["local_shards"] + info["remote_shards"]]
            if info.get("shard_transfers") or any(s != "Active" for s in states):
                return False
        return True

    def local_counts(self, collection: str) -> dict[str, dict[int, int]]:
        """Per pod, the points each shard replica it holds counts locally."""
        counts = {}
        for name, ip in self.pod_ips().items():
            info = self.request(ip, f"/collections/{collection}/cluster")
            counts[name] = {s["shard_id"]: s["points_count"] for s in info["local_shards"]}
        return counts

    def count(self, collection: str, agent: str) -> int:
        """Points of ``agent`` in ``collection`` (0 before the collection exists)."""
        ip = next(iter(self.pod_ips().values()))
        try:
            return int(self.request(ip, f"/collections/{collection}/points/count", {
                "exact": True,
                "filter": {"must": [{"key": "agent_id", "match": {"value": agent}}]}})["count"])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return 0
            raise

    def wait_consensus(self, timeout: float = 240) -> None:
        self.wait(self.in_consensus, "every peer in consensus", timeout)

    def wait(self, ready: Any, what: str, timeout: float) -> None:
        deadline = time.monotonic() + scaled(timeout)
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if ready():
                    return
            except (OSError, KeyError, ValueError) as exc:
                last = exc
            time.sleep(0.5)
        raise TimeoutError(f"Qdrant: not {what} in {timeout:.0f} s ({last!r}):\n"
                           + self.node.container_logs(tail=1500))

    def uninstall(self) -> None:
        self.node.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait")
