"""Running the operator against the test control plane, and reading what it did.

Two ways to run it:

* ``InProcessOperator``: the operator's handlers (registered and given their memo as
  ``flowreg run`` does) run under ``kopf.operator`` in a thread with its own event loop. The
  test reads Qdrant through the operator's own store handles, on the operator's loop
  (``InProcessOperator.call``), so an embedded store is never used from two threads at once.
* ``OperatorProcess``: ``flowreg run`` as a real child process, for tests that SIGKILL it. It
  uses an embedded store in a directory; the test opens that directory only after the process
  has gone (an embedded store admits one client at a time).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import kopf
import yaml
from kubernetes import client

from flowreg.controller.config import load_config
from flowreg.controller.handlers import operator_memo, register
from flowreg.controller.reconcile import Reconciler
from flowreg.flow import Flow
from flowreg.schema import GROUP, PLURAL, VERSION
from tests.support.builders import make_flows
from tests.support.controlplane import scaled

DRIFT_SECONDS = "1"
T = TypeVar("T")


def write_config(path: Path, location: str = ":memory:", *, batch_size: int = 100,
                 **extra: Any) -> Path:
    """An operator configuration with one store called ``default``."""
    config = {"stores": {"default": {"location": location, "batchSize": batch_size}},
              "progressEverySeconds": 0.5,
              "driftCheckSeconds": float(DRIFT_SECONDS),
              "deepCheckInterval": "1s",  # every re-sync reads everything (drift tests)
              **extra}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


class InProcessOperator:
    """The operator in a thread of this process, watching the namespaces matching ``pattern``.

    Its identity is whatever ``kubeconfig`` holds (admin, or a ServiceAccount token).
    """

    def __init__(self, kubeconfig: Path, config_path: Path, pattern: str | None) -> None:
        self.kubeconfig = kubeconfig
        self.config_path = config_path
        self.pattern = pattern  # None: all namespaces
        self.config = load_config(config_path)
        self.memo = operator_memo(self.config)
        self.loop = asyncio.new_event_loop()
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, name="operator", daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> InProcessOperator:
        from kubernetes.config import kube_config

        # The client library reads $KUBECONFIG when it is imported, which was earlier.
        os.environ["KUBECONFIG"] = str(self.kubeconfig)
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(self.kubeconfig)
        kopf.configure(verbose=True)
        self.thread.start()
        deadline = time.monotonic() + scaled(30)
        while not isinstance(self.memo.get("reconciler"), Reconciler):
            if self.error is not None or not self.thread.is_alive():
                raise RuntimeError("the operator stopped while starting") from self.error
            if time.monotonic() > deadline:
                raise TimeoutError("the operator did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_flag.set()
        self.thread.join(timeout=scaled(60))
        if self.thread.is_alive():
            raise RuntimeError("the operator did not stop")
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(kopf.operator(
                registry=register(kopf.OperatorRegistry(), self.config), memo=self.memo,
                standalone=True, clusterwide=self.pattern is None,
                namespaces=[] if self.pattern is None else [self.pattern],
                stop_flag=self.stop_flag))
        except BaseException as exc:
            self.error = exc
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def call(self, fn: Callable[[Reconciler], Awaitable[T]], timeout: float = 60.0) -> T:
        """Run ``fn(reconciler)`` on the operator's loop; return its result."""

        async def run() -> T:
            return await fn(self.memo["reconciler"])

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def flows(self, agent: str, store: str = "default") -> dict[str, tuple[Flow, str | None]]:
        """What Qdrant holds for ``agent``: name -> (flow, owner)."""

        async def read(rec: Any) -> list[tuple[Flow, str | None]]:
            engine = await rec.engine(rec.config.store(store))
            return await engine.store.read_flows(agent)

        return {flow.name: (flow, owner) for flow, owner in self.call(read)}

    def store_call(self, fn: Callable[[Any], Any], store: str = "default") -> Any:
        """Run ``fn(flow_store)`` (a coroutine function) on the operator's loop."""

        async def run(rec: Any) -> Any:
            engine = await rec.engine(rec.config.store(store))
            return await fn(engine.store)

        return self.call(run)

    def stats(self, store: str = "default") -> tuple[int, int]:
        """(Qdrant write calls, embedded texts) made by the operator so far."""

        async def read(rec: Any) -> tuple[int, int]:
            engine = await rec.engine(rec.config.store(store))
            return engine.store.stats.writes, engine.embedder.texts

        return self.call(read)


