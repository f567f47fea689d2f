"""The diff base kopf keeps in the object's annotation: kopf's own essence of the object, with
``spec.flows`` replaced by their digest (a 2,000-flow spec would not fit in an annotation)."""

from __future__ import annotations

import copy

import kopf

from flowreg.checksum import sha256_of
from flowreg.controller.handlers import PREFIX, DigestDiffBaseStorage

FLOWS = [{"name": f"flow_{i}", "description": f"do {i}"} for i in range(3)]
BODY = {
    "apiVersion": "flowreg.dev/v1alpha1", "kind": "FlowRegistry",
    "metadata": {"name": "r", "namespace": "ns", "uid": "u-1", "generation": 4,
                 "resourceVersion": "77", "labels": {"team": "a"},
                 "annotations": {"note": "kept",
                                 "kubectl.kubernetes.io/last-applied-configuration": "{}"},
                 "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]},
    "spec": {"agentId": "agent", "flows": FLOWS, "interval": "10m"},
    "status": {"observedGeneration": 3},
}


def test_the_essence_is_kopfs_own_with_the_flows_as_a_digest():
    body = kopf.Body(copy.deepcopy(BODY))
    ours = DigestDiffBaseStorage(prefix=PREFIX, key="last-handled-configuration").build(
        body=body)
    stock = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX).build(body=body)
    expected = copy.deepcopy(dict(stock))
    del expected["spec"]["flows"]
    expected["spec"]["flowsDigest"] = sha256_of(FLOWS)
    assert ours == expected
    assert ours["metadata"] == {"labels": {"team": "a"}, "annotations": {"note": "kept"}}
    assert dict(body) == BODY  # the object itself is left as it was


def test_a_change_of_one_flow_changes_the_essence_and_metadata_churn_does_not():
    storage = DigestDiffBaseStorage(prefix=PREFIX, key="last-handled-configuration")
    before = storage.build(body=kopf.Body(copy.deepcopy(BODY)))
    churned = copy.deepcopy(BODY)
    churned["metadata"]["resourceVersion"] = "78"
    churned["metadata"]["managedFields"].append({"manager": "flowreg"})
    churned["status"] = {"observedGeneration": 4}
    assert storage.build(body=kopf.Body(churned)) == before
    edited = copy.deepcopy(BODY)
    edited["spec"]["flows"][1]["description"] = "do something else"
    assert storage.build(body=kopf.Body(edited)) != before
