"""The operator's identity towards the API server, and the Kubernetes side of the ``Sink``.

One login serves kopf and the status writer alike: the pod's ServiceAccount when in a cluster,
else the kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``), both read by kopf's own public
login helpers. The status writer speaks plain HTTPS (aiohttp, which kopf speaks too), so the
image carries no Kubernetes client library; a 401 re-reads the credentials once
(ServiceAccount tokens are rotated on disk).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
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


class WriteFailed(Exception):
    """The API server refused a write (after the tries ``KubeSink`` makes)."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: {status} {body[:500]}")
        self.status = status


@dataclasses.dataclass(frozen=True)
class Answer:
    """An API server's response, read in full."""

    status: int
    headers: Mapping[str, str]
    body: str


class KubeSink:
    """Writes status through the ``/status`` subresource (merge patch) and posts Events, from
    any task (it needs nothing of kopf's per-handler context).

    It holds at most ``connections`` keep-alive HTTPS connections (aiohttp: the least client
    CPU per request of the clients at hand, and no pool to search); a write waits for a free one
    as long as it may take itself. A write that fails in transport, times out or is answered
    429 or 5xx is tried again (``ATTEMPTS`` in all, backing off from ``RETRY_DELAY``); the last
    failure is raised. A 401 logs in again, once per write.
    """

    def __init__(self, credentials: Callable[[], kopf.ConnectionInfo] = login, *,
                 connections: int = 8,
                 trace_configs: Sequence[aiohttp.TraceConfig] = ()) -> None:
        self._credentials = credentials
        self.connections = connections
        self.trace_configs = list(trace_configs)  # aiohttp's hooks (connections opened, ...)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the session's (one per loop)

    def _connect(self) -> aiohttp.ClientSession:
        info = self._credentials()
        if not info.server:
            raise kopf.LoginError("the credentials name no API server")
        return aiohttp.ClientSession(
            base_url=info.server.rstrip("/") + "/", headers=info.as_http_headers(),
            timeout=aiohttp.ClientTimeout(total=STATUS_TIMEOUT),
            connector=aiohttp.TCPConnector(ssl=info.as_ssl_context(), limit=self.connections),
            trace_configs=self.trace_configs or None)

    async def patch_status(self, body: Mapping[str, Any], status: dict[str, Any]) -> None:
        """Merge ``status`` into ``body``'s status; ``WriteFailed`` if the server refuses it
        (a registry gone meanwhile is logged, not raised)."""
        meta = body.get("metadata") or {}
        ns, name = quote(meta["namespace"], safe=""), quote(meta["name"], safe="")
        path = f"apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/{name}/status"
        answer = await self._send("PATCH", path, {"status": status},
                                  "application/merge-patch+json")
        if answer.status == 404:
            log.info("%s/%s is gone; status not written", meta["namespace"], meta["name"])
            return
        if answer.status >= 400:
            raise WriteFailed("PATCH", path, answer.status, answer.body)

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
        path = f"api/v1/namespaces/{quote(namespace, safe='')}/events"
        try:
            answer = await self._send("POST", path, event, "application/json")
            if answer.status >= 400:
                raise WriteFailed("POST", path, answer.status, answer.body)
        except (WriteFailed, aiohttp.ClientError, asyncio.TimeoutError, kopf.LoginError) as exc:
            log.warning("event %s about %s/%s not posted: %s", reason, namespace,
                        meta.get("name"), str(exc) or type(exc).__name__)

    async def _send(self, method: str, path: str, payload: Mapping[str, Any],
                    content_type: str) -> Answer:
        """One request, tried again on a transport failure, a timeout, 429 or 5xx, and once
        more after logging in again on 401; the last answer (or failure) is the result."""
        data = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"Content-Type": content_type}
        relogged = False
        attempt = 0
        while True:
            attempt += 1
            loop = asyncio.get_running_loop()
            if self._session is None or self._loop is not loop:
                self._session, self._loop = self._connect(), loop
            session = self._session  # this try's: replaced at most once for all writes on it
            try:
                async with session.request(method, path, data=data, headers=headers) as response:
                    answer = Answer(response.status, response.headers, await response.text())
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                if attempt >= ATTEMPTS:
                    raise
                log.info("%s %s failed (%s); trying again", method, path, type(exc).__name__)
                await asyncio.sleep(RETRY_DELAY * 2 ** (attempt - 1))
                continue
            if answer.status == 401 and not relogged:
                relogged = True
                await self._replace(session)  # rotated token: log in again, once
                continue
            if (answer.status == 429 or answer.status >= 500) and attempt < ATTEMPTS:
                await asyncio.sleep(_retry_after(answer) or RETRY_DELAY * 2 ** (attempt - 1))
                continue
            return answer

    async def _replace(self, session: aiohttp.ClientSession) -> None:
        """Log in again at the next request, unless a write that used ``session`` as well has
        already had it replaced (the writes in flight on it fail in transport and are tried
        again on the new one)."""
        if self._session is session:
            self._session = None
            await session.close()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _retry_after(answer: Answer) -> float | None:
    """The server's ``Retry-After`` in seconds (at most 10), if it sent a number."""
    try:
        return min(float(answer.headers.get("retry-after", "")), 10.0)
    except ValueError:
        return None
