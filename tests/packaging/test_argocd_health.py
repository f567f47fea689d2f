"""The Argo CD health check (docs/argocd-health.lua), run by a real Lua interpreter."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.argocd import health


def registry(generation: int = 2, observed: int | None = 2, suspend: bool = False,
             *conditions: dict[str, str]) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"generation": generation}, "spec": {"suspend": suspend}}
    if observed is not None:
        obj["status"] = {"observedGeneration": observed, "conditions": list(conditions)}
    return obj


def cond(ctype: str, status: str, reason: str, message: str = "m") -> dict[str, str]:
    return {"type": ctype, "status": status, "reason": reason, "message": message}


@pytest.mark.parametrize(("obj", "expected"), [
    (registry(2, None), "Progressing"),
    (registry(2, 2, False, cond("Ready", "True", "Synced", "6 flow(s) in sync")), "Healthy"),
    (registry(3, 2, False, cond("Ready", "True", "Synced")), "Progressing"),
    (registry(2, 2, False, cond("Ready", "False", "InvalidSpec"),
              cond("Stalled", "True", "InvalidSpec", 'flow "x": bad')), "Degraded"),
    (registry(2, 2, False, cond("Ready", "False", "Conflict")), "Degraded"),
    (registry(2, 2, False, cond("Ready", "False", "StoreUnavailable"),
              cond("Reconciling", "True", "StoreUnavailable")), "Progressing"),
    (registry(2, 2, False, cond("Ready", "False", "Progressing"),
              cond("Reconciling", "True", "Progressing")), "Progressing"),
    (registry(2, 2, True, cond("Ready", "True", "Synced")), "Suspended"),
    (registry(2, 2, False, cond("Ready", "False", "Suspended")), "Suspended"),
])
def test_health_follows_the_conditions(obj, expected):
    status, message = health(obj)
    assert status == expected
    assert message


def test_degraded_message_names_the_problem():
    _, message = health(registry(2, 2, False, cond("Ready", "False", "InvalidSpec"),
                                 cond("Stalled", "True", "InvalidSpec", 'flow "refund": bad')))
    assert message == 'InvalidSpec: flow "refund": bad'
