"""The FlowRegistry operator end to end: real kube-apiserver + etcd, real qdrant-client.

One operator runs in-process for the module (watching ``flowreg-e2e-*`` namespaces); each test
gets its own namespace and agent id. The crash test runs ``flowreg run`` as a child process and
SIGKILLs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import yaml
from kubernetes import client

from flowreg.controller.schedule import SMALL_SHARE
from flowreg.schema import GROUP, PLURAL, VERSION
from flowreg.store import FlowStore, PointWrite, open_store
from tests.support.builders import EXAMPLE, make_flows
from tests.support.controlplane import scaled
from tests.support.embedding_server import EmbeddingServer
from tests.support.operator_harness import (
    InProcessOperator,
    OperatorProcess,
    big_flows,
    condition,
    create,
    delete_and_wait_gone,
    events_for,
    get_registry,
    ready_at_generation,
    registry,
    wait_for,
    wait_ready,
    wait_watching,
    write_config,
)
from tests.support.stores import points_held
from tests.support.timings import record_timing

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def operator(crd_installed, kube_api, kubeconfig_path, tmp_path_factory):
    work = tmp_path_factory.mktemp("operator")
    config = write_config(work / "config.yaml")
    text = yaml.safe_load(config.read_text())
    text["stores"]["disk"] = {"location": str(work / "disk-store")}
    config.write_text(yaml.safe_dump(text))
    with InProcessOperator(kubeconfig_path, config, "flowreg-e2e-*") as op:
        op.work = work
        wait_watching(kube_api, "flowreg-e2e")
        yield op


@pytest.fixture
def agent() -> str:
    return f"agent_{uuid.uuid4().hex[:8]}"


def kubectl(kubectl_path, kubeconfig_path, *args: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(kubectl_path), "--kubeconfig", str(kubeconfig_path), *args],
                            input=stdin, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
    return result


@pytest.fixture
def kctl(kubectl_path, kubeconfig_path):
    def run(*args: str, stdin: str | None = None, check: bool = True):
        return kubectl(kubectl_path, kubeconfig_path, *args, stdin=stdin, check=check)
    return run


def patch_spec(kube_api, namespace: str, name: str, spec: dict[str, Any]) -> None:
    client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": spec})


def example(namespace: str, agent: str) -> dict[str, Any]:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["agentId"] = agent
    doc["spec"]["interval"] = "10s"  # the CRD's minimum
    return doc


def test_kubectl_apply_then_wait_ready_and_qdrant_holds_exactly_the_flows(
        operator, kube_api, kctl, namespace, agent):
    doc = example(namespace, agent)
    started = time.monotonic()
    kctl("apply", "-f", "-", stdin=yaml.safe_dump(doc))
    kctl("wait", "--for=condition=Ready", f"flowregistry/{doc['metadata']['name']}",
         "-n", namespace, f"--timeout={scaled(60):.0f}s")
    record_timing("apply->Ready, 6 flows", time.monotonic() - started)
    held = operator.flows(agent)
    declared = {f["name"]: f for f in doc["spec"]["flows"]}
    assert set(held) == set(declared)
    for name, (flow, owner) in held.items():
        assert flow.checksum == declared[name]["checksum"]
        assert owner == f"{namespace}/finance-bot"
    obj = get_registry(kube_api, namespace, "finance-bot")
    assert obj["status"]["lastSync"]["created"] == 6
    assert obj["status"]["flowCount"] == 6
    assert "Reconciling" not in {c["type"] for c in obj["status"]["conditions"]}
    listed = kctl("get", "flowregistries", "-n", namespace).stdout
    assert "finance_bot_v1" not in listed and agent in listed and "True" in listed
    synced = [e for e in events_for(kube_api, namespace, "finance-bot") if e.reason == "Synced"]
    assert synced and "6 change(s)" in synced[0].message


def test_changing_one_flow_updates_exactly_one_and_embeds_one(
        operator, kube_api, kctl, namespace, agent):
    doc = example(namespace, agent)
    kctl("apply", "-f", "-", stdin=yaml.safe_dump(doc))
    wait_ready(kube_api, namespace, "finance-bot")
    writes0, texts0 = operator.stats()
    changed = copy.deepcopy(doc)
    changed["spec"]["flows"][1]["examples"].append("Wire 20 dollars to Bob")
    changed["spec"]["flows"][1].pop("checksum")
    kctl("apply", "-f", "-", stdin=yaml.safe_dump(changed))
    obj = wait_for(kube_api, namespace, "finance-bot",
                   lambda o: o["metadata"]["generation"] == 2 and ready_at_generation(o))
    assert obj["status"]["lastSync"]["updated"] == 1
    assert obj["status"]["lastSync"]["names"]["updated"] == ["process_payment"]
    assert obj["status"]["lastSync"]["embeddedTexts"] == 1
    writes1, texts1 = operator.stats()
    # one batch, between clearing the registry's digest and writing the new one
    assert (writes1 - writes0, texts1 - texts0) == (3, 1)


def test_unchanged_registry_resyncs_with_zero_writes_and_no_status_churn(
        operator, kube_api, namespace, agent):
    create(kube_api, registry(namespace, "quiet", agent, make_flows(20), interval="10s"))
    obj = wait_ready(kube_api, namespace, "quiet")
    writes0, texts0 = operator.stats()
    version = obj["metadata"]["resourceVersion"]
    time.sleep(12)  # a drift check is due 10s (the CRD's minimum interval) after the sync
    assert operator.stats() == (writes0, texts0)
    assert get_registry(kube_api, namespace, "quiet")["metadata"]["resourceVersion"] == version


def test_removed_flow_is_deleted_unless_prune_is_off(operator, kube_api, namespace, agent):
    create(kube_api, registry(namespace, "pruned", agent, make_flows(4)))
    wait_ready(kube_api, namespace, "pruned")
    patch_spec(kube_api, namespace, "pruned", {"flows": make_flows(3)})
    obj = wait_for(kube_api, namespace, "pruned",
                   lambda o: o["metadata"]["generation"] == 2 and ready_at_generation(o))
    assert obj["status"]["lastSync"]["names"]["deleted"] == ["flow_00003"]
    assert set(operator.flows(agent)) == {f"flow_{i:05d}" for i in range(3)}

    patch_spec(kube_api, namespace, "pruned", {"prune": False, "flows": make_flows(2)})
    obj = wait_for(kube_api, namespace, "pruned",
                   lambda o: o["metadata"]["generation"] == 3 and ready_at_generation(o))
    assert "kept" in condition(obj, "Ready")["message"]
    assert set(operator.flows(agent)) == {f"flow_{i:05d}" for i in range(3)}


def test_out_of_band_changes_in_qdrant_are_repaired(operator, kube_api, namespace, agent):
    create(kube_api, registry(namespace, "drift", agent, make_flows(5), interval="10s"))
    wait_ready(kube_api, namespace, "drift")
    from flowreg.flow import point_id

    async def tamper(store: FlowStore) -> None:
        tampered = point_id(agent, "flow_00002")
        payload = (await store.payloads([tampered]))[tampered]
        await store.write([PointWrite(tampered, {**payload, "description": "tampered"})],
                          [point_id(agent, "flow_00001")])

    operator.store_call(tamper)
    deadline = time.monotonic() + scaled(30)
    while time.monotonic() < deadline:
        held = operator.flows(agent)
        if "flow_00001" in held and held["flow_00002"][0].description != "tampered":
            break
        time.sleep(0.3)
    held = operator.flows(agent)
    assert set(held) == {f"flow_{i:05d}" for i in range(5)}
    assert held["flow_00002"][0].description == "Handle request kind 2"
    deadline = time.monotonic() + scaled(15)  # kopf posts events in the background
    while time.monotonic() < deadline:
        repaired = [e for e in events_for(kube_api, namespace, "drift")
                    if e.reason == "DriftRepaired"]
        if repaired:
            break
        time.sleep(0.3)
    assert repaired, [e.reason for e in events_for(kube_api, namespace, "drift")]
    assert "UPDATE flow_00002" in repaired[0].message or "CREATE flow_00001" in \
        repaired[0].message


@pytest.mark.parametrize(("policy", "left"), [("Delete", 0), ("Orphan", 3)])
def test_deletion_policy(operator, kube_api, namespace, agent, policy, left):
    create(kube_api, registry(namespace, "gone", agent, make_flows(3), deletionPolicy=policy))
    wait_ready(kube_api, namespace, "gone")
    assert len(operator.flows(agent)) == 3
    assert delete_and_wait_gone(kube_api, namespace, "gone"), "not finalized"
    assert len(operator.flows(agent)) == left


def test_two_registries_for_one_agent_conflict_and_nothing_is_lost(
        operator, kube_api, namespace, agent):
    create(kube_api, registry(namespace, "first", agent, make_flows(3)))
    wait_ready(kube_api, namespace, "first")
    before = operator.flows(agent)
    second = make_flows(4, salt="v2")
    create(kube_api, registry(namespace, "second", agent, second))
    obj = wait_ready(kube_api, namespace, "second", reason="Conflict")
    ready = condition(obj, "Ready")
    assert ready["status"] == "False" and f"owned by {namespace}/first" in ready["message"]
    assert obj["status"]["conflicts"][0]["owner"] == f"{namespace}/first"
    after = operator.flows(agent)
    for name in before:
        assert after[name] == before[name]
    assert after["flow_00003"][1] == f"{namespace}/second"
    assert "Conflict" in [e.reason for e in events_for(kube_api, namespace, "second")]


def test_apiserver_rejects_duplicate_names_and_schema_violations(kctl, crd_installed,
                                                                  namespace, agent):
    flows = make_flows(2)
    flows[1]["name"] = flows[0]["name"]
    result = kctl("apply", "-f", "-", check=False,
                  stdin=yaml.safe_dump(registry(namespace, "dup", agent, flows)))
    assert result.returncode != 0 and "Duplicate value" in result.stderr
    flows = make_flows(1)
    flows[0]["checksum"] = "sha256:abc"
    result = kctl("apply", "-f", "-", check=False,
                  stdin=yaml.safe_dump(registry(namespace, "bad", agent, flows)))
    assert result.returncode != 0 and "spec.flows[0].checksum" in result.stderr


@pytest.mark.parametrize("interval", ["0s", "9s"])
def test_apiserver_and_cli_refuse_an_interval_under_the_minimum(kctl, crd_installed, namespace,
                                                                agent, interval, tmp_path):
    doc = registry(namespace, "often", agent, make_flows(1), interval=interval)
    result = kctl("apply", "-f", "-", check=False, stdin=yaml.safe_dump(doc))
    assert result.returncode != 0 and "interval must be at least 10s" in result.stderr
    path = tmp_path / "often.yaml"
    path.write_text(yaml.safe_dump(doc))
    offline = subprocess.run([sys.executable, "-m", "flowreg.cli.main", "validate", "-f",
                              str(path)], capture_output=True, text=True, timeout=120)
    assert offline.returncode == 3 and "interval must be at least 10s" in offline.stderr


def test_agent_id_is_immutable(operator, kube_api, namespace, agent):
    create(kube_api, registry(namespace, "fixed", agent, make_flows(1)))
    with pytest.raises(client.ApiException) as err:
        patch_spec(kube_api, namespace, "fixed", {"agentId": "someone_else"})
    assert err.value.status == 422 and "agentId is immutable" in err.value.body


def test_checksum_mismatch_is_invalid_spec_and_writes_nothing(operator, kube_api,
                                                              namespace, agent):
    flows = make_flows(3)
    flows[1]["checksum"] = "sha256:" + "b" * 64
    create(kube_api, registry(namespace, "wrong", agent, flows))
    obj = wait_ready(kube_api, namespace, "wrong", reason="InvalidSpec")
    assert condition(obj, "Stalled")["status"] == "True"
    assert 'flow "flow_00001"' in condition(obj, "Ready")["message"]
    assert operator.flows(agent) == {}
    assert "InvalidSpec" in [e.reason for e in events_for(kube_api, namespace, "wrong")]


def test_store_down_then_up_recovers_by_itself(operator, kube_api, namespace, agent):
    holder = open_store(str(operator.work / "disk-store"))  # holds the embedded store
    asyncio.run(holder.ensure_collection(384))
    try:
        create(kube_api, registry(namespace, "patient", agent, make_flows(3), store="disk"))
        obj = wait_ready(kube_api, namespace, "patient", reason="StoreUnavailable")
        assert condition(obj, "Reconciling")["status"] == "True"
        assert "in use by another process" in obj["status"]["lastError"]
    finally:
        asyncio.run(holder.close())
    obj = wait_ready(kube_api, namespace, "patient", timeout=60)
    assert obj["status"]["lastSync"]["created"] == 3 and "lastError" not in obj["status"]
    assert {"Reconciling", "Stalled"}.isdisjoint(c["type"] for c in obj["status"]["conditions"])


def test_suspend_is_honoured(operator, kube_api, namespace, agent):
    create(kube_api, registry(namespace, "paused", agent, make_flows(2), suspend=True))
    wait_ready(kube_api, namespace, "paused", reason="Suspended")
    time.sleep(2)
    assert operator.flows(agent) == {}
    patch_spec(kube_api, namespace, "paused", {"suspend": False})
    wait_ready(kube_api, namespace, "paused")
    assert len(operator.flows(agent)) == 2


def test_a_two_thousand_flow_registry_reconciles(operator, kube_api, namespace, agent):
    obj = registry(namespace, "huge", agent, big_flows(2000))
    size = len(yaml.safe_dump(obj))
    assert size > 900_000
    started = time.monotonic()
    create(kube_api, obj)
    obj = wait_ready(kube_api, namespace, "huge", timeout=180)
    record_timing("apply->Ready, 2000 flows", time.monotonic() - started)
    assert obj["status"]["lastSync"]["created"] == 2000
    assert len(operator.flows(agent)) == 2000
    annotations = obj["metadata"].get("annotations") or {}
    assert sum(len(v) for v in annotations.values()) < 10_000
    assert not [k for k in annotations if k.startswith("flowreg.dev/")]  # kopf's state in memory
    assert len(yaml.safe_dump(obj["status"])) < 4096


def test_a_burst_of_registries_is_synced_once_each_with_one_status_write_and_bounded_syncs(
        operator, kube_api, namespace):
    """Forty registries created at once: each one synced once, Ready after one status write
    (a quick sync writes its outcome alone), never more syncs at once than the queue's workers
    (four times concurrentSyncs: the registries are small)."""
    reconciler = operator.memo["reconciler"]
    queue = operator.memo["queue"]
    writes: dict[str, int] = {}
    syncs: dict[str, int] = {}
    running = [0, 0]  # now, most
    patch, reconcile = reconciler.sink.patch_status, reconciler.reconcile

    async def counted_patch(body, status):
        if body["metadata"]["namespace"] == namespace:
            writes[body["metadata"]["name"]] = writes.get(body["metadata"]["name"], 0) + 1
        await patch(body, status)

    async def counted_reconcile(body, *, trigger):
        if body["metadata"]["namespace"] == namespace:
            syncs[body["metadata"]["name"]] = syncs.get(body["metadata"]["name"], 0) + 1
        running[0] += 1
        running[1] = max(running)
        try:
            return await reconcile(body, trigger=trigger)
        finally:
            running[0] -= 1

    reconciler.sink.patch_status, reconciler.reconcile = counted_patch, counted_reconcile
    names = [f"burst-{i:02d}" for i in range(40)]
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: create(kube_api, registry(
                namespace, names[i], f"burst_{namespace[-8:]}_{i}", make_flows(5))),
                range(len(names))))
        for name in names:
            wait_ready(kube_api, namespace, name)
        time.sleep(1)  # any second write would land now
    finally:
        reconciler.sink.patch_status, reconciler.reconcile = patch, reconcile
    assert syncs == dict.fromkeys(names, 1)
    assert writes == dict.fromkeys(names, 1)
    assert 1 <= running[1] <= queue.workers == SMALL_SHARE * operator.config.concurrent_syncs


@pytest.mark.slow
def test_operator_killed_mid_sync_converges_without_duplicates(
        crd_installed, kube_api, kubeconfig_path, tmp_path, agent):
    namespace = f"flowreg-kill-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    store_dir = tmp_path / "store"
    # An embedding service with 0.2 s round trips: the sync of 2,000 flows (100 batches of 20)
    # is under way long enough to be seen and killed.
    embeddings = EmbeddingServer(dimension=384, latency=0.2).__enter__()
    config = write_config(tmp_path / "config.yaml", location=str(store_dir), batch_size=20)
    raw = yaml.safe_load(config.read_text())
    raw["stores"]["default"]["embedder"] = {"kind": "openai", "url": embeddings.base_url,
                                            "model": "test-model", "dimension": 384}
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    from tests.support.controlplane import free_port

    proc = OperatorProcess(kubeconfig_path, config, namespace, tmp_path / "operator.log",
                           liveness_port=free_port(), metrics_port=free_port())
    try:
        proc.start()
        proc.wait_alive()
        create(kube_api, registry(namespace, "big", agent, big_flows(2000)))
        wait_for(kube_api, namespace, "big",
                 lambda o: ((o.get("status") or {}).get("progress") or {}).get("done", 0) > 0,
                 timeout=120, what="sync under way")
        proc.kill()
        assert "lastSync" not in (get_registry(kube_api, namespace, "big").get("status") or {})

        written, _ = points_held(str(store_dir), agent)
        assert 0 < written < 2000
        proc.start()
        obj = wait_ready(kube_api, namespace, "big", timeout=180)
        metrics = proc.scrape()
        assert 'flowreg_syncs_total{result="Synced"} 1.0' in metrics
        assert f"flowreg_embedded_texts_total {float(2000 - written)}" in metrics
        proc.stop()
        log = (tmp_path / "operator.log").read_text()
        assert '"message"' in log  # structured (JSON) logs
        assert obj["status"]["lastSync"]["created"] == 2000 - written
        assert obj["status"]["lastSync"]["embeddedTexts"] == 2000 - written
        total, names = points_held(str(store_dir), agent)
        assert (total, names) == (2000, 2000)
    finally:
        proc.stop()
        embeddings.__exit__(None, None, None)
        with contextlib.suppress(client.ApiException):
            client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, "big", {"metadata": {"finalizers": None}})
        core.delete_namespace(namespace)
