"""``flowreg lint``: the selection lint of manifests, offline, with the registry's embedder.

Every flow text and every example is embedded (in calls of ``EMBED_BATCH`` texts), then
``flowreg.lint`` compares them exactly as the selector does. Exit code ``LINT_FINDINGS`` (8)
when a kind named by ``--fail-on`` was found; otherwise 0, findings or not.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowreg.errors import ExitCode, InvalidSpec, Problem

if TYPE_CHECKING:
    from flowreg.embed.base import Embedder
    from flowreg.lint import Confusable, LintReport
    from flowreg.manifest import Declaration

EMBED_BATCH = 512
# flowreg.lint's defaults, named here so that parsing the command line does not import numpy
# (tests/lint/test_lint_cli.py checks that they agree).
DEFAULT_DUPLICATE = 0.9
DEFAULT_MARGIN = 0.25
DEFAULT_MIN_EXAMPLES = 2
DEFAULT_LIMIT = 20


def add_parser(sub: Any, common: Any) -> None:
    """Declare ``lint`` on the CLI's subparsers; ``common`` adds -f, -o and the embedder flags."""
    p = sub.add_parser("lint", help="find flows the agent cannot tell apart (offline, embeds "
                                    "with the chosen embedder; writes nothing)")
    common(p)
    p.add_argument("--duplicate", type=float, default=DEFAULT_DUPLICATE,
                   help="cosine between two flows' vectors from which they are near-duplicates "
                        "[%(default)s]")
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                   help="flag an example when another flow scores within this of its own "
                        "[%(default)s]")
    p.add_argument("--min-examples", type=int, default=DEFAULT_MIN_EXAMPLES,
                   help="flows with fewer examples are thin [%(default)s]")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                   help="findings shown per kind, worst first [%(default)s]")
    p.add_argument("--fail-on", action="append", default=[], metavar="KIND",
                   help="exit 8 if this kind is found: confusable, duplicate, thin "
                        "(repeatable, or a comma list)")


