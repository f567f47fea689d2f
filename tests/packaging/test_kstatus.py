"""Every status flowreg writes, judged by kstatus itself and by the Argo CD health check.

Flux decides health with kstatus (``sigs.k8s.io/cli-utils``): a Kustomization with
``wait: true`` is Ready only when everything it applied is Current, and fails early when
something is Failed. The statuses here are the ones the operator writes: produced by the real
``Reconciler`` (as in tests/test_reconcile.py) where a real store can produce them, and for the
failures that need a broken store or embedder, by the same ``conditions()`` from every error
class flowreg has. The verdicts come from cli-utils' ``status.Compute`` run by hack/kstatus
(and Flux's fork of it), and from docs/argocd-health.lua run by a real Lua interpreter.
"""

from __future__ import annotations

import asyncio
import copy
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowreg import errors
from flowreg.controller.config import parse_config
from flowreg.controller.reconcile import Reconciler
from flowreg.controller.status import Outcome, conditions
from tests.support.argocd import health
from tests.support.builders import make_flows
from tests.support.kstatus import compute, kstatus_binary
from tests.support.reconciler import RecordingSink, body_of
from tests.support.skips import loud_skip

CRD = Path(__file__).resolve().parents[2] / "crds" / "flowregistry.yaml"

# kstatus verdict -> the Argo CD health meant to agree with it
ARGO = {"Current": "Healthy", "InProgress": "Progressing", "Failed": "Degraded"}


def as_created(generation: int = 1) -> dict[str, Any]:
    """A registry as the apiserver returns it before the operator's first status write."""
    body = body_of(make_flows(2), generation=generation)
    version = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]
    default = version["schema"]["openAPIV3Schema"]["properties"]["status"].get("default")
    if default is not None:
        body["status"] = copy.deepcopy(default)
    return body


def written(outcome: Outcome, generation: int = 2, observed: int = 2) -> dict[str, Any]:
    body = body_of(make_flows(2), generation=generation)
    body["status"] = {"observedGeneration": observed,
                      "conditions": conditions(outcome, observed, None)}
    return body


async def real_statuses() -> dict[str, dict[str, Any]]:
    """Statuses written by the real reconciler on an in-memory store, by case."""
    rec = Reconciler(parse_config({"stores": {"default": {"location": ":memory:"}},
                                   "progressEverySeconds": 0.1}), RecordingSink())
    out: dict[str, dict[str, Any]] = {}
    try:
        synced = body_of(make_flows(5))
        await rec.reconcile(synced, trigger="change")
        out["Synced"] = copy.deepcopy(synced)

        # while a sync is under way: the status written once the plan is known
        changed = copy.deepcopy(synced)
        changed["spec"]["flows"][0]["description"] = "A new description."
        changed["metadata"]["generation"] = 2
        embedder = rec.engines["default"].embedder.inner
        embed = embedder.embed

        async def slow(texts: list[str]) -> list[list[float]]:
            await asyncio.sleep(0.5)  # longer than progressEverySeconds: progress is shown
            return await embed(texts)

        embedder.embed = slow
        await rec.reconcile(changed, trigger="change")
        embedder.embed = embed
        planned = copy.deepcopy(synced)
        planned["metadata"]["generation"] = 2
        planned["status"].update(rec.sink.patches[-2])
        assert planned["status"]["progress"] == {"done": 0, "total": 1}
        out["Progressing"] = planned

        repairing = copy.deepcopy(planned)  # the same, at an already observed generation
        repairing["metadata"]["generation"] = repairing["status"]["observedGeneration"]
        out["drift repair"] = repairing

        behind = copy.deepcopy(changed)
        behind["metadata"]["generation"] = 3  # the spec changed again; not yet seen
        out["generation behind"] = behind

        guarded = copy.deepcopy(changed)
        guarded["spec"]["flows"] = guarded["spec"]["flows"][:1]
        guarded["spec"]["deletionGuard"] = {"maxDeletions": 2}
        guarded["metadata"]["generation"] = 4
        await rec.reconcile(guarded, trigger="change")
        out["DeletionGuard"] = guarded

        invalid = body_of(make_flows(2))
        invalid["metadata"]["uid"] = "uid-invalid"
        invalid["spec"]["flows"][1]["checksum"] = "sha256:" + "a" * 64
        await rec.reconcile(invalid, trigger="change")
        out["InvalidSpec"] = invalid

        conflict = body_of(make_flows(6))
        conflict["metadata"].update(name="other", uid="uid-other")
        await rec.reconcile(conflict, trigger="change")
        out["Conflict"] = conflict

        suspended = body_of(make_flows(2), suspend=True)
        suspended["metadata"]["uid"] = "uid-suspended"
        await rec.reconcile(suspended, trigger="change")
        out["Suspended"] = suspended
    finally:
        await rec.close()
    return out


