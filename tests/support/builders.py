"""What tests build their input from: the repository, the example manifest, flows and
FlowRegistry documents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "finance-bot.yaml"


def registry_doc(flows: list[dict[str, Any]], *, name: str = "bot", agent: str = "agent_1",
                 namespace: str = "default", **spec: Any) -> dict[str, Any]:
    """A FlowRegistry manifest as a dict."""
    return {
        "apiVersion": "flowreg.dev/v1alpha1",
        "kind": "FlowRegistry",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"agentId": agent, **spec, "flows": flows},
    }


def make_flows(n: int, *, prefix: str = "flow", salt: str = "") -> list[dict[str, Any]]:
    """``n`` distinct valid flows."""
    return [
        {
            "name": f"{prefix}_{i:05d}",
            "description": f"Handle request kind {i} {salt}".strip(),
            "examples": [f"please do thing {i}", f"I want {i} done"],
            "conditions": ["user is authenticated"],
        }
        for i in range(n)
    ]
