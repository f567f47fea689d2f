"""GitOps for real: Flux applies a git repository of FlowRegistries and judges their health.

Everything is a real process: the control plane, Flux's source-controller and
kustomize-controller (built by hack/flux.sh), a git server on loopback (``git http-backend``),
the operator (``flowreg run``) and a Qdrant server. Each test commits to its own repository
and namespace; a GitRepository and a Kustomization (``wait: true``, ``prune: true``) point
Flux at it, and the test reads the Kustomization, the registries and Qdrant. After each commit
the test does what ``flux reconcile source git`` does (the GitRepository's
``reconcile.fluxcd.io/requestedAt``), so waits do not depend on the poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from flowreg.schema import GROUP, PLURAL, VERSION
from flowreg.store import open_store
from tests.support.controlplane import ControlPlane, scaled
from tests.support.flux import (
    KUSTOMIZATION,
    SOURCE,
    FluxControllers,
    condition,
    flux_dir,
    get,
    missing,
    request_reconcile,
    wait_flux,
)
from tests.support.git_server import GitRepo, GitServer
from tests.support.operator_harness import (
    OperatorProcess,
    get_registry,
    ready_at_generation,
    wait_watching,
)
from tests.support.processes import free_port
from tests.support.qdrant_server import QdrantServer, server_binary
from tests.support.skips import loud_skip

IN_CI = os.environ.get("CI") == "true"
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    server_binary() is None and not IN_CI,
    reason="no Qdrant server binary: run hack/qdrant.sh (hack/test.sh does)")]

PREFIX = "flowreg-gitops"
KEY_ENV = "FLOWREG_TEST_QDRANT_KEY"


# ---------------------------------------------------------------- the session's machinery

@pytest.fixture(scope="module")
def flux(control_plane: ControlPlane, kube_api: client.ApiClient) -> Iterator[FluxControllers]:
    directory = flux_dir(only=None)  # $FLOWREG_FLUX_DIR, else hack/flux.sh builds them
    if missing(directory):
        why = (f"Flux controllers missing in {directory} ({', '.join(missing(directory))}): "
               "hack/test.sh builds them unless FLOWREG_SKIP_FLUX=1")
        if IN_CI:
            pytest.fail(why)
        loud_skip(why)
    with FluxControllers(directory, control_plane.kubeconfig, kube_api) as controllers:
        yield controllers


@pytest.fixture(scope="module")
def git() -> Iterator[GitServer]:
    with GitServer() as server:
        yield server


@pytest.fixture(scope="module")
def qdrant() -> Iterator[QdrantServer]:
    binary = server_binary()
    assert binary is not None, "CI builds the Qdrant server (hack/qdrant.sh)"
    server = QdrantServer(binary).start()
    yield server
    server.remove()


@pytest.fixture(scope="module")
def operator(control_plane: ControlPlane, kube_api: client.ApiClient, crd_installed: None,
             qdrant: QdrantServer, tmp_path_factory: pytest.TempPathFactory,
             ) -> Iterator[OperatorProcess]:
    work = tmp_path_factory.mktemp("gitops-operator")
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump({
        "stores": {"default": {"location": qdrant.endpoint.url, "apiKeyEnv": KEY_ENV}},
        "driftCheckSeconds": 1.0}), encoding="utf-8")
    proc = OperatorProcess(control_plane.kubeconfig, config, f"{PREFIX}-*", work / "operator.log",
                           liveness_port=free_port(), metrics_port=free_port())
    proc.env[KEY_ENV] = qdrant.api_key
    proc.start()
    try:
        proc.wait_alive()
        wait_watching(kube_api, PREFIX)
        yield proc
    finally:
        proc.stop()


class Site:
    """One test's namespace, repository, GitRepository and flows Kustomization."""

    def __init__(self, api: client.ApiClient, flux: FluxControllers, repo: GitRepo,
                 namespace: str, qdrant: QdrantServer) -> None:
        self.api, self.flux, self.repo, self.ns, self.qdrant = api, flux, repo, namespace, qdrant
        self.agent = f"agent_{uuid.uuid4().hex[:8]}"
        self.custom = client.CustomObjectsApi(api)

    # -- the repository
    def registry(self, name: str, flows: list[dict[str, Any]], **spec: Any) -> None:
        doc = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FlowRegistry",
               "metadata": {"name": name, "namespace": self.ns},
               "spec": {"agentId": f"{self.agent}_{name}", **spec, "flows": flows}}
        self.repo.write(f"flows/{name}.yaml", yaml.safe_dump(doc, sort_keys=False))

    def commit(self, message: str) -> str:
        sha = self.repo.commit(message)
        request_reconcile(self.api, SOURCE, self.ns, "agents")
        return sha

    # -- Flux objects, created by the test as a cluster's bootstrap would
    def source(self) -> None:
        self.custom.create_namespaced_custom_object(*SOURCE[:2], self.ns, SOURCE[2], {
            "apiVersion": f"{SOURCE[0]}/{SOURCE[1]}", "kind": "GitRepository",
            "metadata": {"name": "agents", "namespace": self.ns},
            "spec": {"interval": "5s", "url": self.repo.url, "ref": {"branch": "main"}}})

    def kustomization(self, name: str, path: str, *, timeout: float = 30,
                      depends_on: str | None = None) -> None:
        spec: dict[str, Any] = {
            "interval": "10s", "path": path, "prune": True, "wait": True,
            "timeout": f"{round(scaled(timeout))}s", "retryInterval": "5s",
            "sourceRef": {"kind": "GitRepository", "name": "agents"}}
        if depends_on:
            spec["dependsOn"] = [{"name": depends_on}]
        self.custom.create_namespaced_custom_object(*KUSTOMIZATION[:2], self.ns,
                                                    KUSTOMIZATION[2], {
            "apiVersion": f"{KUSTOMIZATION[0]}/{KUSTOMIZATION[1]}", "kind": "Kustomization",
            "metadata": {"name": name, "namespace": self.ns}, "spec": spec})

    def ks(self, name: str = "flows") -> dict[str, Any]:
        return get(self.api, KUSTOMIZATION, self.ns, name)

    def wait_ks(self, predicate: Callable[[dict[str, Any]], bool], what: str,
                name: str = "flows", timeout: float = 90) -> dict[str, Any]:
        return wait_flux(self.api, KUSTOMIZATION, self.ns, name, predicate, timeout, what,
                         self.flux)

    def wait_ks_ready(self, sha: str, name: str = "flows", timeout: float = 90
                      ) -> dict[str, Any]:
        return self.wait_ks(lambda o: ks_ready_at(o, sha), f"Ready at {sha[:8]}", name,
                            timeout)

    # -- Qdrant
    def flows(self, registry: str) -> dict[str, tuple[str, str | None]]:
        """What Qdrant holds for the registry's agent: name -> (description, owner)."""

        async def read() -> list[Any]:
            store = open_store(self.qdrant.endpoint.url, api_key=self.qdrant.api_key)
            try:
                return await store.read_flows(f"{self.agent}_{registry}")
            finally:
                await store.close()

        return {flow.name: (flow.description, owner) for flow, owner in asyncio.run(read())}


