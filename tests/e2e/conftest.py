"""Fixtures for end-to-end tests: one real control plane per test session.

In CI (``CI=true``) these tests always run: a binary that is missing or fails to build or
start fails the run. Locally they run too (missing binaries are built first); a developer may
skip them only explicitly, with ``FLOWREG_SKIP_E2E=1``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from tests.support.controlplane import (
    ControlPlane,
    apply_file,
    find_testbin,
    missing_binaries,
    service_account_token,
)
from tests.support.images import Image, build, missing_tools
from tests.support.node import NodeCluster, missing, start_node, stop_and_check
from tests.support.skips import loud_skip

IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    if os.environ.get("FLOWREG_SKIP_E2E") == "1" and not IN_CI:
        pytest.skip("FLOWREG_SKIP_E2E=1: end-to-end tests skipped on request")
    bin_dir = find_testbin()
    if missing_binaries(bin_dir):
        if IN_CI:
            pytest.fail(f"control-plane binaries missing in {bin_dir} "
                        f"({', '.join(missing_binaries(bin_dir))}); .ci/run must build them")
        bin_dir = find_testbin(build=True)
    plane = ControlPlane(bin_dir).start()
    print(f"\ncontrol plane ready in {plane.startup_seconds:.2f} s at {plane.server}")
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kubeconfig_path(control_plane: ControlPlane) -> Path:
    return control_plane.kubeconfig


@pytest.fixture(scope="session")
def kubectl_path(control_plane: ControlPlane) -> Path:
    return control_plane.kubectl


@pytest.fixture(scope="session")
def kube_api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def apply_manifest(kube_api: client.ApiClient) -> Callable[..., list[Any]]:
    """Server-side apply a YAML file (CRDs wait for Established)."""

    def apply(path: Path, namespace: str | None = None) -> list[Any]:
        return apply_file(kube_api, path, namespace)

    return apply


@pytest.fixture
def service_account_kubeconfig(control_plane: ControlPlane, kube_api: client.ApiClient,
                               tmp_path: Path) -> Callable[[str, str], Path]:
    """Make a kubeconfig for ServiceAccount ``namespace/name`` (created if absent)."""

    def make(namespace: str, name: str) -> Path:
        token = service_account_token(kube_api, namespace, name)
        return control_plane.kubeconfig_for_token(token, tmp_path / f"{namespace}-{name}.kcfg",
                                                  user=name)

    return make


@pytest.fixture
def namespace_factory(kube_api: client.ApiClient) -> Iterator[Callable[[str], str]]:
    """Create namespaces ``<prefix>-<random>``; they are deleted after the test."""
    core = client.CoreV1Api(kube_api)
    made: list[str] = []

    def make(prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        made.append(name)
        return name

    try:
        yield make
    finally:
        for name in made:
            core.delete_namespace(name)


@pytest.fixture
def namespace(namespace_factory: Callable[[str], str]) -> str:
    """A fresh namespace matching ``flowreg-e2e-*``, which the in-process operator watches.

    (There is no namespace controller here, so deleted namespaces stay Terminating; tests that
    do not involve the operator use other prefixes.)
    """
    return namespace_factory("flowreg-e2e")


@pytest.fixture(scope="session")
def crd_installed(kube_api: client.ApiClient, apply_manifest: Callable[..., Any]) -> None:
    """The FlowRegistry CRD, installed and Established."""
    apply_manifest(Path(__file__).resolve().parents[2] / "crds" / "flowregistry.yaml")


@pytest.fixture(scope="session")
def operator_image() -> Image:
    """The operator image built from the Dockerfile (cached by content; see hack/image.sh)."""
    why = missing_tools()
    if why:
        loud_skip(f"the operator image and the node: {why}")
    image = build("flowreg")
    print(f"\nimage {image.ref} ready in {image.build_seconds:.1f} s")
    return image


@pytest.fixture(scope="session")
def node(request: pytest.FixtureRequest) -> Iterator[NodeCluster]:
    """The session's real node (tests/support/node.py) with the operator image, kube-proxy and
    CoreDNS; tests that need more images ``load`` them. At the end it is stopped and checked to
    have left nothing behind. Skips loudly (before building any image) where a node cannot run."""
    why = missing(find_testbin())
    if why:
        loud_skip(f"a real node: {why}")
    cluster = start_node(request.getfixturevalue("operator_image"))
    try:
        yield cluster
    finally:
        stop_and_check(cluster)
