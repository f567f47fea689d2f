"""The public Python API, used only through the names ``flowreg`` exports."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
import yaml

import flowreg
from tests.support.builders import EXAMPLE, REPO

EXPECTED = {"Checkpoint", "CollectionSettings", "DeletionGuard", "EmbedderUnavailable", "Flow",
            "FlowregError",
            "InvalidSpec", "Registry", "ScoredFlow", "StoreIncompatible", "StoreUnavailable",
            "SyncReport", "__version__", "export_registry", "latest_checkpoint",
            "plan_registry", "query_flows", "sync_registry", "sync_registry_blocking"}


def finance_registry() -> flowreg.Registry:
    """examples/finance-bot.yaml, defined in Python."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    flows = [flowreg.Flow(f["name"], f["description"], f.get("examples", []),
                          f.get("conditions", []), f.get("blueprint"))
             for f in doc["spec"]["flows"]]
    return flowreg.Registry(doc["spec"]["agentId"], flows, name=doc["metadata"]["name"],
                            namespace=doc["metadata"]["namespace"])


def test_the_public_surface_is_exactly_all():
    assert set(flowreg.__all__) == EXPECTED
    for name in flowreg.__all__:
        assert getattr(flowreg, name) is not None
    with pytest.raises(AttributeError, match=r"no attribute 'SyncEngine'.*public API is"):
        flowreg.SyncEngine  # noqa: B018


def test_importing_flowreg_loads_no_store_client():
    code = "import sys, flowreg; print(sorted(m for m in ('qdrant_client', 'qdrant_edge', " \
           "'pydantic', 'kopf') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_python_checksums_equal_the_manifests():
    doc = yaml.safe_load(EXAMPLE.read_text())
    declared = {f["name"]: f["checksum"] for f in doc["spec"]["flows"]}
    written = {f["name"]: f["checksum"]
               for f in finance_registry().to_manifest()["spec"]["flows"]}
    assert written == declared


def test_sync_reports_like_the_cli_and_a_second_sync_writes_nothing(tmp_path):
    store = str(tmp_path / "q")
    first = flowreg.sync_registry_blocking(finance_registry(), store=store)
    assert isinstance(first, flowreg.SyncReport)
    assert len(first.created) == 6 and first.store_writes == 2  # one batch, then the digest
    assert first.summary().startswith("6 change(s), 0 unchanged (CREATE check_balance")
    again = flowreg.sync_registry_blocking(finance_registry(), store=store)
    assert again.change_count == 0 and again.store_writes == 0 and again.embedded_texts == 0


async def test_plan_writes_nothing_and_export_reads_back_the_registry(tmp_path):
    store = str(tmp_path / "q")
    planned = await flowreg.plan_registry(finance_registry(), store=store)
    assert planned.dry_run and len(planned.created) == 6
    await flowreg.sync_registry(finance_registry(), store=store)
    back = await flowreg.export_registry("finance_bot_v1", store=store)
    assert {f.name for f in back.flows} == {f.name for f in finance_registry().flows}
    assert {f.content_checksum for f in back.flows} == \
        {f.content_checksum for f in finance_registry().flows}


def test_a_python_registry_moves_to_gitops_without_re_embedding(tmp_path):
    store = tmp_path / "q"
    flowreg.sync_registry_blocking(finance_registry(), store=str(store))
    manifest = tmp_path / "registry.yaml"
    manifest.write_text(finance_registry().to_yaml(), encoding="utf-8")
    run = [sys.executable, "-m", "flowreg.cli.main"]
    assert subprocess.run([*run, "validate", "-f", str(manifest)]).returncode == 0
    applied = subprocess.run([*run, "apply", "-f", str(manifest), "--store", str(store), "-o",
                              "json", "--progress", "never"], capture_output=True, text=True)
    assert applied.returncode == 0, applied.stderr
    report = json.loads(applied.stdout)
    assert report["changes"] == 0 and report["store_writes"] == 0
    assert report["embedded_texts"] == 0


def test_invalid_flows_are_refused_before_any_write(tmp_path):
    bad = flowreg.Registry("agent_1", [flowreg.Flow("Not A Name", "x"),
                                       flowreg.Flow("ok", "y", blueprint={"version": 1,
                                                                          "steps": []})])
    with pytest.raises(flowreg.InvalidSpec) as err:
        flowreg.sync_registry_blocking(bad, store=str(tmp_path / "q"))
    assert "Not A Name" in str(err.value) and "blueprint" in str(err.value)
    assert not (tmp_path / "q").exists() or not any((tmp_path / "q").iterdir())


async def test_query_selects_by_meaning_with_the_semantic_embedder(tmp_path):
    store = str(tmp_path / "q")
    await flowreg.sync_registry(finance_registry(), store=store, embedder="wordllama")
    hits = await flowreg.query_flows("finance_bot_v1", "someone stole my purse", store=store,
                               embedder="wordllama", limit=3)
    assert hits[0].payload["name"] == "freeze_card"
    assert all(isinstance(h, flowreg.ScoredFlow) for h in hits)
    with pytest.raises(flowreg.InvalidSpec, match="embedded with wordllama"):
        await flowreg.query_flows("finance_bot_v1", "x", store=store, embedder="hashing")
    with pytest.raises(flowreg.InvalidSpec, match="has no flows"):
        await flowreg.query_flows("nobody", "x", store=store, embedder="wordllama")


def test_latest_checkpoint_of_a_run(tmp_path):
    history = tmp_path / "history.db"
    report = flowreg.sync_registry_blocking(finance_registry(), store=str(tmp_path / "q"),
                                   history=history)
    checkpoint = flowreg.latest_checkpoint(history)
    assert isinstance(checkpoint, flowreg.Checkpoint)
    assert checkpoint.run_id == report.run_id and checkpoint.done == checkpoint.total == 6


def test_the_example_runs(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "examples" / "python_api.py")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "2 change(s)" in result.stdout and "reset_password" in result.stdout


def test_query_cli_prints_scores_and_refuses_another_embedder(tmp_path):
    store = str(tmp_path / "q")
    asyncio.run(flowreg.sync_registry(finance_registry(), store=store, embedder="wordllama"))
    run = [sys.executable, "-m", "flowreg.cli.main", "query", "--store", store,
           "--agent", "finance_bot_v1"]
    ok = subprocess.run([*run, "how much money do I have", "--embedder", "wordllama", "-k",
                         "2", "-o", "json"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    flows = json.loads(ok.stdout)["flows"]
    assert [f["rank"] for f in flows] == [1, 2] and flows[0]["name"] == "check_balance"
    refused = subprocess.run([*run, "x", "--embedder", "hashing"], capture_output=True,
                             text=True)
    assert refused.returncode == 3 and "Traceback" not in refused.stderr
    assert "embedded with wordllama" in refused.stderr
