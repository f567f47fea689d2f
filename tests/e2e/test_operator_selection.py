"""The selection lint in the operator, on the real apiserver: Warn, Block, the CRD's enum.

One operator runs in-process for the module, watching only this module's ``flowreg-lint-*``
namespaces (registries left by other modules' tests must not add to the embedding calls counted
here); each test gets its own namespace and agent id.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from kubernetes import client

from flowreg.schema import GROUP, PLURAL, VERSION
from tests.support.controlplane import scaled
from tests.support.operator_harness import (
    InProcessOperator,
    condition,
    create,
    events_for,
    get_registry,
    ready_at_generation,
    registry,
    wait_for,
    wait_ready,
    wait_watching,
    write_config,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def operator(crd_installed, kube_api, kubeconfig_path, tmp_path_factory):
    config = write_config(tmp_path_factory.mktemp("operator-selection") / "config.yaml")
    with InProcessOperator(kubeconfig_path, config, "flowreg-lint-*") as op:
        wait_watching(kube_api, "flowreg-lint")
        yield op


@pytest.fixture
def namespace(namespace_factory) -> str:
    return namespace_factory("flowreg-lint")


@pytest.fixture
def agent() -> str:
    return f"agent_{uuid.uuid4().hex[:8]}"


def twins() -> list[dict[str, Any]]:
    """Two flows with the same embedded text (cosine 1) and one unlike them."""
    text = {"description": "Refund a card payment the customer disputes",
            "examples": ["refund my last card payment", "I was charged twice"]}
    return [{"name": "refund", **text}, {"name": "refund_again", **text},
            {"name": "exchange_rate", "description": "Quote the euro to dollar rate",
             "examples": ["how many yen for a pound", "franc to rupee"]}]


def embedding_calls(operator: InProcessOperator) -> int:
    async def read(rec: Any) -> int:
        return (await rec.engine(rec.config.store("default"))).embedder.calls

    return int(operator.call(read))


def test_confusable_flows_warn_keep_ready_and_cost_no_embedding_call(
        operator, kube_api, namespace, agent):
    calls0, (_, texts0) = embedding_calls(operator), operator.stats()
    create(kube_api, registry(namespace, "twins", agent, twins()))
    obj = wait_ready(kube_api, namespace, "twins")
    lint = obj["status"]["selectionLint"]
    assert lint["count"] == 1 and lint["threshold"] == 0.9
    assert lint["pairs"] == [{"flows": ["refund", "refund_again"], "score": 1.0}]
    # the sync's one batch of three texts, and nothing for the lint
    assert (embedding_calls(operator) - calls0, operator.stats()[1] - texts0) == (1, 3)
    assert set(operator.flows(agent)) == {"refund", "refund_again", "exchange_rate"}
    deadline = time.monotonic() + scaled(15)  # kopf posts events in the background
    warnings: list[Any] = []
    while time.monotonic() < deadline and not warnings:
        warnings = [e for e in events_for(kube_api, namespace, "twins")
                    if e.type == "Warning" and e.reason == "ConfusableFlows"]
        time.sleep(0.3)
    assert warnings and "refund ~ refund_again (1.00)" in warnings[0].message


def test_block_keeps_ready_false_until_the_pair_is_gone(operator, kube_api, namespace, agent):
    create(kube_api, registry(namespace, "strict", agent, twins(), selectionLint="Block"))
    obj = wait_for(kube_api, namespace, "strict",
                   lambda o: (condition(o, "Ready") or {}).get("reason") == "ConfusableFlows",
                   what="Ready reason=ConfusableFlows")
    assert condition(obj, "Ready")["status"] == "False"
    assert condition(obj, "Stalled")["status"] == "True"
    assert set(operator.flows(agent)) == {"refund", "refund_again", "exchange_rate"}
    flows = twins()
    flows[1]["examples"] = ["send back the money for a cancelled flight"]
    flows[1]["description"] = "Reimburse a cancelled trip"
    client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "strict", {"spec": {"flows": flows}})
    obj = wait_for(kube_api, namespace, "strict",
                   lambda o: o["metadata"]["generation"] == 2 and ready_at_generation(o))
    assert "selectionLint" not in obj["status"]
    assert condition(obj, "Stalled") is None


def test_the_apiserver_refuses_a_mode_it_does_not_know(operator, kube_api, namespace, agent):
    with pytest.raises(client.ApiException) as refused:
        create(kube_api, registry(namespace, "typo", agent, twins(), selectionLint="Off"))
    assert refused.value.status == 422 and "selectionLint" in refused.value.body
    obj = create(kube_api, registry(namespace, "quiet", agent, twins(),
                                    selectionLint="Ignore"))
    assert obj["spec"]["selectionLint"] == "Ignore"
    assert "selectionLint" not in wait_ready(kube_api, namespace, "quiet")["status"]
    assert get_registry(kube_api, namespace, "quiet")["spec"]["flows"][0]["name"] == "refund"
