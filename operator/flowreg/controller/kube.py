"""The operator's identity towards the API server, and the Kubernetes side of the ``Sink``.

One login serves kopf and the status writer alike: the pod's ServiceAccount when in a cluster,
else the kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``), both read by kopf's own public
login helpers. The status writer speaks plain HTTPS (httpx), so the image carries no Kubernetes
client library; a 401 re-reads the credentials once (ServiceAccount tokens are rotated on disk).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx
import kopf

from flowreg.schema import GROUP, KIND, PLURAL, VERSION

log = logging.getLogger("flowreg.controller")
STATUS_TIMEOUT = 30.0
"""Seconds a status patch may take before it fails (and the reconcile is retried)."""
COMPONENT = "flowreg"
"""The Events' reporting component (the "From" of ``kubectl describe``)."""
INSTANCE = os.environ.get("POD_ID") or "flowreg"
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
    """Writes status through the ``/status`` subresource (merge patch) and posts Events, from
    any task (it needs nothing of kopf's per-handler context).

    It speaks HTTP/2 (as every API server does): the concurrent syncs' writes share one
    connection instead of each taking one from a pool (a fleet's first sync costs the operator
    less CPU: no pool to search at every request). It holds at most ``connections``
    connections, and a patch waits for a free one as long as it may take itself. A patch that
    fails in transport, times out or is answered 429 or 5xx is tried again (``ATTEMPTS`` in
    all, backing off from ``RETRY_DELAY``); the last failure is raised. An ended connection
    (over HTTP/2 also the answer to a rejected token) or a 401 logs in again.
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
            headers=info.as_http_headers(), timeout=STATUS_TIMEOUT, http2=True,
            limits=httpx.Limits(max_connections=self.connections,
                                max_keepalive_connections=self.connections))

    async def patch_status(self, body: Mapping[str, Any], status: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        ns, name = quote(meta["namespace"], safe=""), quote(meta["name"], safe="")
        response = await self._send(
            "PATCH", f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/{name}/status",
            {"status": status}, "application/merge-patch+json")
        if response.status_code == 404:
            log.info("%s/%s is gone; status not written", meta["namespace"], meta["name"])
            return
        response.raise_for_status()

    async def event(self, body: Mapping[str, Any], type_: str, reason: str,
                    message: str) -> None:
        """Post a core/v1 Event about ``body``; a failure is logged, never raised (Events are
        auxiliary: the status says the same)."""
        meta = body.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        event = {
            "metadata": {"namespace": namespace, "generateName": "flowreg-"},
            "type": type_, "reason": reason, "message": message[:1000], "action": "Sync",
            "reportingComponent": COMPONENT, "reportingInstance": INSTANCE,
            "source": {"component": COMPONENT},
            "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
                               "name": meta.get("name"), "namespace": namespace,
                               "uid": meta.get("uid")},
            "firstTimestamp": now, "lastTimestamp": now, "eventTime": now,
        }
        try:
            response = await self._send(
                "POST", f"/api/v1/namespaces/{quote(namespace, safe='')}/events", event,
                "application/json")
            response.raise_for_status()
        except (httpx.HTTPError, kopf.LoginError) as exc:
            log.warning("event %s about %s/%s not posted: %s", reason, namespace,
                        meta.get("name"), exc)

    async def _send(self, method: str, path: str, payload: Mapping[str, Any],
                    content_type: str) -> httpx.Response:
        """One request, tried again on a transport failure, a timeout, 429 or 5xx, and once
        more after logging in again on 401; the last response (or failure) is the answer."""
        relogged = False
        attempt = 0
        while True:
            attempt += 1
            loop = asyncio.get_running_loop()
            if self._client is None or self._loop is not loop:
                self._client, self._loop = self._connect(), loop
            client = self._client  # this try's: replaced at most once for all writes on it
            try:
                response = await client.request(
                    method, path, json=payload, headers={"Content-Type": content_type})
            except httpx.TransportError as exc:  # incl. timeouts, a pool without a free slot
                if attempt >= ATTEMPTS:
                    raise
                log.info("%s %s failed (%s); trying again", method, path, type(exc).__name__)
                if isinstance(exc, httpx.RemoteProtocolError):
                    # the server ended the connection; over HTTP/2 that is also how the API
                    # server answers a rejected token (GOAWAY, possibly before the 401)
                    await self._replace(client)
                await asyncio.sleep(RETRY_DELAY * 2 ** (attempt - 1))
                continue
            if response.status_code == 401 and not relogged:
                relogged = True
                await self._replace(client)  # rotated token: log in again, once
                continue
            if (response.status_code == 429 or response.status_code >= 500) \
                    and attempt < ATTEMPTS:
                await asyncio.sleep(_retry_after(response) or RETRY_DELAY * 2 ** (attempt - 1))
                continue
            return response

    async def _replace(self, client: httpx.AsyncClient) -> None:
        """Log in again at the next request, unless a write that used ``client`` as well has
        already had it replaced (the writes in flight on it end and try again on the new one)."""
        if self._client is client:
            self._client = None
            await client.aclose()

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
