"""The shipped image, built from the Dockerfile by podman, run the way the chart runs it.

Restricted as under the restricted Pod Security profile: read-only root, UID 10001, every
capability dropped, no privilege escalation. On the host network, with the control plane's
kubeconfig, the container is the whole operator: liveness, metrics, and a real sync.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.support.builders import make_flows
from tests.support.controlplane import ControlPlane, free_port
from tests.support.images import Image, podman, podman_env
from tests.support.operator_harness import (
    OperatorProcess,
    create,
    registry,
    wait_ready,
    write_config,
)

RESTRICTED = ("--read-only", "--user", "10001:10001", "--cap-drop", "ALL",
              "--security-opt", "no-new-privileges")


class ContainerOperator(OperatorProcess):
    """``flowreg run`` as the image's entrypoint, in a restricted podman container."""

    def __init__(self, image: Image, kubeconfig: Path, config_path: Path, namespace: str,
                 log: Path) -> None:
        super().__init__(kubeconfig, config_path, namespace, log, free_port(), free_port())
        self.name = f"flowreg-test-{uuid.uuid4().hex[:8]}"
        run_args = self.args[self.args.index("run") + 1:]
        run_args[run_args.index("--config") + 1] = "/etc/flowreg/config.yaml"
        self.args = ["podman", "run", "--rm", "--name", self.name, "--network", "host",
                     *RESTRICTED,
                     "-v", f"{kubeconfig}:/etc/flowreg/kubeconfig:ro",
                     "-v", f"{config_path}:/etc/flowreg/config.yaml:ro",
                     "-e", "KUBECONFIG=/etc/flowreg/kubeconfig",
                     image.ref, "run", *run_args]
        self.env = podman_env()

    def stop(self) -> None:
        super().stop()
        podman("rm", "--force", "--ignore", self.name, check=False)


def readable_copy(path: Path, directory: Path) -> Path:
    """A copy the container's UID 10001 can read (test credentials only)."""
    copy = directory / path.name
    shutil.copyfile(path, copy)
    copy.chmod(0o644)
    return copy


def test_image_reports_its_version_restricted(operator_image: Image):
    result = podman("run", "--rm", "--network", "none", *RESTRICTED, operator_image.ref,
                    "--version")
    assert result.stdout.strip() == "flowreg 0.1.0", result.stderr
    user = podman("run", "--rm", "--network", "none", *RESTRICTED, "--entrypoint", "python3",
                  operator_image.ref, "-c", "import os, pwd; print(os.getuid(), os.getgid(), "
                  "pwd.getpwuid(os.getuid()).pw_name)")
    assert user.stdout.split() == ["10001", "10001", "flowreg"]


def test_image_holds_no_shell_no_build_tools_and_a_read_only_root(operator_image: Image):
    tools = ("sh", "bash", "pip", "gcc", "cc", "apt-get", "dpkg", "hatchling")
    probe = (f"import shutil, os; print([t for t in {tools!r} if shutil.which(t, path="
             "'/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/flowreg/bin')]);"
             " print(os.access('/opt/flowreg', os.W_OK))")
    result = podman("run", "--rm", "--network", "none", *RESTRICTED, "--entrypoint", "python3",
                    operator_image.ref, "-c", probe)
    assert result.stdout.split("\n")[:2] == ["[]", "False"], result.stdout + result.stderr


def test_image_runs_the_operator_restricted(operator_image: Image, control_plane: ControlPlane,
                                            kube_api: client.ApiClient, crd_installed: None,
                                            namespace_factory: Any, tmp_path: Path):
    namespace = namespace_factory("flowreg-image")
    config = write_config(tmp_path / "config.yaml", ":memory:")
    config.chmod(0o644)
    kubeconfig = readable_copy(control_plane.kubeconfig, tmp_path)
    operator = ContainerOperator(operator_image, kubeconfig, config, namespace,
                                 tmp_path / "operator.log")
    try:
        operator.start()
        operator.wait_alive(timeout=60)
        create(kube_api, registry(namespace, "reg", "image-bot", make_flows(3)))
        obj = wait_ready(kube_api, namespace, "reg")
        assert obj["status"]["lastSync"]["created"] == 3, obj["status"]
        metrics = operator.scrape()
        assert 'flowreg_syncs_total{result="Synced"} 1.0' in metrics, metrics
    finally:
        operator.stop()
        log = operator.log.read_text(errors="replace") if operator.log.exists() else ""
        print(log[-3000:])
    assert podman("container", "exists", operator.name, check=False).returncode == 1