class OperatorProcess:
    """``flowreg run`` as a child process, killable for real."""

    def __init__(self, kubeconfig: Path, config_path: Path, namespace: str, log: Path,
                 liveness_port: int, metrics_port: int) -> None:
        self.liveness = f"http://127.0.0.1:{liveness_port}/healthz"
        self.metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        self.args = [sys.executable, "-m", "flowreg.cli.main", "run", "--config",
                     str(config_path), "--namespace", namespace, "--liveness", self.liveness,
                     "--metrics-port", str(metrics_port), "--log-format", "json"]
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def wait_alive(self, timeout: float = 60.0) -> str:
        """Wait until the liveness endpoint answers 200; return its body."""
        import urllib.request

        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            try:
                with urllib.request.urlopen(self.liveness, timeout=2) as response:
                    if response.status == 200:
                        return response.read().decode()
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"{self.liveness} did not answer")

    def scrape(self) -> str:
        import urllib.request

        with urllib.request.urlopen(self.metrics, timeout=5) as response:
            return response.read().decode()

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def metric_value(exposition: str, name: str) -> float | None:
    """A metric's value in Prometheus text (summed over its labels); None if absent."""
    found = re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", exposition, re.M)
    return sum(float(v) for v in found) if found else None


def get_registry(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    return client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name)


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return cond  # type: ignore[no-any-return]
    return None


def wait_for(api: client.ApiClient, namespace: str, name: str,
             predicate: Callable[[dict[str, Any]], bool], timeout: float = 60.0,
             what: str = "condition") -> dict[str, Any]:
    """Poll the FlowRegistry until ``predicate(obj)`` holds; return the object."""
    deadline = time.monotonic() + scaled(timeout)
    obj: dict[str, Any] = {}
    while time.monotonic() < deadline:
        obj = get_registry(api, namespace, name)
        if predicate(obj):
            return obj
        time.sleep(0.2)
    raise TimeoutError(f"{namespace}/{name}: {what} not reached in {timeout}s; "
                       f"status: {obj.get('status')}")


def ready_at_generation(obj: dict[str, Any], reason: str = "Synced") -> bool:
    cond = condition(obj, "Ready")
    return bool(cond and cond.get("reason") == reason
                and (obj.get("status") or {}).get("observedGeneration")
                == obj["metadata"]["generation"]
                and cond.get("observedGeneration") == obj["metadata"]["generation"])


def wait_watching(api: client.ApiClient, prefix: str, timeout: float = 60.0) -> None:
    """Return once the operator syncs registries in new namespaces named ``<prefix>-*``.

    kopf lists namespaces once, then starts its namespace watch with a second listing whose
    items it ignores: a namespace created between the two is not seen until it changes. A
    canary namespace, relabelled until the operator syncs a registry in it, shows that the
    watch is live, so namespaces made after this are seen as they are created.
    """
    core = client.CoreV1Api(api)
    namespace = f"{prefix}-canary-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL,
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FlowRegistry",
         "metadata": {"name": "canary", "namespace": namespace},
         "spec": {"agentId": f"canary_{uuid.uuid4().hex[:8]}",
                  "flows": [{"name": "canary", "description": "a canary flow"}]}})
    deadline = time.monotonic() + scaled(timeout)
    touches = 0
    while not ready_at_generation(get_registry(api, namespace, "canary")):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the operator did not sync a registry in {namespace}")
        time.sleep(0.5)
        touches += 1
        if touches % 4 == 0:  # a change to the namespace: seen by a live watch
            core.patch_namespace(namespace, {"metadata": {"labels": {"touch": str(touches)}}})


def delete_and_wait_gone(api: client.ApiClient, namespace: str, name: str,
                         timeout: float = 30.0) -> bool:
    """Delete a FlowRegistry; True once it is gone (its finalizer ran), False on timeout."""
    client.CustomObjectsApi(api).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name)
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        try:
            get_registry(api, namespace, name)
        except client.ApiException as exc:
            if exc.status == 404:
                return True
            raise
        time.sleep(0.2)
    return False


def events_for(api: client.ApiClient, namespace: str, name: str) -> list[Any]:
    items = client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}").items
    return sorted(items, key=lambda e: (e.last_timestamp or e.event_time or 0, e.metadata.name))


def registry(namespace: str, name: str, agent: str, flows: list[dict[str, Any]],
             **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FlowRegistry",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"agentId": agent, **spec, "flows": flows}}


def create(kube_api: client.ApiClient, obj: dict[str, Any]) -> dict[str, Any]:
    return client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
        GROUP, VERSION, obj["metadata"]["namespace"], PLURAL, obj)


def wait_ready(kube_api: client.ApiClient, namespace: str, name: str, reason: str = "Synced",
               timeout: float = 60) -> dict[str, Any]:
    return wait_for(kube_api, namespace, name, lambda o: ready_at_generation(o, reason),
                    timeout, what=f"Ready reason={reason}")


def big_flows(n: int) -> list[dict[str, Any]]:
    flows = make_flows(n)
    for i, flow in enumerate(flows):
        flow["description"] = (f"Flow number {i}: " + "handle the customer's request carefully, "
                               "check every precondition, and answer politely. " * 4)[:400]
    return flows
