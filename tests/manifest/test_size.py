"""A registry too large for a cluster is flagged before anyone applies it, with the remedy."""

from __future__ import annotations

import json
import subprocess
import sys

from flowreg.size import CLUSTER_BUDGET
from tests.support.builders import make_flows, registry_doc


def flows(n: int, words: int) -> list[dict]:
    out = make_flows(n)
    for f in out:
        f["description"] = (f["description"] + " " + "careful polite answer " * words)[:4000]
    return out


def validate(path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowreg.cli.main", "validate", "-f", str(path),
                           "-o", "json"], capture_output=True, text=True, timeout=120)


def test_a_registry_over_the_cluster_budget_is_flagged_with_how_to_split_it(write_manifest):
    path = write_manifest(registry_doc(flows(1500, 35)))
    result = validate(path)
    assert result.returncode == 0, result.stderr  # valid: the CLI's stores take it
    assert json.loads(result.stdout)["valid"] is True
    warning = result.stderr
    assert "warning:" in warning and str(path) in warning and "default/bot" in warning
    assert f"{CLUSTER_BUDGET:,}" in warning and "Split it into 2 or more" in warning
    assert "same agentId" in warning


def test_a_registry_within_the_budget_gets_no_warning(write_manifest):
    result = validate(write_manifest(registry_doc(flows(200, 35))))
    assert result.returncode == 0 and "warning" not in result.stderr


def test_manifest_bytes_is_the_size_of_the_manifest_as_written():
    """Counted without copying each flow into a manifest: the same bytes as the manifest."""
    import orjson

    from flowreg.flow import DeclaredFlows, Flow
    from flowreg.size import manifest_bytes

    flows = (Flow("a", "does a", ("ex 1", "ex 2"), ("signed in",),
                  {"version": 1, "steps": [{"id": "s", "handler": "h.s", "next": None}]}),
             Flow("b", "does b ünïcode"), Flow("c", "", (), ("x",), {"version": 1, "steps": []}))
    registry = DeclaredFlows("agent", "ns/name", flows)
    doc = {"apiVersion": "flowreg.dev/v1alpha1", "kind": "FlowRegistry",
           "metadata": {"name": "name", "namespace": "ns"},
           "spec": {"agentId": "agent", "flows": [f.to_manifest() for f in flows]}}
    assert manifest_bytes(registry, "name", "ns") == len(orjson.dumps(doc))