def ks_ready_at(obj: dict[str, Any], sha: str) -> bool:
    ready = condition(obj)
    status = obj.get("status") or {}
    return (ready.get("status") == "True" and status.get("observedGeneration")
            == obj["metadata"]["generation"]
            and str(status.get("lastAppliedRevision", "")).endswith(sha))


def flows(names: list[str], salt: str = "") -> list[dict[str, Any]]:
    return [{"name": n, "description": f"Handle {n.replace('_', ' ')}{salt}.",
             "examples": [f"please {n.replace('_', ' ')}"]} for n in names]


@pytest.fixture
def site(kube_api: client.ApiClient, flux: FluxControllers, git: GitServer,
         qdrant: QdrantServer, operator: OperatorProcess) -> Iterator[Site]:
    """A site in a namespace the operator watches."""
    yield from _site(kube_api, flux, git, qdrant, PREFIX)


@pytest.fixture
def unwatched_site(kube_api: client.ApiClient, flux: FluxControllers, git: GitServer,
                   qdrant: QdrantServer, operator: OperatorProcess) -> Iterator[Site]:
    """A site in a namespace no operator watches (as if the operator were not installed)."""
    yield from _site(kube_api, flux, git, qdrant, "flowreg-unwatched")


def _site(kube_api: client.ApiClient, flux: FluxControllers, git: GitServer,
          qdrant: QdrantServer, prefix: str) -> Iterator[Site]:
    namespace = f"{prefix}-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    made = Site(kube_api, flux, git.repository(namespace), namespace, qdrant)
    made.source()
    try:
        yield made
    finally:
        _clean(kube_api, namespace)


