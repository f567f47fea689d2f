"""Flux's source-controller and kustomize-controller as processes against the test apiserver.

The binaries and their CRDs come from the Flux cache directory (``flux_dir``: built by
``hack/flux.sh``). ``FluxControllers`` installs the CRDs, starts both
controllers with the admin kubeconfig, every listener on a free loopback port (metrics,
health, and source-controller's artifact server, advertised on loopback so that
kustomize-controller downloads artifacts from it), leader election off, watching all
namespaces; waits until both answer ``/readyz``; and stops them (their process groups; they die
with the test process too). Reading Flux objects: ``get``, ``condition``, ``wait_flux``.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.support.controlplane import apply_file, scaled
from tests.support.processes import die_with_parent, free_port, stop_group

REPO = Path(__file__).resolve().parents[2]
CONTROLLERS = ("source-controller", "kustomize-controller")
SOURCE = ("source.toolkit.fluxcd.io", "v1", "gitrepositories")
KUSTOMIZATION = ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
REQUEUE_DEPENDENCY = "2s"
"""How soon a Kustomization whose dependency is not Ready looks again (Flux's default: 30s)."""


def flux_dir(only: str | None = "kstatus") -> Path:
    """The Flux cache directory: ``$FLOWREG_FLUX_DIR``, else what hack/flux.sh prints.

    The script builds what is missing first: with ``only="kstatus"`` (the default) just that
    small program, with ``only=None`` the controllers too.
    """
    env = os.environ.get("FLOWREG_FLUX_DIR")
    if env:
        return Path(env)
    args = ["bash", str(REPO / "hack" / "flux.sh"), *([only] if only else [])]
    out = subprocess.run(args, check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def missing(directory: Path) -> list[str]:
    return [name for name in CONTROLLERS if not os.access(directory / name, os.X_OK)]


class FluxControllers:
    """Both controllers as child processes; a context manager."""

    def __init__(self, directory: Path, kubeconfig: Path, api: client.ApiClient) -> None:
        self.directory, self.kubeconfig, self.api = directory, kubeconfig, api
        self.work = Path(tempfile.mkdtemp(prefix="flowreg-flux-"))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.health: dict[str, int] = {}

    def __enter__(self) -> FluxControllers:
        for crd in sorted((self.directory / "crds").glob("*.yaml")):
            apply_file(self.api, crd)
        storage = free_port()
        (self.work / "artifacts").mkdir()
        common = ["--watch-all-namespaces=true", "--enable-leader-election=false",
                  "--log-level=info", "--log-encoding=console"]
        self._start("source-controller", [
            *common, f"--storage-path={self.work / 'artifacts'}",
            f"--storage-addr=127.0.0.1:{storage}", f"--storage-adv-addr=127.0.0.1:{storage}"])
        self._start("kustomize-controller", [
            *common, "--no-remote-bases=true", f"--requeue-dependency={REQUEUE_DEPENDENCY}"])
        for name in CONTROLLERS:
            self._wait_ready(name, scaled(60))
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs.values():
            stop_group(proc)
        shutil.rmtree(self.work, ignore_errors=True)

    def log(self, name: str, tail: int = 4000) -> str:
        path = self.work / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def _start(self, name: str, args: list[str]) -> None:
        metrics, health = free_port(), free_port()
        self.health[name] = health
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "RUNTIME_NAMESPACE": "default"}
        with (self.work / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                [str(self.directory / name), f"--metrics-addr=127.0.0.1:{metrics}",
                 f"--health-addr=127.0.0.1:{health}", *args],
                cwd=self.work, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)

    def _wait_ready(self, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.health[name]}/readyz"
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited with {self.procs[name].returncode}: "
                                   f"{self.log(name)}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{name} not ready within {timeout:.0f} s: {self.log(name)}")


def get(api: client.ApiClient, kind: tuple[str, str, str], namespace: str,
        name: str) -> dict[str, Any]:
    group, version, plural = kind
    return client.CustomObjectsApi(api).get_namespaced_custom_object(  # type: ignore[no-any-return]
        group, version, namespace, plural, name)


def condition(obj: dict[str, Any], ctype: str = "Ready") -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return cond  # type: ignore[no-any-return]
    return {}


def wait_flux(api: client.ApiClient, kind: tuple[str, str, str], namespace: str, name: str,
              predicate: Callable[[dict[str, Any]], bool], timeout: float,
              what: str, flux: FluxControllers | None = None) -> dict[str, Any]:
    """Poll a Flux object until ``predicate`` holds; on timeout, say what it last showed."""
    deadline = time.monotonic() + scaled(timeout)
    obj: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            obj = get(api, kind, namespace, name)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
        else:
            if predicate(obj):
                return obj
        time.sleep(0.25)
    logs = "" if flux is None else "\n".join(f"--- {n}\n{flux.log(n)}" for n in CONTROLLERS)
    raise TimeoutError(f"{kind[2]} {namespace}/{name}: {what} not reached in "
                       f"{scaled(timeout):.0f} s; status: {obj.get('status')}\n{logs}")


def request_reconcile(api: client.ApiClient, kind: tuple[str, str, str], namespace: str,
                      name: str) -> str:
    """What ``flux reconcile`` does: set ``reconcile.fluxcd.io/requestedAt``; its value."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    group, version, plural = kind
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        group, version, namespace, plural, name,
        {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": stamp}}})
    return stamp
