"""The selection lint in the operator: pairs of flows an agent cannot tell apart, after a sync.

``spec.selectionLint`` is ``Ignore``, ``Warn`` (the default) or ``Block``. After a successful sync
the operator takes the flows' vectors from the sync that wrote them, and reads from the store
only those it did not write (one counted Qdrant read at most, **no embedding call**), and
flags every pair whose cosine is at least ``flowreg.lint.DEFAULT_DUPLICATE``: a request near
one of them is as near the other.
The result is remembered per registry and embedded texts, so a sync that changed no embedded
text reads nothing. ``Warn`` keeps ``Ready=True`` and says it in ``status.selectionLint`` and a
``Warning`` Event (reason ``ConfusableFlows``); ``Block`` also makes ``Ready=False`` with that
reason (the flows are synced all the same: the lint judges the registry, not the sync).

The example-level check (an example nearer another flow than its own) needs the examples'
vectors, which the sync does not compute; it runs in ``flowreg lint``, in CI.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flowreg import lint
from flowreg.controller.status import CONFUSABLE_FLOWS, Outcome
from flowreg.flow import DeclaredFlows, point_id
from flowreg.sync import SyncEngine

MODES = ("Ignore", "Warn", "Block")
REASON = CONFUSABLE_FLOWS
MAX_PAIRS = 10
INLINE_FLOWS = 200
"""Up to this many flows the lint runs on the event loop (about 1.5 ms for 200, less than
handing it to a thread and back); a larger registry's runs in a thread."""


@dataclass(frozen=True)
class Findings:
    """Flagged pairs of one registry (``pairs`` worst first, at most ``MAX_PAIRS``)."""

    mode: str
    count: int
    pairs: tuple[tuple[str, str, float], ...]
    threshold: float

    def status(self) -> dict[str, Any] | None:
        """The ``status.selectionLint`` stanza; ``None`` when nothing is flagged."""
        if not self.count:
            return None
        return {"count": self.count, "threshold": self.threshold,
                "pairs": [{"flows": [a, b], "score": round(s, 4)} for a, b, s in self.pairs]}

    def message(self) -> str:
        shown = ", ".join(f"{a} ~ {b} ({s:.2f})" for a, b, s in self.pairs[:3])
        more = f" and {self.count - 3} more" if self.count > 3 else ""
        return (f"{self.count} pair(s) of flows an agent can hardly tell apart (cosine >= "
                f"{self.threshold}): {shown}{more}; see status.selectionLint, and run "
                "`flowreg lint` for the examples")


def mode_of(spec: Mapping[str, Any]) -> str:
    """``spec.selectionLint`` (the schema guarantees one of ``MODES``; ``Warn`` if absent)."""
    mode = spec.get("selectionLint") or "Warn"
    return mode if mode in MODES else "Warn"


class SelectionCheck:
    """Runs the lint after syncs and remembers the result per registry and embedded texts."""

    def __init__(self, threshold: float = lint.DEFAULT_DUPLICATE) -> None:
        self.threshold = threshold
        self._seen: dict[str, tuple[str, Findings]] = {}

    def forget(self, uid: str) -> None:
        self._seen.pop(uid, None)

    async def check(self, uid: str, mode: str, engine: SyncEngine,
                    registry: DeclaredFlows,
                    written: Mapping[str, Any] | None = None,
                    known: Mapping[str, list[float]] | None = None) -> Findings | None:
        """The findings for ``registry`` as synced by ``engine``; ``None`` when ``Ignore``.

        ``written``: the ``status.selectionLint`` stanza (``{}`` when it has none) that an
        earlier sync of exactly these stored flows wrote, as after an operator restart over a
        registry whose digest matched. It stands for the findings, read from nothing, unless
        it was judged at another threshold. ``known``: vectors by point id the caller holds
        (those the sync wrote), read from the store only where missing.
        """
        if mode == "Ignore":
            self._seen.pop(uid, None)
            return None
        key = _texts_key(engine.embedder.identity, registry)
        seen = self._seen.get(uid)
        if seen is not None and seen[0] == key:
            found = seen[1]
        else:
            found = self._from_status(written) if written is not None else None
            if found is None:
                found = await self._lint(engine, registry, known or {})
            self._seen[uid] = (key, found)
        return Findings(mode, found.count, found.pairs, found.threshold)

    def _from_status(self, written: Mapping[str, Any]) -> Findings | None:
        if not written:
            return Findings("Warn", 0, (), self.threshold)
        try:
            if float(written["threshold"]) != self.threshold:
                return None
            pairs = tuple((str(p["flows"][0]), str(p["flows"][1]), float(p["score"]))
                          for p in written["pairs"])
            return Findings("Warn", int(written["count"]), pairs, self.threshold)
        except (KeyError, IndexError, TypeError, ValueError):
            return None  # not a stanza this operator wrote: judged again

    async def _lint(self, engine: SyncEngine, registry: DeclaredFlows,
                    known: Mapping[str, list[float]]) -> Findings:
        ids = [point_id(registry.agent_id, f.name) for f in registry.flows]
        vectors: dict[str, list[float]] = {}
        if len(ids) > 1:
            vectors = {i: known[i] for i in ids if i in known}
            missing = [i for i in ids if i not in vectors]
            if missing:
                vectors.update(await engine.store.vectors(missing))
        present = [(f, vectors[i]) for f, i in zip(registry.flows, ids, strict=True)
                   if i in vectors]
        if len(present) < 2:
            return Findings("Warn", 0, (), self.threshold)
        sub = DeclaredFlows(registry.agent_id, registry.owner, tuple(f for f, _ in present))
        options = lint.LintOptions(duplicate=self.threshold, min_examples=0, limit=MAX_PAIRS)
        vectors_present = [v for _, v in present]
        if len(present) <= INLINE_FLOWS:
            report = lint.lint(sub, vectors_present, None, options)
        else:  # numpy releases the GIL: the event loop (and other syncs) keep running
            report = await asyncio.to_thread(lint.lint, sub, vectors_present, None, options)
        pairs = tuple((d.flow, d.other, d.score) for d in report.duplicates)
        return Findings("Warn", report.counts["duplicate"], pairs, self.threshold)


def _texts_key(embedder: str, registry: DeclaredFlows) -> str:
    digest = hashlib.sha256(embedder.encode())
    for flow in registry.flows:
        digest.update(f"\0{flow.name}\0{flow.text_checksum}".encode())
    return digest.hexdigest()


def outcome_with(findings: Findings | None, outcome: Outcome) -> Outcome:
    """``outcome``, or ``Ready=False`` (Stalled, reason ``ConfusableFlows``) in ``Block`` mode."""
    if findings is None or findings.mode != "Block" or not findings.count or not outcome.ready:
        return outcome
    return Outcome(False, REASON, findings.message(), stalled=True)


def warning(findings: Findings | None, previous: Mapping[str, Any]) -> str | None:
    """The message of a ``Warning`` Event in ``Warn`` mode, when the flagged pairs changed."""
    if findings is None or findings.mode != "Warn" or not findings.count:
        return None
    if previous.get("selectionLint") == findings.status():
        return None
    return findings.message()
