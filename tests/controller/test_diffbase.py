"""What kopf keeps about each object, in the operator's memory and not on the object: the diff
base (kopf's own essence of the object, ``spec.flows`` replaced by their digest) and each
handler's progress, both by object uid. A handled change costs the apiserver no PATCH."""

from __future__ import annotations

import copy

import kopf

from flowreg.checksum import sha256_of
from flowreg.controller.handlers import PREFIX, MemoryDiffBase, MemoryProgress

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
    ours = MemoryDiffBase().build(body=body)
    stock = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX).build(body=body)
    expected = copy.deepcopy(dict(stock))
    del expected["spec"]["flows"]
    expected["spec"]["flowsDigest"] = sha256_of(FLOWS)
    assert ours == expected
    assert ours["metadata"] == {"labels": {"team": "a"}, "annotations": {"note": "kept"}}
    assert dict(body) == BODY  # the object itself is left as it was


def test_a_change_of_one_flow_changes_the_essence_and_metadata_churn_does_not():
    storage = MemoryDiffBase()
    before = storage.build(body=kopf.Body(copy.deepcopy(BODY)))
    churned = copy.deepcopy(BODY)
    churned["metadata"]["resourceVersion"] = "78"
    churned["metadata"]["managedFields"].append({"manager": "flowreg"})
    churned["status"] = {"observedGeneration": 4}
    assert storage.build(body=kopf.Body(churned)) == before
    edited = copy.deepcopy(BODY)
    edited["spec"]["flows"][1]["description"] = "do something else"
    assert storage.build(body=kopf.Body(edited)) != before


def test_the_essence_is_kept_by_uid_and_written_nowhere():
    storage = MemoryDiffBase()
    body = kopf.Body(copy.deepcopy(BODY))
    assert storage.fetch(body=body) is None  # a new object, or an operator just started
    patch = kopf.Patch()
    storage.store(body=body, patch=patch, essence=storage.build(body=body))
    assert not patch  # nothing for kopf to PATCH
    assert storage.fetch(body=body) == storage.build(body=body)
    other = copy.deepcopy(BODY)
    other["metadata"]["uid"] = "u-2"
    assert storage.fetch(body=kopf.Body(other)) is None
    storage.forget(body)
    assert storage.fetch(body=body) is None


def test_a_handlers_progress_is_kept_by_uid_and_written_nowhere():
    storage = MemoryProgress(prefix=PREFIX)
    body = kopf.Body(copy.deepcopy(BODY))
    patch = kopf.Patch()
    storage.store(key="on_change", record={"started": "t", "retries": 1}, body=body,
                  patch=patch)
    assert storage.fetch(key="on_change", body=body) == {"started": "t", "retries": 1}
    other = copy.deepcopy(BODY)
    other["metadata"]["uid"] = "u-2"
    assert storage.fetch(key="on_change", body=kopf.Body(other)) is None
    storage.purge(key="on_change", body=body, patch=patch)
    assert storage.fetch(key="on_change", body=body) is None
    assert not patch
