"""The operator's identity towards the API server, and the Kubernetes side of the ``Sink``.

One login serves kopf and the status writer alike: the pod's ServiceAccount when in a cluster,
else the kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``), both read by kopf's own public
login helpers. The status writer speaks plain HTTPS (httpx), so the image carries no Kubernetes
client library; a 401 re-reads the credentials once (ServiceAccount tokens are rotated on disk).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx
import kopf

from flowreg.schema import GROUP, PLURAL, VERSION

log = logging.getLogger("flowreg.controller")
STATUS_TIMEOUT = 30.0
"""Seconds a status patch may take before it fails (and the reconcile is retried)."""
ATTEMPTS = 4
"""Tries of one status patch that meets a transport failure, a timeout, 429 or 5xx."""
RETRY_DELAY = 0.5
"""Seconds before the second try; doubled for each later one."""


def login(settings: kopf.OperatorSettings | None = None) -> kopf.ConnectionInfo:
    """The operator's credentials: in-cluster ServiceAccount first, then the kubeconfig.

    In a pod the API server is addressed as client-go addresses it, by
    ``$KUBERNETES_SERVICE_HOST``/``PORT`` (the kubelet sets them), so the operator needs no
    cluster DNS; kopf's helper alone would use the name ``kubernetes.default.svc``.
    """
    settings = settings or kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings)
    host, port = (os.environ.get(f"KUBERNETES_SERVICE_{k}") for k in ("HOST", "PORT"))
    if info is not None and host and port:
        host = f"[{host}]" if ":" in host else host
        info = dataclasses.replace(info, server=f"https://{host}:{port}")
    info = info or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise kopf.LoginError("no credentials: not in a pod with a ServiceAccount token, "
                              "and no kubeconfig ($KUBECONFIG or ~/.kube/config)")
    return info


class KubeSink:
    """Writes status through the ``/status`` subresource (merge patch) and posts Events.

    Its connection pool holds ``connections`` connections (the operator's concurrent syncs,
    each writing one status at a time), and a patch waits for a free one as long as it may
    take itself. A patch that fails in transport, times out or is answered 429 or 5xx is tried
    again (``ATTEMPTS`` in all, backing off from ``RETRY_DELAY``); the last failure is raised.
    """

    def __init__(self, credentials: Callable[[], kopf.ConnectionInfo] = login, *,
                 connections: int = 8) -> None:
        self._credentials = credentials
        self.connections = connections
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the client's (one per loop)

    def _connect(self) -> httpx.AsyncClient:
        info = self._credentials()
        if not info.server:
            raise kopf.LoginError("the credentials name no API server")
        return httpx.AsyncClient(
            base_url=info.server.rstrip("/"), verify=info.as_ssl_context(),
            headers=info.as_http_headers(), timeout=STATUS_TIMEOUT,
            limits=httpx.Limits(max_connections=self.connections,
                                max_keepalive_connections=self.connections))

    async def patch_status(self, body: Mapping[str, Any], status: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        ns, name = quote(meta["namespace"], safe=""), quote(meta["name"], safe="")
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/{name}/status"
        relogged = False
        attempt = 0
        while True:
            attempt += 1
            loop = asyncio.get_running_loop()
            if self._client is None or self._loop is not loop:
                self._client, self._loop = self._connect(), loop
            try:
                response = await self._client.patch(
                    path, json={"status": status},
                    headers={"Content-Type": "application/merge-patch+json"})
            except httpx.TransportError as exc:  # incl. timeouts, a pool without a free slot
                if attempt >= ATTEMPTS:
                    raise
                log.info("status of %s/%s not written (%s); trying again", meta["namespace"],
                         meta["name"], type(exc).__name__)
                await asyncio.sleep(RETRY_DELAY * 2 ** (attempt - 1))
                continue
            if response.status_code == 401 and not relogged:
                relogged = True
                await self.close()  # rotated token: log in again, once
                continue
            if response.status_code == 404:
                log.info("%s/%s is gone; status not written", meta["namespace"], meta["name"])
                return
            if (response.status_code == 429 or response.status_code >= 500) \
                    and attempt < ATTEMPTS:
                await asyncio.sleep(_retry_after(response) or RETRY_DELAY * 2 ** (attempt - 1))
                continue
            response.raise_for_status()
            return

    async def event(self, body: Mapping[str, Any], type_: str, reason: str,
                    message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message[:1000])

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _retry_after(response: httpx.Response) -> float | None:
    """The server's ``Retry-After`` in seconds (at most 10), if it sent a number."""
    try:
        return min(float(response.headers.get("retry-after", "")), 10.0)
    except ValueError:
        return None
