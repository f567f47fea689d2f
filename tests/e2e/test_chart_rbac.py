"""The chart's RBAC is enough and no more: the operator, running with a token of the chart's
ServiceAccount, reconciles and finalizes a FlowRegistry; calls outside the grant are refused.
The chart's opt-in finalizer policy (Kubernetes 1.36+) has the apiserver add the finalizer at
creation, in the watched namespaces only, so the operator never writes the object itself."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from flowreg.controller.handlers import FINALIZER
from flowreg.schema import GROUP, PLURAL, VERSION
from tests.support import finalizer_policy as finalizer_policy_support
from tests.support.builders import make_flows, registry_doc
from tests.support.controlplane import apply_documents
from tests.support.operator_harness import (
    InProcessOperator,
    delete_and_wait_gone,
    ready_at_generation,
    wait_for,
    write_config,
)

REPO = Path(__file__).resolve().parents[2]
RELEASE_NS = "flowreg-system"
WATCHED = f"chart-e2e-{uuid.uuid4().hex[:8]}"
"""The namespace the finalizer policy is bound to (policies are cluster-wide: the other tests of
the session create registries where no operator runs, whose deletion a finalizer would block)."""


@pytest.fixture(scope="module")
def chart_installed(control_plane, kube_api):
    rendered = subprocess.run(
        [str(control_plane.helm), "template", "rel", str(REPO / "helm" / "flowreg"),
         "-n", RELEASE_NS, "--include-crds"], capture_output=True, text=True, check=True)
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    core = client.CoreV1Api(kube_api)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=RELEASE_NS)))
    except client.ApiException as exc:
        assert exc.status == 409
    wanted = {"CustomResourceDefinition", "ServiceAccount", "ClusterRole",
              "ClusterRoleBinding", "ConfigMap"}
    apply_documents(kube_api, [d for d in docs if d["kind"] in wanted])
    return docs


@pytest.fixture(scope="module")
def finalizer_policy(control_plane, kube_api) -> Iterator[str]:
    """The chart's finalizer policy as a 1.36+ cluster gets it, bound to ``WATCHED``; the name of
    a namespace it does not cover. Removed at the end of the module."""
    core = client.CoreV1Api(kube_api)
    unwatched = f"chart-unwatched-{uuid.uuid4().hex[:8]}"
    for namespace in (WATCHED, unwatched):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    docs = finalizer_policy_support.install(kube_api, control_plane.helm, "rel", WATCHED,
                                            namespaces=[WATCHED])
    try:
        yield unwatched
    finally:
        finalizer_policy_support.remove(kube_api, docs)
        for namespace in (WATCHED, unwatched):
            core.delete_namespace(namespace)


@pytest.fixture(scope="module")
def sa_kubeconfig(chart_installed, control_plane, kube_api, tmp_path_factory):
    from tests.support.controlplane import service_account_token

    token = service_account_token(kube_api, RELEASE_NS, "rel-flowreg")
    return control_plane.kubeconfig_for_token(
        token, tmp_path_factory.mktemp("sa") / "kubeconfig", user="rel-flowreg")


@pytest.mark.parametrize("by_policy", [False, True],
                         ids=["operator-adds-the-finalizer", "apiserver-adds-the-finalizer"])
def test_operator_with_the_charts_service_account_reconciles_and_finalizes(
        sa_kubeconfig, kube_api, request, tmp_path, by_policy):
    core = client.CoreV1Api(kube_api)
    if by_policy:
        request.getfixturevalue("finalizer_policy")
        namespace = WATCHED
    else:
        namespace = f"chart-e2e-{uuid.uuid4().hex[:8]}"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        request.addfinalizer(lambda: core.delete_namespace(namespace))
    agent = f"agent_{uuid.uuid4().hex[:8]}"
    crd = client.CustomObjectsApi(kube_api)
    with InProcessOperator(sa_kubeconfig, write_config(tmp_path / "c.yaml"), None) as op:
        created = crd.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                      registry_doc(make_flows(4), name="rbac",
                                                                   agent=agent,
                                                                   namespace=namespace))
        assert created["metadata"].get("finalizers") == ([FINALIZER] if by_policy else None)
        obj = wait_for(kube_api, namespace, "rbac", ready_at_generation, timeout=60)
        assert obj["metadata"]["finalizers"] == [FINALIZER]
        assert obj["status"]["lastSync"]["created"] == 4
        assert len(op.flows(agent)) == 4
        events = core.list_namespaced_event(namespace).items
        assert any(e.reason == "Synced" for e in events)
        # With the policy the operator writes the status only, nothing of the object itself
        # (no finalizer PATCH); without it, it patched the finalizer in.
        creator = created["metadata"]["managedFields"][0]["manager"]
        writers = {(m["manager"], m.get("subresource", ""))
                   for m in obj["metadata"]["managedFields"]}
        main = {m for m, sub in writers if sub == ""}
        assert (main == {creator}) if by_policy else (len(main - {creator}) == 1), writers
        assert {sub for _, sub in writers} == {"", "status"}
        assert delete_and_wait_gone(kube_api, namespace, "rbac"), \
            "the finalizer did not run with the chart's permissions"
        assert op.flows(agent) == {}


def test_the_finalizer_policy_leaves_unwatched_namespaces_alone(kube_api, finalizer_policy):
    assert finalizer_policy_support.dry_run_finalizers(kube_api, finalizer_policy) == []


@pytest.mark.parametrize("call", [
    lambda api: client.CoreV1Api(api).list_secret_for_all_namespaces(),
    lambda api: client.CoreV1Api(api).list_namespaced_secret(RELEASE_NS),
    lambda api: client.CoreV1Api(api).list_namespaced_config_map("default"),
    lambda api: client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, registry_doc(make_flows(1), namespace="default")),
    lambda api: client.CustomObjectsApi(api).delete_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "anything"),
    lambda api: client.RbacAuthorizationV1Api(api).list_cluster_role(),
], ids=["secrets-cluster-wide", "secrets-in-own-namespace", "configmaps", "create-registry",
        "delete-registry", "read-rbac"])
def test_calls_outside_the_grant_are_forbidden(sa_kubeconfig, call):
    api = config.new_client_from_config(config_file=str(sa_kubeconfig))
    try:
        with pytest.raises(client.ApiException) as err:
            call(api)
        assert err.value.status == 403
        assert "system:serviceaccount:flowreg-system:rel-flowreg" in err.value.body
    finally:
        api.close()
