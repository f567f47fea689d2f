"""The Kubernetes side of the ``Sink``: status patches and Events for a FlowRegistry."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from flowreg.schema import GROUP, PLURAL, VERSION

log = logging.getLogger("flowreg.controller")


@functools.lru_cache(maxsize=1)
def custom_objects() -> client.CustomObjectsApi:
    """A client for custom objects, configured in-cluster or from ``$KUBECONFIG``."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi()


class KubeSink:
    """Writes status through the ``/status`` subresource (merge patch) and posts Events."""

    async def patch_status(self, body: Mapping[str, Any], status: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        api = custom_objects()
        call = functools.partial(
            api.patch_namespaced_custom_object_status, GROUP, VERSION, meta["namespace"],
            PLURAL, meta["name"], {"status": status})
        try:
            await asyncio.to_thread(call)
        except ApiException as exc:
            if exc.status == 404:
                log.info("%s/%s is gone; status not written", meta["namespace"], meta["name"])
                return
            raise

    async def event(self, body: Mapping[str, Any], type_: str, reason: str,
                    message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message[:1000])
