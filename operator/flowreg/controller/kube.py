"""The Kubernetes side of the ``Sink``: status patches and Events for a FlowRegistry."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from flowreg.schema import GROUP, PLURAL, VERSION

log = logging.getLogger("flowreg.controller")


def api_client() -> client.ApiClient:
    """An API client with the operator's identity: in-cluster, else from ``$KUBECONFIG``."""
    try:
        config.load_incluster_config()
        return client.ApiClient()
    except config.ConfigException:
        return config.new_client_from_config(config_file=os.environ.get("KUBECONFIG") or None)


class KubeSink:
    """Writes status through the ``/status`` subresource (merge patch) and posts Events."""

    def __init__(self, api: client.ApiClient | None = None) -> None:
        self._api = api

    async def patch_status(self, body: Mapping[str, Any], status: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        if self._api is None:
            self._api = api_client()
        api = client.CustomObjectsApi(self._api)
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
