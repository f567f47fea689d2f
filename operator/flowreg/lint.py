"""Selection lint: the flows of a registry an agent cannot tell apart, computed from vectors.

An agent selects a flow by the cosine between the user's words and each flow's point vector
(the embedding of ``Flow.embedding_text``: description, then one example a line); the highest
score wins. This module models exactly that, given the vectors:

* **confusable example**: an example of flow A whose own vector scores flow B's point vector at
  least as high as A's, less ``margin`` (``other >= own - margin``): worded like that, a
  request would be routed to B (or nearly so). Needs the examples' vectors.
* **near-duplicate flows**: two flows whose point vectors have a cosine of at least
  ``duplicate``; any request near one is near the other.
* **thin flows**: flows with fewer than ``min_examples`` examples.

Nothing here embeds: callers pass vectors (``flow_vectors`` in registry order, and optionally
``example_vectors`` in the order of ``example_texts``). Findings are sorted worst first and
each list is cut to ``limit``; the counts are of everything found. Vectors need not be
normalised.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from flowreg.flow import DeclaredFlows

DEFAULT_DUPLICATE = 0.9
"""Cosine between two flows' point vectors from which they are near-duplicates."""
DEFAULT_MARGIN = 0.25
"""How close (in cosine) another flow may come to an example's own flow before it is flagged."""
DEFAULT_MIN_EXAMPLES = 2
"""Flows with fewer examples than this are thin."""
DEFAULT_LIMIT = 20
"""Findings kept per kind, worst first."""
KINDS = ("confusable", "duplicate", "thin")
_BLOCK = 2048  # rows of a score block (a block is _BLOCK x flows float32)


@dataclass(frozen=True)
class LintOptions:
    """Thresholds of the lint (see the module docstring)."""

    duplicate: float = DEFAULT_DUPLICATE
    margin: float = DEFAULT_MARGIN
    min_examples: int = DEFAULT_MIN_EXAMPLES
    limit: int = DEFAULT_LIMIT


@dataclass(frozen=True)
class Confusable:
    """An example of ``flow`` that selects ``other`` (``other_score`` vs ``own_score``)."""

    flow: str
    other: str
    example: str
    example_index: int
    own_score: float
    other_score: float
    source: str = ""
    line: int | None = None

    @property
    def gap(self) -> float:
        """How far ``other`` beats the example's own flow (negative: within the margin)."""
        return self.other_score - self.own_score


@dataclass(frozen=True)
class Duplicate:
    """Two flows whose point vectors are closer than the duplicate threshold."""

    flow: str
    other: str
    score: float


@dataclass(frozen=True)
class Thin:
    """A flow with fewer examples than the minimum."""

    flow: str
    examples: int


@dataclass(frozen=True)
class FlowPair:
    """Two flows the lint flags together, with the worst score that flags them."""

    flows: tuple[str, str]
    kind: str
    score: float
    examples: int = 0
    """How many examples of either flow select the other."""


@dataclass
class LintReport:
    """What the lint found in one registry: each list worst first and cut to the limit."""

    agent_id: str
    owner: str
    options: LintOptions
    confusable: list[Confusable] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    thin: list[Thin] = field(default_factory=list)
    pairs: list[FlowPair] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    examples_checked: bool = False
    """Whether example vectors were given (without them, ``confusable`` is not checked)."""

    def found(self, kinds: Iterable[str] = KINDS) -> bool:
        """Whether anything of ``kinds`` was found."""
        return any(self.counts.get(k, 0) for k in kinds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "agentId": self.agent_id,
            "owner": self.owner,
            "thresholds": {"duplicate": self.options.duplicate, "margin": self.options.margin,
                           "minExamples": self.options.min_examples},
            "counts": dict(self.counts),
            "confusable": [{"flow": c.flow, "other": c.other, "example": c.example,
                            "ownScore": round(c.own_score, 4),
                            "otherScore": round(c.other_score, 4),
                            "source": c.source, "line": c.line} for c in self.confusable],
            "duplicates": [{"flow": d.flow, "other": d.other, "score": round(d.score, 4)}
                           for d in self.duplicates],
            "thin": [asdict(t) for t in self.thin],
            "pairs": [{"flows": list(p.flows), "kind": p.kind, "score": round(p.score, 4),
                       "examples": p.examples} for p in self.pairs],
        }


def example_texts(registry: DeclaredFlows) -> list[str]:
    """Every example of ``registry``, flow by flow: the order ``example_vectors`` follow."""
    return [example for flow in registry.flows for example in flow.examples]