def _clean(api: client.ApiClient, namespace: str) -> None:
    """Stop Flux in the namespace (suspend, then delete: no garbage collection), drop
    finalizers, delete the namespace (there is no namespace controller: it stays Terminating,
    with nothing left that any controller acts on)."""
    custom = client.CustomObjectsApi(api)
    for kind in (KUSTOMIZATION, SOURCE):
        for item in custom.list_namespaced_custom_object(*kind[:2], namespace, kind[2])["items"]:
            name = item["metadata"]["name"]
            with contextlib.suppress(client.ApiException):
                custom.patch_namespaced_custom_object(*kind[:2], namespace, kind[2], name,
                                                      {"spec": {"suspend": True}})
                custom.patch_namespaced_custom_object(*kind[:2], namespace, kind[2], name,
                                                      {"metadata": {"finalizers": None}})
                custom.delete_namespaced_custom_object(*kind[:2], namespace, kind[2], name)
    for item in custom.list_namespaced_custom_object(GROUP, VERSION, namespace,
                                                     PLURAL)["items"]:
        with contextlib.suppress(client.ApiException):
            custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                  item["metadata"]["name"],
                                                  {"metadata": {"finalizers": None}})
    client.CoreV1Api(api).delete_namespace(namespace)


def ready_time(obj: dict[str, Any]) -> str:
    return str(condition(obj).get("lastTransitionTime"))


# ---------------------------------------------------------------- the tests

