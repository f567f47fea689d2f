"""What the operator process sets up before kopf starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowreg.controller import run as run_module


def test_the_collector_is_set_for_a_service_before_kopf_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(run_module, "tune_for_service", lambda: calls.append("collector"))
    monkeypatch.setattr(run_module.kopf, "configure", lambda **_: None)
    monkeypatch.setattr(run_module.kopf, "run", lambda **_: calls.append("kopf"))
    config = tmp_path / "operator.yaml"
    config.write_text("stores:\n  default:\n    location: ':memory:'\n")
    kwargs: dict[str, Any] = {"namespaces": [], "all_namespaces": True, "liveness": None,
                              "peering": None, "metrics_port": None}
    assert run_module.run(config_path=str(config), **kwargs) == 0
    assert calls == ["collector", "kopf"]