def lint(registry: DeclaredFlows, flow_vectors: Sequence[Sequence[float]],
         example_vectors: Sequence[Sequence[float]] | None = None,
         options: LintOptions | None = None) -> LintReport:
    """Lint ``registry`` given its flows' point vectors (and its examples' vectors, if any).

    Raises ``ValueError`` if the number of vectors does not match the registry.
    """
    options = options or LintOptions()
    flows = registry.flows
    report = LintReport(registry.agent_id, registry.owner, options,
                        examples_checked=example_vectors is not None)
    thin = [Thin(f.name, len(f.examples)) for f in flows if len(f.examples) < options.min_examples]
    thin.sort(key=lambda t: (t.examples, t.flow))
    report.counts["thin"] = len(thin)
    report.thin = thin[:options.limit]
    if len(flow_vectors) != len(flows):
        raise ValueError(f"{len(flow_vectors)} flow vectors for {len(flows)} flows")
    if len(flows) < 2:
        return report
    fv = _unit(flow_vectors)
    report.counts["duplicate"], duplicates = _duplicates(fv, options.duplicate, options.limit)
    names = [f.name for f in flows]
    report.duplicates = [Duplicate(names[i], names[j], s) for s, i, j in duplicates]
    pairs: dict[tuple[str, str], FlowPair] = {}
    for s, i, j in duplicates:
        key = _key(names[i], names[j])
        pairs[key] = FlowPair(key, "duplicate", s)
    if example_vectors is not None:
        owners = np.fromiter((i for i, f in enumerate(flows) for _ in f.examples), dtype=np.intp)
        if len(example_vectors) != len(owners):
            raise ValueError(f"{len(example_vectors)} example vectors for {len(owners)} examples")
        found = _confusable(_unit(example_vectors), owners, fv, options.margin) \
            if len(owners) else []
        report.counts["confusable"] = len(found)
        texts = example_texts(registry)
        starts = np.cumsum([0, *(len(f.examples) for f in flows)])
        for own, other, index, own_score, other_score in found[:options.limit]:
            report.confusable.append(Confusable(
                names[own], names[other], texts[index], index - int(starts[own]),
                own_score, other_score))
        for own, other, _, own_score, other_score in found:
            key = _key(names[own], names[other])
            gap = other_score - own_score
            seen = pairs.get(key)
            if seen is None or seen.kind == "duplicate":
                pairs[key] = FlowPair(key, "confusable", gap, 1)
            else:
                pairs[key] = FlowPair(key, "confusable", max(seen.score, gap), seen.examples + 1)
    # confusable pairs first (the most examples, then the smallest lead of the own flow),
    # then near-duplicates by score
    report.pairs = sorted(pairs.values(),
                          key=lambda p: (p.kind != "confusable", -p.examples, -p.score, p.flows),
                          )[:options.limit]
    return report


def _unit(vectors: Sequence[Sequence[float]]) -> np.ndarray:
    m = np.asarray(vectors, dtype=np.float32)
    if m.ndim != 2:
        m = m.reshape(len(vectors), -1)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return m / norms


def _duplicates(fv: np.ndarray, threshold: float, limit: int,
                ) -> tuple[int, list[tuple[float, int, int]]]:
    """How many pairs ``i < j`` of rows of ``fv`` have a cosine >= ``threshold``, and the
    ``limit`` closest as ``(score, i, j)``. Costs no Python object per pair beyond those kept
    (a registry of near-identical flows has n²/2 of them)."""
    count = 0
    out: list[tuple[float, int, int]] = []
    n = len(fv)
    for start in range(0, n, _BLOCK):
        block = fv[start:start + _BLOCK] @ fv.T
        upper = np.arange(n)[None, :] > np.arange(start, start + len(block))[:, None]
        rows, cols = np.nonzero((block >= threshold) & upper)
        count += len(rows)
        if len(rows) > limit:
            best = np.argpartition(-block[rows, cols], limit)[:limit] if limit else []
            rows, cols = rows[best], cols[best]
        out.extend((float(block[r, c]), r + start, c)
                   for r, c in zip(rows.tolist(), cols.tolist(), strict=True))
        out.sort(key=lambda d: (-d[0], d[1], d[2]))
        del out[limit:]
    return count, out


def _confusable(ev: np.ndarray, owners: np.ndarray, fv: np.ndarray, margin: float,
                ) -> list[tuple[int, int, int, float, float]]:
    """Examples whose best other flow scores at least their own less ``margin``.

    Returns ``(own flow, other flow, example index, own score, other score)``, the worst
    (largest ``other - own``) first.
    """
    out: list[tuple[int, int, int, float, float]] = []
    for start in range(0, len(ev), _BLOCK):
        scores = ev[start:start + _BLOCK] @ fv.T
        rows = np.arange(len(scores))
        own_flow = owners[start:start + len(scores)]
        own = scores[rows, own_flow].copy()
        scores[rows, own_flow] = -np.inf
        other = scores.argmax(axis=1)
        other_score = scores[rows, other]
        for r in np.nonzero(other_score >= own - margin)[0].tolist():
            out.append((int(own_flow[r]), int(other[r]), start + r, float(own[r]),
                        float(other_score[r])))
    out.sort(key=lambda c: (c[3] - c[4], c[2]))
    return out


def _key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)