def error_classes() -> list[type[errors.FlowregError]]:
    found, todo = [], [errors.FlowregError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: c.reason)


@pytest.fixture(scope="module", autouse=True)
def kstatus_built() -> None:
    """The kstatus program: built by hack/flux.sh (Go needed); a loud skip without, except in CI."""
    try:
        binary = kstatus_binary()
        if not os.access(binary, os.X_OK):
            raise FileNotFoundError(f"{binary} is not built")
    except (OSError, subprocess.CalledProcessError) as exc:
        if os.environ.get("CI") == "true":
            raise
        loud_skip(f"kstatus (hack/flux.sh kstatus, needs Go): {exc}")


@pytest.fixture(scope="module")
def table() -> list[tuple[str, dict[str, Any], str, str | None]]:
    """(case, object, intended kstatus verdict, intended Argo CD health; None: Argo's own)."""
    import asyncio

    real = asyncio.run(real_statuses())
    rows: list[tuple[str, dict[str, Any], str, str | None]] = [
        ("created, before the operator's first write", as_created(), "InProgress",
         "Progressing"),
        ("Synced: Ready True at the generation", real["Synced"], "Current", "Healthy"),
        ("Progressing: Reconciling True while a sync writes", real["Progressing"],
         "InProgress", "Progressing"),
        ("a drift repair under way: Reconciling True, Ready True at the generation",
         real["drift repair"], "InProgress", "Progressing"),
        ("observedGeneration behind the generation", real["generation behind"], "InProgress",
         "Progressing"),
        ("DeletionGuard: too many deletions", real["DeletionGuard"], "Failed", "Degraded"),
        ("InvalidSpec: a bad checksum", real["InvalidSpec"], "Failed", "Degraded"),
        ("Conflict: flows owned by another registry", real["Conflict"], "Failed", "Degraded"),
        ("Suspended: spec.suspend", real["Suspended"], "InProgress", "Suspended"),
        ("Ready Unknown (never written by flowreg; kstatus treats it like False)",
         _ready_unknown(real["Synced"]), "InProgress", "Progressing"),
        ("being deleted: the finalizer is running", _deleting(real["Synced"]), "Terminating",
         None),
    ]
    for cls in error_classes():  # as reconcile.py writes a FlowregError: stalled iff permanent
        outcome = Outcome(False, cls.reason, f"{cls.__name__}: what went wrong",
                          reconciling=not cls.permanent, stalled=cls.permanent)
        verdict = "Failed" if cls.permanent else "InProgress"
        rows.append((f"{cls.__name__} ({'permanent' if cls.permanent else 'transient'})",
                     written(outcome), verdict, ARGO[verdict]))
    return rows


def _ready_unknown(body: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    for cond in body["status"]["conditions"]:
        if cond["type"] == "Ready":
            cond["status"] = "Unknown"
    return body


def _deleting(body: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    body["metadata"]["finalizers"] = ["flowreg.dev/finalizer"]
    return body


def test_kstatus_judges_every_status_as_intended(table):
    verdicts = compute([obj for _, obj, _, _ in table])
    seen = {case: (v["status"], v["flux"]["status"])
            for (case, *_), v in zip(table, verdicts, strict=True)}
    wanted = {case: (kstatus, kstatus) for case, _, kstatus, _ in table}
    assert seen == wanted


def test_kstatus_messages_carry_flowregs_words(table):
    verdicts = compute([obj for _, obj, _, _ in table])
    for (case, obj, kstatus, _), verdict in zip(table, verdicts, strict=True):
        if kstatus == "Failed":  # the Stalled condition's message, which names the problem
            stalled = next(c for c in obj["status"]["conditions"] if c["type"] == "Stalled")
            assert verdict["message"] == stalled["message"], case


def test_argocd_health_agrees_with_kstatus(table):
    seen = {case: health(obj)[0] for case, obj, _, argo in table if argo is not None}
    wanted = {case: argo for case, _, _, argo in table if argo is not None}
    assert seen == wanted


def test_the_table_covers_every_reason_flowreg_writes(table):
    reasons = {c["reason"] for _, obj, _, _ in table
               for c in (obj.get("status") or {}).get("conditions") or []}
    assert {"Synced", "Progressing", "Suspended", "Conflict"} | {
        cls.reason for cls in error_classes()} <= reasons
