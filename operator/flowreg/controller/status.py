"""FlowRegistry status as data: kstatus-compatible conditions and a bounded sync report.

Pure functions: given the previous conditions and what happened, they return the status to
patch. ``Ready`` is always present; ``Reconciling`` and ``Stalled`` only while true. A
condition's ``lastTransitionTime`` moves only when its status flips, so an unchanged outcome
gives an identical status (and the apiserver records no new version, so no watch event).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flowreg.errors import ConflictError, FlowregError
from flowreg.location import redact
from flowreg.report import SyncReport

READY, RECONCILING, STALLED = "Ready", "Reconciling", "Stalled"
"""The condition types (kstatus): ``Ready`` always, the other two only while true."""

# The reasons of the conditions and Events the operator writes (CamelCase, as kstatus and Flux
# write them). A failure's reason is its error's ``reason`` (flowreg.errors): InvalidSpec,
# StoreUnavailable, StoreIncompatible, EmbedderUnavailable, DeletionGuard.
SYNCED = "Synced"
"""Ready=True: the store holds exactly the declared flows."""
DRIFT_REPAIRED = "DriftRepaired"
"""Event: a sync of an unchanged spec changed the store (someone altered it behind our back)."""
PROGRESSING = "Progressing"
"""Ready unchanged, Reconciling=True: a plan with changes is being applied."""
SUSPENDED = "Suspended"
"""Ready=False: ``spec.suspend`` is set; nothing is written."""
CONFLICT = ConflictError.reason
"""Ready=False, Stalled=True: declared flows are held by another registry and were left
untouched (a change of either registry is needed)."""
INTERNAL_ERROR = FlowregError.reason
"""Ready=False, Reconciling=True: a defect or a broken install; retried."""
CONFUSABLE_FLOWS = "ConfusableFlows"
"""Warning Event (``spec.selectionLint: Warn``), or Ready=False and Stalled (``Block``): the
selection lint flags pairs of flows an agent cannot tell apart."""
MAX_MESSAGE = 1024


@dataclass(frozen=True)
class Outcome:
    """What a reconcile attempt concluded, in condition terms."""

    ready: bool
    reason: str
    message: str
    reconciling: bool = False
    stalled: bool = False

    def __post_init__(self) -> None:
        # Status messages and events show store locations: never a URL's credentials.
        object.__setattr__(self, "message", redact(self.message))


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions(outcome: Outcome, generation: int | None,
               previous: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The full conditions list for ``outcome`` (Ready first; the others only while true)."""
    old = {c.get("type"): c for c in previous or ()}
    wanted = [(READY, outcome.ready)]
    if outcome.reconciling:
        wanted.append((RECONCILING, True))
    if outcome.stalled:
        wanted.append((STALLED, True))
    out = []
    for ctype, value in wanted:
        status = "True" if value else "False"
        before = old.get(ctype)
        moved = before is None or before.get("status") != status
        out.append({
            "type": ctype,
            "status": status,
            "observedGeneration": generation,
            "lastTransitionTime": now_iso() if moved else before.get("lastTransitionTime"),
            "reason": outcome.reason,
            "message": _cut(outcome.message, MAX_MESSAGE),
        })
    return out


def sync_summary(report: SyncReport, max_names: int) -> dict[str, Any]:
    """The ``status.lastSync`` stanza: counts always, names cut to ``max_names`` per list."""
    return {
        "runId": report.run_id,
        "time": now_iso(),
        "created": len(report.created),
        "updated": len(report.updated),
        "deleted": len(report.deleted),
        "skipped": len(report.skipped),
        "renamed": len(report.renamed),
        "duplicatesRemoved": len(report.duplicates_removed),
        "conflicts": len(report.conflicts),
        "embeddedTexts": report.embedded_texts,
        "storeWrites": report.store_writes,
        "durationSeconds": round(report.duration_seconds, 3),
        "names": {
            "created": report.created[:max_names],
            "updated": report.updated[:max_names],
            "deleted": report.deleted[:max_names],
            "renamed": [f"{r['from']}->{r['to']}" for r in report.renamed[:max_names]],
        },
    }


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
