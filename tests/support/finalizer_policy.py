"""The chart's finalizer policy (a MutatingAdmissionPolicy, Kubernetes 1.36+) on a control plane
that runs without the chart: rendered by the real helm binary from the chart, applied, and
waited for until the apiserver applies it."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from flowreg.schema import GROUP, PLURAL, VERSION
from tests.support.builders import make_flows, registry_doc
from tests.support.controlplane import apply_documents, scaled

REPO = Path(__file__).resolve().parents[2]
MAP_API = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"
"""What a cluster that serves admission policies lists (``helm template --api-versions``)."""


def render(helm: Path, release: str, namespaces: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The policy and its binding as the chart renders them for a 1.36+ cluster with
    ``finalizerPolicy.enabled``; bound to ``namespaces`` if any (``watch.namespaces``), else to
    every namespace."""
    watch = (["--set", "watch.allNamespaces=false",
              "--set", f"watch.namespaces={{{','.join(namespaces)}}}"] if namespaces else [])
    rendered = subprocess.run(
        [str(helm), "template", release, str(REPO / "helm" / "flowreg"), "--api-versions",
         MAP_API, "--show-only", "templates/finalizer-policy.yaml",
         "--set", "finalizerPolicy.enabled=true", *watch],
        capture_output=True, text=True, check=True, timeout=120)
    return [d for d in yaml.safe_load_all(rendered.stdout) if d]


def dry_run_finalizers(api: client.ApiClient, namespace: str) -> list[str]:
    """The finalizers a FlowRegistry created in ``namespace`` now would get (a dry run)."""
    created = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL,
        registry_doc(make_flows(1), name="probe", namespace=namespace), dry_run="All")
    return list(created["metadata"].get("finalizers") or [])


def install(api: client.ApiClient, helm: Path, release: str, probe_namespace: str,
            namespaces: Sequence[str] = (), timeout: float = 30.0) -> list[dict[str, Any]]:
    """Apply the policy; return once a registry created in ``probe_namespace`` gets the
    finalizer (the apiserver takes a new policy up from its informer, not at once)."""
    from flowreg.controller.handlers import FINALIZER

    docs = render(helm, release, namespaces)
    apply_documents(api, docs)
    deadline = time.monotonic() + scaled(timeout)
    while FINALIZER not in dry_run_finalizers(api, probe_namespace):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the finalizer policy took no effect in {timeout} s")
        time.sleep(0.2)
    return docs


def remove(api: client.ApiClient, docs: Sequence[dict[str, Any]]) -> None:
    """Delete what ``install`` applied."""
    admission = client.AdmissionregistrationV1Api(api)
    for doc in docs:
        if doc["kind"] == "MutatingAdmissionPolicyBinding":
            admission.delete_mutating_admission_policy_binding(doc["metadata"]["name"])
        else:
            admission.delete_mutating_admission_policy(doc["metadata"]["name"])
