"""The operator's store as ``flowreg run`` processes see it: the store each process says it
uses, and an embedded directory that keeps the flows across a restart (the operator has no
default store; tests/cli/test_cli_hostile.py checks the refusal to start without one)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from tests.support.builders import make_flows
from tests.support.controlplane import scaled
from tests.support.operator_harness import (
    OperatorProcess,
    create,
    metric_value,
    registry,
    wait_ready,
    write_config,
)
from tests.support.processes import free_port
from tests.support.stores import points_held

pytestmark = pytest.mark.e2e


def log_messages(log: Path) -> list[tuple[str, str]]:
    """(severity, message) of each JSON log line the operator wrote (kopf's JSON format)."""
    out = []
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        out.append((str(record.get("severity") or ""),
                    str(record.get("message") or "")))
    return out


def operator_process(kubeconfig: Path, config: Path, namespace: str,
                     tmp_path: Path) -> OperatorProcess:
    return OperatorProcess(kubeconfig, config, namespace, tmp_path / "operator.log",
                           liveness_port=free_port(), metrics_port=free_port())


def wait_metric(proc: OperatorProcess, name: str, value: float, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        text = proc.scrape()
        if (metric_value(text, name) or 0.0) >= value:
            return text
        time.sleep(0.2)
    raise TimeoutError(f"{name} did not reach {value}")


def test_an_embedded_store_is_named_in_the_log_and_outlives_the_process(
        crd_installed, kube_api, kubeconfig_path, namespace_factory, tmp_path):
    namespace = namespace_factory("flowreg-store")
    agent = f"agent_{uuid.uuid4().hex[:8]}"
    store_dir = tmp_path / "store"
    config = write_config(tmp_path / "config.yaml", location=str(store_dir))
    proc = operator_process(kubeconfig_path, config, namespace, tmp_path)
    try:
        proc.start()
        proc.wait_alive()
        said = [m for _, m in log_messages(proc.log) if m.startswith("store 'default'")]
        assert said == [f"store 'default': embedded directory {store_dir}, collection "
                        "flowreg_flows"]
        create(kube_api, registry(namespace, "kept", agent, make_flows(5), interval="10s"))
        wait_ready(kube_api, namespace, "kept")
        proc.stop()
        assert points_held(str(store_dir), agent) == (5, 5)

        proc.start()  # Ready at its generation: re-synced within its interval, not at once
        proc.wait_alive()
        metrics = wait_metric(proc, "flowreg_syncs_total", 1.0)  # finds its flows:
        # nothing to write or embed
        assert metric_value(metrics, "flowreg_embedded_texts_total") in (None, 0.0)
        assert metric_value(metrics, "flowreg_flow_changes_total") in (None, 0.0)
    finally:
        proc.stop()


def test_an_explicit_memory_store_is_a_warning_in_the_log(kubeconfig_path, namespace_factory,
                                                         crd_installed, tmp_path):
    namespace = namespace_factory("flowreg-store")
    config = write_config(tmp_path / "config.yaml", location=":memory:")
    proc = operator_process(kubeconfig_path, config, namespace, tmp_path)
    try:
        proc.start()
        proc.wait_alive()
        said = [(level, m) for level, m in log_messages(proc.log)
                if m.startswith("store 'default'")]
        assert len(said) == 1 and said[0][0].upper().startswith("WARN")
        assert "every flow is lost when the operator stops" in said[0][1]
    finally:
        proc.stop()