def fail_on(values: Sequence[str]) -> list[str]:
    """The kinds of ``--fail-on``; ``InvalidSpec`` names an unknown one."""
    from flowreg.lint import KINDS

    kinds = [k.strip() for v in values for k in v.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise InvalidSpec(Problem(f"unknown kind {unknown[0]!r} (known: {', '.join(KINDS)})",
                                  field="--fail-on"))
    return kinds


async def run(args: argparse.Namespace, embedder: Embedder) -> int:
    """Lint every registry of ``args.files``; print the findings; the exit code."""
    from flowreg import lint, manifest

    kinds = fail_on(args.fail_on)
    for name, value, low, high in (("--duplicate", args.duplicate, -1.0, 1.0),
                                   ("--margin", args.margin, 0.0, 2.0)):
        if not low <= value <= high:
            raise InvalidSpec(Problem(f"must be between {low} and {high}, got {value}",
                                      field=name))
    for name, value in (("--min-examples", args.min_examples), ("--limit", args.limit)):
        if value < 0:
            raise InvalidSpec(Problem(f"must be at least 0, got {value}", field=name))
    decls = manifest.load(args.files)
    options = lint.LintOptions(args.duplicate, args.margin, args.min_examples, args.limit)
    reports = []
    try:
        for decl in decls:
            flow_vectors = await _embed(embedder, [f.embedding_text for f in decl.registry.flows])
            example_vectors = await _embed(embedder, lint.example_texts(decl.registry))
            report = lint.lint(decl.registry, flow_vectors, example_vectors, options)
            report.confusable = _located(decl, report.confusable)
            reports.append(report)
    finally:
        await embedder.aclose()
    if args.output == "json":
        import json

        print(json.dumps({"embedder": embedder.identity,
                          "registries": [r.to_dict() for r in reports]}, ensure_ascii=False))
    else:
        for decl, report in zip(decls, reports, strict=True):
            _print_text(decl, report)
    failed = [r for r in reports if r.found(kinds)]
    if failed:
        print(f"error: LintFindings: {', '.join(kinds)} found in "
              f"{', '.join(r.owner for r in failed)}", file=sys.stderr)
        return ExitCode.LINT_FINDINGS
    return ExitCode.OK


async def _embed(embedder: Embedder, texts: Sequence[str]) -> Any:
    """The vectors of ``texts`` as one float32 matrix (a batch's lists are freed as it comes)."""
    import numpy as np

    from flowreg.errors import EmbedderUnavailable

    out = np.empty((len(texts), embedder.dimension), dtype=np.float32)
    for start in range(0, len(texts), EMBED_BATCH):
        batch = texts[start:start + EMBED_BATCH]
        got = await embedder.embed(batch)
        if len(got) != len(batch) or any(len(v) != embedder.dimension for v in got):
            raise EmbedderUnavailable(f"embedder {embedder.identity} returned {len(got)} "
                                      f"vectors for {len(batch)} texts, or vectors not of "
                                      f"dimension {embedder.dimension}")
        out[start:start + len(batch)] = got
    return out


def _print_text(decl: Declaration, report: LintReport) -> None:
    counts = report.counts
    print(f"{decl.source}: FlowRegistry {report.owner} (agent {report.agent_id}): "
          f"{counts['confusable']} confusable example(s), {counts['duplicate']} near-duplicate "
          f"pair(s), {counts['thin']} thin flow(s)")
    for c in report.confusable:
        where = f"{c.source}:{c.line}" if c.line else c.source
        verb = "selects" if c.other_score > c.own_score else "nearly selects"
        print(f"  {where}: confusable: example {c.example!r} of {c.flow} {verb} {c.other} "
              f"({c.other} {c.other_score:.3f}, {c.flow} {c.own_score:.3f})")
    for d in report.duplicates:
        print(f"  duplicate: {d.flow} and {d.other} ({d.score:.3f})")
    for t in report.thin:
        print(f"  thin: {t.flow} has {t.examples} example(s), fewer than "
              f"{report.options.min_examples}")
    for kind, shown in (("confusable", report.confusable), ("duplicate", report.duplicates),
                        ("thin", report.thin)):
        if counts[kind] > len(shown):
            print(f"  ... and {counts[kind] - len(shown)} more {kind} (--limit)")


def _located(decl: Declaration, found: list[Confusable]) -> list[Confusable]:
    """``found`` with the file and line of each example."""
    from dataclasses import replace

    if not found or decl.source in ("", "-", "<stdin>"):
        return [replace(c, source=decl.source) for c in found]
    text = Path(decl.source).read_text(encoding="utf-8")
    lines = text.splitlines()
    names = _name_lines(lines, {c.flow for c in found})
    out = []
    located: Any = None
    for c in found:
        line = _scan_line(lines, names.get(c.flow, []), c.flow, c.example_index)
        if line is None:
            if located is None:
                located = _located_doc(decl, text)
            line = _doc_line(located, decl, c) if located is not None else None
        out.append(replace(c, source=decl.source, line=line))
    return out


_NAME_LINE = re.compile(r"^(\s*)(- )?name:\s*(['\"]?)([^'\"#]*?)\3\s*$")


def _name_lines(lines: list[str], flows: set[str]) -> dict[str, list[int]]:
    """The indexes of the lines ``name: <flow>`` (a block mapping's key), per flow of ``flows``."""
    out: dict[str, list[int]] = {}
    for i, text in enumerate(lines):
        if "name:" in text:
            match = _NAME_LINE.match(text)
            if match is not None and match.group(4) in flows:
                out.setdefault(match.group(4), []).append(i)
    return out


def _scan_line(lines: list[str], hits: list[int], flow: str, index: int) -> int | None:
    """The line of example ``index`` of ``flow`` in block-style YAML; ``None`` if unsure.

    Sure only when the file names the flow once (``hits``: the lines ``name: <flow>``) and its
    ``examples`` is a block sequence of one-line items, or a flow sequence on one line.
    """
    if len(hits) != 1:
        return None
    at = hits[0]
    match = _NAME_LINE.match(lines[at])
    assert match is not None and match.group(4) == flow
    indent = len(match.group(1)) + (2 if match.group(2) else 0)
    key = re.compile(rf"^\s{{{indent}}}examples:\s*(.*)$")
    for i in range(at + 1, len(lines)):
        text = lines[i]
        if text.strip() and (len(text) - len(text.lstrip()) < indent or
                             (text.lstrip().startswith("- ") and
                              len(text) - len(text.lstrip()) <= indent - 2)):
            return None  # left the flow
        m = key.match(text)
        if m is None:
            continue
        if m.group(1).startswith("[") and m.group(1).rstrip().endswith("]"):
            return i + 1
        if m.group(1):
            return None
        items: list[int] = []
        for j in range(i + 1, len(lines)):
            item = lines[j]
            stripped = item.lstrip()
            depth = len(item) - len(stripped)
            if not stripped:
                continue
            if stripped.startswith("- ") and depth >= indent:
                items.append(j + 1)
            elif depth <= indent:
                break
            else:
                return None  # a multi-line item
        return items[index] if index < len(items) else None
    return None


def _located_doc(decl: Declaration, text: str) -> Any:
    from flowreg import documents

    for doc in documents.read_documents(text, decl.source, located=True):
        meta = doc.data.get("metadata") if isinstance(doc.data, dict) else None
        if isinstance(meta, dict) and meta.get("name") == decl.name and \
                (meta.get("namespace") or "default") == decl.namespace:
            return doc
    return None


def _doc_line(doc: Any, decl: Declaration, c: Confusable) -> int | None:
    index = next(i for i, f in enumerate(decl.registry.flows) if f.name == c.flow)
    return doc.line_of(("spec", "flows", index, "examples", c.example_index))
