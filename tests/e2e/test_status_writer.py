"""The operator's status writer against the real apiserver: its own HTTPS, no client library."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path
from typing import Any

import aiohttp
import kopf
from kubernetes import client

from flowreg.controller.kube import KubeSink
from tests.support.controlplane import ControlPlane
from tests.support.operator_harness import create, delete_and_wait_gone, get_registry, registry


def admin_credentials(kubeconfig: Path) -> kopf.ConnectionInfo:
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(kubeconfig)
    try:
        info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    finally:
        if previous is None:
            os.environ.pop("KUBECONFIG")
        else:
            os.environ["KUBECONFIG"] = previous
    assert info is not None
    return info


async def test_a_rejected_token_is_replaced_once_and_the_status_written(
        control_plane: ControlPlane, kube_api: client.ApiClient, crd_installed: None,
        namespace_factory: Any):
    namespace = namespace_factory("flowreg-sink")
    body = create(kube_api, registry(namespace, "reg", "sink-bot", []))
    good = admin_credentials(control_plane.kubeconfig)
    expired = dataclasses.replace(good, certificate_data=None, private_key_data=None,
                                  token="a-rotated-token")
    logins: list[kopf.ConnectionInfo] = []

    def credentials() -> kopf.ConnectionInfo:
        logins.append(expired if not logins else good)
        return logins[-1]

    sink = KubeSink(credentials)
    try:
        await sink.patch_status(body, {"flowCount": 7})
        await sink.patch_status(body, {"flowCount": 8})  # the new login is kept
    finally:
        await sink.close()
    assert logins == [expired, good]
    assert get_registry(kube_api, namespace, "reg")["status"]["flowCount"] == 8


async def test_a_deleted_registry_is_not_an_error(control_plane: ControlPlane,
                                                  kube_api: client.ApiClient,
                                                  crd_installed: None, namespace_factory: Any):
    namespace = namespace_factory("flowreg-sink")
    body = create(kube_api, registry(namespace, "gone", "gone-bot", []))
    sink = KubeSink(lambda: admin_credentials(control_plane.kubeconfig))
    try:
        # the same path the 404 below comes from writes while the object exists
        await sink.patch_status(body, {"flowCount": 3})
        assert get_registry(kube_api, namespace, "gone")["status"]["flowCount"] == 3
        assert delete_and_wait_gone(kube_api, namespace, "gone")
        await sink.patch_status(body, {"flowCount": 1})  # 404: logged, not raised
    finally:
        await sink.close()


async def test_concurrent_writes_reuse_at_most_the_connections_they_are_given(
        control_plane: ControlPlane, kube_api: client.ApiClient, crd_installed: None,
        namespace_factory: Any):
    """Sixteen writes at once, twice over, through four connections: every write lands, at
    most four connections are opened and the second round opens none."""
    namespace = namespace_factory("flowreg-sink")
    bodies = [create(kube_api, registry(namespace, f"r{i}", f"bot-{i}", [])) for i in range(16)]
    opened: list[int] = []
    trace = aiohttp.TraceConfig()

    async def on_opened(*_: Any) -> None:
        opened.append(1)

    trace.on_connection_create_end.append(on_opened)
    sink = KubeSink(lambda: admin_credentials(control_plane.kubeconfig), connections=4,
                    trace_configs=[trace])
    rounds: list[int] = []
    try:
        for base in (0, 100):
            await asyncio.gather(*(sink.patch_status(b, {"flowCount": base + i})
                                   for i, b in enumerate(bodies)))
            rounds.append(len(opened))
    finally:
        await sink.close()
    assert 1 <= rounds[0] <= 4, f"{rounds[0]} connections opened for 4 allowed"
    assert rounds[1] == rounds[0], "the second round opened connections of its own"
    assert [get_registry(kube_api, namespace, f"r{i}")["status"]["flowCount"]
            for i in range(16)] == [100 + i for i in range(16)]
