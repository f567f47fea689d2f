"""The test control plane is a real apiserver: it validates, versions and authorizes for real."""

from __future__ import annotations

import json

import pytest
from kubernetes import client, config

from tests.support.controlplane import apply_documents

GROUP = "smoke.flowreg.dev"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP, "scope": "Namespaced",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget",
                  "listKind": "WidgetList"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {
                    "size": {"type": "integer", "minimum": 1},
                    "parts": {"type": "array", "x-kubernetes-list-type": "map",
                              "x-kubernetes-list-map-keys": ["name"],
                              "items": {"type": "object", "required": ["name"],
                                        "properties": {"name": {"type": "string"},
                                                       "count": {"type": "integer"}}}}}},
                "status": {"type": "object", "properties": {
                    "phase": {"type": "string"}}}}}},
        }],
    },
}


@pytest.fixture(scope="module")
def widgets(kube_api):
    apply_documents(kube_api, [CRD])
    return client.CustomObjectsApi(kube_api)


@pytest.fixture
def namespace(namespace_factory):
    return namespace_factory("smoke")


def causes(err: client.ApiException) -> list[tuple[str, str, str]]:
    """(reason, field, message) of each cause in the apiserver's Status answer."""
    status = json.loads(err.body)
    return [(c.get("reason"), c.get("field"), c.get("message"))
            for c in status["details"]["causes"]]


def widget(name: str, **spec) -> dict:
    return {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": name},
            "spec": spec}


def test_apiserver_rejects_a_duplicate_list_map_key(widgets, namespace):
    with pytest.raises(client.ApiException) as err:
        widgets.create_namespaced_custom_object(GROUP, "v1", namespace, "widgets", widget(
            "dup", parts=[{"name": "a"}, {"name": "a", "count": 2}]))
    assert err.value.status == 422
    assert causes(err.value) == [
        ("FieldValueDuplicate", "spec.parts[1]", 'Duplicate value: {"name":"a"}')]


def test_apiserver_rejects_a_schema_violation(widgets, namespace):
    with pytest.raises(client.ApiException) as err:
        widgets.create_namespaced_custom_object(GROUP, "v1", namespace, "widgets",
                                                widget("small", size=0))
    assert err.value.status == 422
    [(reason, field, message)] = causes(err.value)
    assert (reason, field) == ("FieldValueInvalid", "spec.size")
    assert "should be greater than or equal to 1" in message


def test_status_is_a_separate_subresource(widgets, namespace):
    created = widgets.create_namespaced_custom_object(GROUP, "v1", namespace, "widgets",
                                                      widget("w", size=2))
    assert created["metadata"]["generation"] == 1
    # A status write through the main resource is ignored...
    widgets.patch_namespaced_custom_object(GROUP, "v1", namespace, "widgets", "w",
                                           {"status": {"phase": "ignored"}})
    # ...and one through /status does not move the generation.
    patched = widgets.patch_namespaced_custom_object_status(
        GROUP, "v1", namespace, "widgets", "w", {"status": {"phase": "Ready"}})
    assert patched["status"] == {"phase": "Ready"}
    assert patched["metadata"]["generation"] == 1
    bumped = widgets.patch_namespaced_custom_object(GROUP, "v1", namespace, "widgets", "w",
                                                    {"spec": {"size": 3}})
    assert bumped["metadata"]["generation"] == 2


def test_service_account_tokens_and_rbac(kube_api, namespace, service_account_kubeconfig):
    rbac = client.RbacAuthorizationV1Api(kube_api)
    rbac.create_namespaced_role(namespace, client.V1Role(
        metadata=client.V1ObjectMeta(name="read-configmaps"),
        rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"],
                                   verbs=["get", "list"])]))
    rbac.create_namespaced_role_binding(namespace, client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="read-configmaps"),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role",
                                  name="read-configmaps"),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader",
                                       namespace=namespace)]))
    kubeconfig = service_account_kubeconfig(namespace, "reader")
    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        core = client.CoreV1Api(api)
        assert core.list_namespaced_config_map(namespace).items is not None
        with pytest.raises(client.ApiException) as err:
            core.list_namespaced_secret(namespace)
        assert err.value.status == 403
        assert f"system:serviceaccount:{namespace}:reader" in err.value.body
        with pytest.raises(client.ApiException) as err:
            core.create_namespaced_config_map(namespace, client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name="nope")))
        assert err.value.status == 403
    finally:
        api.close()