def test_first_sync_kustomization_ready_only_after_both_registries(site, kube_api):
    site.registry("billing", flows(["check_balance", "pay_bill", "dispute_charge"]))
    site.registry("support", flows(["reset_password", "close_account"]))
    sha = site.commit("two registries")
    site.kustomization("flows", "./flows")

    # Watch the three objects together: the Kustomization is never Ready while a registry
    # is not Ready at its generation.
    deadline = time.monotonic() + scaled(90)
    seen_ready_first: dict[str, float] = {}
    while True:
        now = time.monotonic()
        regs = {}
        for name in ("billing", "support"):
            with contextlib.suppress(client.ApiException):
                regs[name] = get_registry(kube_api, site.ns, name)
                if ready_at_generation(regs[name]):
                    seen_ready_first.setdefault(name, now)
        ks = site.ks()
        if ks_ready_at(ks, sha):
            assert set(seen_ready_first) == {"billing", "support"}, (
                "the Kustomization is Ready while a registry is not", regs)
            break
        assert now < deadline, f"Kustomization not Ready: {ks.get('status')}"
        time.sleep(0.2)

    # The conditions' own clocks agree: each registry turned Ready no later than Flux did.
    for name in ("billing", "support"):
        reg = get_registry(kube_api, site.ns, name)
        assert ready_time(reg) <= ready_time(ks), (name, ready_time(reg), ready_time(ks))
        assert reg["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == "flows"
    healthy = condition(ks, "Healthy")
    assert healthy.get("status") == "True", ks["status"]
    inventory = {e["id"] for e in ks["status"]["inventory"]["entries"]}
    assert inventory == {f"{site.ns}_billing_{GROUP}_FlowRegistry",
                         f"{site.ns}_support_{GROUP}_FlowRegistry"}

    # Qdrant holds exactly the declared flows, each owned by its registry.
    assert site.flows("billing") == {
        n: (f"Handle {n.replace('_', ' ')}.", f"{site.ns}/billing")
        for n in ("check_balance", "pay_bill", "dispute_charge")}
    assert site.flows("support") == {
        n: (f"Handle {n.replace('_', ' ')}.", f"{site.ns}/support")
        for n in ("reset_password", "close_account")}


def test_a_registry_no_operator_has_seen_is_not_ready_for_flux(unwatched_site, kube_api):
    site = unwatched_site
    site.registry("billing", flows(["check_balance"]))
    sha = site.commit("one registry, no operator")
    site.kustomization("flows", "./flows", timeout=10)
    ks = site.wait_ks(lambda o: condition(o).get("reason") == "HealthCheckFailed"
                      and str(o["status"].get("lastAttemptedRevision", "")).endswith(sha),
                      "HealthCheckFailed")
    message = condition(ks)["message"]
    assert f"FlowRegistry/{site.ns}/billing status: 'InProgress'" in message, message
    assert "timeout waiting for" in message
    # what the apiserver returns before any status write: the CRD's default, "not observed"
    assert get_registry(kube_api, site.ns, "billing")["status"] == {"observedGeneration": 0}


def test_changed_flow_updates_exactly_that_flow(site, kube_api):
    site.registry("billing", flows(["check_balance", "pay_bill", "dispute_charge"]))
    site.registry("support", flows(["reset_password", "close_account"]))
    first = site.commit("two registries")
    site.kustomization("flows", "./flows")
    site.wait_ks_ready(first)
    support_before = get_registry(kube_api, site.ns, "support")

    changed = flows(["check_balance", "pay_bill", "dispute_charge"])
    changed[1]["description"] = "Pay one of the user's bills from a chosen account."
    site.registry("billing", changed)
    second = site.commit("pay_bill: a clearer description")
    ks = site.wait_ks_ready(second)

    billing = get_registry(kube_api, site.ns, "billing")
    assert ready_at_generation(billing) and billing["metadata"]["generation"] == 2
    last = billing["status"]["lastSync"]
    assert (last["created"], last["updated"], last["deleted"], last["skipped"]) == (0, 1, 0, 2)
    assert last["names"]["updated"] == ["pay_bill"]
    # one text embedded; writes: the digest cleared, one batch, the digest written
    assert (last["embeddedTexts"], last["storeWrites"]) == (1, 3)
    assert site.flows("billing")["pay_bill"][0] == changed[1]["description"]
    # the other registry was applied again by Flux, unchanged: same generation, no sync
    support = get_registry(kube_api, site.ns, "support")
    assert support["metadata"]["generation"] == support_before["metadata"]["generation"]
    assert support["status"]["lastSync"] == support_before["status"]["lastSync"]
    assert ks["status"]["lastAppliedRevision"] == f"main@sha1:{second}"


def test_deletion_guard_fails_the_kustomization_until_a_commit_raises_the_limit(site,
                                                                              kube_api):
    names = [f"flow_{i}" for i in range(6)]
    site.registry("billing", flows(names), deletionGuard={"maxDeletions": 2})
    first = site.commit("six flows")
    site.kustomization("flows", "./flows")
    site.wait_ks_ready(first)

    site.registry("billing", flows(names[:2]), deletionGuard={"maxDeletions": 2})
    guarded = site.commit("drop four flows")
    ks = site.wait_ks(lambda o: condition(o).get("status") == "False"
                      and condition(o).get("reason") == "HealthCheckFailed"
                      and str(o["status"].get("lastAttemptedRevision", "")).endswith(guarded),
                      "Ready False, HealthCheckFailed")
    message = condition(ks)["message"]
    assert f"FlowRegistry/{site.ns}/billing status: 'Failed'" in message, message
    # kstatus' verdict carries no message into Flux's; flowreg's own words are on the
    # registry, which the Kustomization names:
    billing = get_registry(kube_api, site.ns, "billing")
    stalled = next(c for c in billing["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "DeletionGuard"
    assert "refusing to delete 4 flow(s)" in stalled["message"]
    assert "more than the limit of 2 per sync" in stalled["message"]
    assert "spec.deletionGuard.maxDeletions" in stalled["message"]
    assert sorted(site.flows("billing")) == sorted(names)  # nothing deleted

    site.registry("billing", flows(names[:2]), deletionGuard={"maxDeletions": 4})
    raised = site.commit("approve: maxDeletions 4")
    site.wait_ks_ready(raised)
    billing = get_registry(kube_api, site.ns, "billing")
    assert ready_at_generation(billing)
    assert billing["status"]["lastSync"]["deleted"] == 4
    assert sorted(site.flows("billing")) == names[:2]


def wait_gone(kube_api: Any, namespace: str, name: str, timeout: float = 30) -> None:
    """Wait until the registry ``name`` no longer exists (its finalizer removed)."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        try:
            get_registry(kube_api, namespace, name)
        except client.ApiException as exc:
            assert exc.status == 404
            return
        assert time.monotonic() < deadline, f"{name} still exists"
        time.sleep(0.2)


def test_removed_registry_is_pruned_and_its_deletion_policy_kept(site, kube_api):
    site.registry("billing", flows(["check_balance"]))
    site.registry("legacy", flows(["old_a", "old_b"]), deletionPolicy="Delete")
    site.registry("archive", flows(["kept_a", "kept_b"]), deletionPolicy="Orphan")
    first = site.commit("three registries")
    site.kustomization("flows", "./flows")
    site.wait_ks_ready(first)
    assert set(site.flows("legacy")) == {"old_a", "old_b"}

    site.repo.remove("flows/legacy.yaml")
    site.repo.remove("flows/archive.yaml")
    second = site.commit("remove legacy and archive")
    ks = site.wait_ks_ready(second)
    # Flux deletes what it prunes and is Ready at once; the operator's finalizer removes each
    # object once its deletion policy is carried out, moments later.
    for name in ("legacy", "archive"):
        wait_gone(kube_api, site.ns, name)
    assert site.flows("legacy") == {}  # Delete: its points went with it
    assert set(site.flows("archive")) == {"kept_a", "kept_b"}  # Orphan: kept
    assert set(site.flows("billing")) == {"check_balance"}
    inventory = {e["id"] for e in ks["status"]["inventory"]["entries"]}
    assert inventory == {f"{site.ns}_billing_{GROUP}_FlowRegistry"}


def test_invalid_registry_fails_with_the_apiservers_message(site, kube_api):
    site.registry("billing", flows(["check_balance", "pay_bill"]))
    first = site.commit("one registry")
    site.kustomization("flows", "./flows")
    site.wait_ks_ready(first)
    before = get_registry(kube_api, site.ns, "billing")
    points_before = site.flows("billing")

    site.registry("billing", flows(["check_balance", "pay_bill", "refund"]))
    bad = flows(["Not A Name"])
    site.registry("broken", bad)
    invalid = site.commit("a flow name the schema refuses")
    ks = site.wait_ks(lambda o: condition(o).get("status") == "False"
                      and str(o["status"].get("lastAttemptedRevision", "")).endswith(invalid),
                      "Ready False at the invalid revision")
    ready = condition(ks)
    assert ready["reason"] == "ReconciliationFailed", ready
    assert f"FlowRegistry/{site.ns}/broken" in ready["message"]
    assert "spec.flows[0].name" in ready["message"], ready["message"]
    # Flux validated the whole revision before applying any of it
    after = get_registry(kube_api, site.ns, "billing")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert site.flows("billing") == points_before
    assert ks["status"]["lastAppliedRevision"] == f"main@sha1:{first}"


def test_depends_on_applies_the_agent_only_after_the_flows_are_ready(site, kube_api):
    site.registry("billing", flows(["check_balance", "pay_bill"]), suspend=True)
    site.repo.write("agent/agent.yaml", yaml.safe_dump({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "finance-agent", "namespace": site.ns},
        "data": {"agentId": f"{site.agent}_billing"}}))
    site.commit("flows (suspended) and the agent")
    site.kustomization("flows", "./flows", timeout=20)
    site.kustomization("agent", "./agent", depends_on="flows")
    core = client.CoreV1Api(kube_api)

    waiting = site.wait_ks(lambda o: condition(o).get("reason") == "DependencyNotReady",
                           "DependencyNotReady", name="agent")
    assert "flows" in condition(waiting)["message"]
    # a suspended registry is InProgress to kstatus: the flows are not Ready, nor the agent
    time.sleep(scaled(3))
    assert condition(site.ks()).get("status") != "True"
    with pytest.raises(client.ApiException):
        core.read_namespaced_config_map("finance-agent", site.ns)

    site.registry("billing", flows(["check_balance", "pay_bill"]))
    second = site.commit("resume the flows")
    flows_ks = site.wait_ks_ready(second, timeout=120)
    agent_ks = site.wait_ks_ready(second, name="agent", timeout=120)
    made = core.read_namespaced_config_map("finance-agent", site.ns)
    stamp = made.metadata.creation_timestamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert stamp >= ready_time(flows_ks), (stamp, ready_time(flows_ks))
    assert ready_time(agent_ks) >= ready_time(flows_ks)
    assert set(site.flows("billing")) == {"check_balance", "pay_bill"}
