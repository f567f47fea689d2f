"""Reading YAML documents under limits: a file's cost is bounded before it is fully parsed.

Limits, each refused with a ``Problem`` naming the file (and the line and field where there is
one), as ``InvalidSpec``:

* a file larger than ``MAX_FILE_BYTES`` is refused before it is read;
* the text must be UTF-8 (the first bad byte is named by line and column);
* collections nested deeper than ``MAX_DEPTH`` are refused as the parser reaches them;
* aliases may add at most ``max(MIN_ALIAS_NODES, nodes written out)`` nodes to a document: a
  "billion laughs" document is refused at its first alias over the budget, in a few
  milliseconds, never expanded;
* duplicate mapping keys, tags other than the standard scalar ones, and keys that are not
  strings are refused.

Two readers give the same data. The *located* reader walks libyaml's events (through PyYAML)
with YAML 1.1 resolution, as PyYAML's safe loader reads, and records the line of every path; it
enforces the limits itself and never recurses. The *fast* reader (``yaml_rs``, in Rust) is used
for a text only when nothing in it can be read differently by the two: no anchor, alias, tag,
directive, merge key, YAML 1.1 line break, and no plain scalar whose type YAML 1.1 and 1.2
resolve differently (``yes``, ``on``, ``017``, ``1_000``, dates...); nor any block nesting
deeper than its own guard. It records no lines, and its documents may nest deeper than
``MAX_DEPTH`` (up to its own limit of a few hundred levels): callers check what they do not
validate otherwise (``deeper_than``), and re-read a file with ``located=True`` to report a problem.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from flowreg.errors import InvalidSpec, Problem

try:  # the fast reader is an optimisation: without it every text takes the located reader
    import yaml_rs as _yaml_rs
except ImportError:  # pragma: no cover - yaml-rs is a declared dependency
    _yaml_rs = None

PathKey = tuple[str | int, ...]

MAX_FILE_BYTES = 16 * 1024 * 1024
"""Largest manifest file read (a 5,000-flow registry is about 4 MB)."""
MAX_DEPTH = 64
_TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels"
"""Deepest nesting of collections (a FlowRegistry needs 9)."""
MIN_ALIAS_NODES = 10_000
"""Nodes aliases may always add to a document; more only up to the nodes written out."""

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_SCALARS = (str, int, float, bool, type(None))

# Texts the fast reader leaves to the located one (see the module docstring). A false alarm
# costs time, never correctness: the located reader is the reference. Each pattern starts with
# a literal or a small set, so that a search runs at C speed. What the text shows:
# (searched in the text after a newline, so that a line start is a newline)
_SLOW_TEXT = tuple((first, re.compile(p)) for first, p in (
    ("%", r"\n%"),                                          # directives
    ("&", r"&(?<=[ \t\n\[{,]&)[^ \t\r\n,\[\]{}]"),            # anchors
    ("*", r"\*(?<=[ \t\n\[{,]\*)[^ \t\r\n,\[\]{}]"),          # aliases
    ("!", r"!(?<=[ \t\n\[{,]!)"),                           # tags (! alone too)
    ("-", r"-[ \t]+[-?][ \t\r\n]"),                            # compact nested blocks: - - x
    ("?", r"\?[ \t]+[-?][ \t\r\n]"),
    ("?", r"\?(?<=[ \t\n\[{,]\?)[^ \t\r\n]"),                   # ?x: a key in flow (1.1)
    (":", r":(?<=[ \t\n\[{,]:)[^ \t\r\n]"),                     # :x: a value in flow (1.1)
    ("\n", r"\n {40}"),                                     # deep indentation
    ("0", r"0(?<=[\s\[{,+-]0)[0-9_oObBxX]"),                 # 017, 0o17, 0b1, 0X1 (1.1 != 1.2)
))
"""Each pattern with a character every match contains: where ``in`` (a ``memchr``, many times
faster than a search) does not find it, the pattern is not searched for."""
_SLOW_UNICODE = re.compile("[\x85\u2028\u2029\ufeff]")   # YAML 1.1 line breaks, BOM
# ... and what the data shows, encoded as JSON: strings YAML 1.1 reads as another type when
# they are plain (yes, on, 1_000, 1:20, 0x1f, 2024-01-01, <<, =), floats (1e3 is a string in
# YAML 1.1), nulls (an overflowing float such as 1e999 is encoded as null), and strings of
# line breaks only (yaml_rs reads an empty block scalar as "\n", libyaml as "").
_FLOAT = rb"-?[0-9]+(?:\.[0-9]+(?:[eE][-+]?[0-9]+)?|[eE][-+]?[0-9]+)(?=[,\]}])"
_SLOW_DATA = (
    re.compile(rb'"(?=[yYnNoO<=+.0-9\\-])(?<=[:\[,{]")(?:[yY]es|YES|[nN]o|NO|[oO]n|ON|[oO]ff|OFF'
               rb"|<<|=|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])*(?:\.[0-9_]*(?:[eE][-+][0-9]+)?)?"
               rb"|[-+]?0b[01_]+|[-+]?0x[0-9a-fA-F_]+|[-+]?\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
               rb'|[-+]?\.(?:inf|Inf|INF|nan|NaN|NAN)|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}[^"]*'
               rb'|(?:\\n)+)"'),
    re.compile(rb'":' + _FLOAT),  # a float as a value, as the first or a later item
    re.compile(rb"\[" + _FLOAT),
    re.compile(rb"," + _FLOAT),
    re.compile(rb"null(?<=[:\[,]null)(?=[,\]}])"),
)
_DOCUMENT_MARKER = re.compile(r"\n(?:---|\.\.\.)(?=[ \t\r\n]|$)")
"""A document marker at the start of a line after the first (searched from its newline: a
pattern that starts with a literal runs at C speed, ``^`` in multi-line mode does not)."""


@dataclass
class Document:
    """One YAML document of a file; with ``lines`` (1-based) when read located."""

    source: str
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)
    located: bool = True

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of the deepest known prefix of ``path`` (``None`` if not located)."""
        key = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get(())


def read_text(path: Path) -> str:
    """The text of ``path`` (``-``: standard input), refused if too large or not UTF-8."""
    return decode(read_bytes(path), str(path))


def read_bytes(path: Path) -> bytes:
    """The bytes of ``path`` (``-``: standard input), refused if too large."""
    import sys

    source = str(path)
    try:
        if source == "-":
            raw = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
            size = len(raw)
        else:
            size = path.stat().st_size
            raw = b""
            if size <= MAX_FILE_BYTES:
                with path.open("rb") as fh:
                    raw = fh.read(MAX_FILE_BYTES + 1)
                size = len(raw)
    except OSError as exc:
        raise InvalidSpec(Problem(f"cannot read: {exc.strerror or exc}", source=source)) from None
    if size > MAX_FILE_BYTES:
        raise InvalidSpec(Problem(
            f"file too large: {size / 2**20:.1f} MiB, at most {MAX_FILE_BYTES // 2**20} MiB "
            "is read", source=source))
    return raw


def decode(raw: bytes, source: str) -> str:
    """``raw`` as UTF-8; the first invalid byte is named by line and column."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InvalidSpec(Problem(
            f"not UTF-8: byte 0x{raw[exc.start]:02x} at column {column}", source=source,
            line=line)) from None


def read_documents(text: str, source: str, *, located: bool = False) -> list[Document]:
    """The non-empty documents of ``text``; raises ``InvalidSpec`` naming file, line, field.

    With ``located=False`` the fast reader is used when the text allows it, and the documents
    carry no lines.
    """
    if not located and _fast_enough(text):
        docs = _read_fast(text, source)
        if docs is not None:
            return docs
    return _Builder(text, source).documents()


def _fast_enough(text: str) -> bool:
    """Whether the fast reader may read ``text`` (nothing in it reads differently)."""
    if _yaml_rs is None:
        return False
    lines = "\n" + text + "\n"
    if any(first in lines and pattern.search(lines) for first, pattern in _SLOW_TEXT):
        return False
    return text.isascii() or not _SLOW_UNICODE.search(text)


def _read_fast(text: str, source: str) -> list[Document] | None:
    """Documents read by ``yaml_rs``; ``None`` when it refuses (the located reader will say)."""
    assert _yaml_rs is not None
    bounds = [0, *(m.start() + 1 for m in _DOCUMENT_MARKER.finditer(text)), len(text)]
    docs = []
    for begin, end in itertools.pairwise(bounds):
        try:
            data = _yaml_rs.loads(text[begin:end], parse_datetime=False)
        except Exception:  # any refusal: syntax, duplicate key, nesting, a parser limit
            return None
        if data is None:
            continue
        try:
            encoded = orjson.dumps(data)
        except (TypeError, orjson.JSONEncodeError):  # a key that is not a string, too deep
            return None
        if any(pattern.search(encoded) for pattern in _SLOW_DATA):
            return None
        docs.append(Document(source=source, data=data, located=False))
    return docs


def deeper_than(data: Any, limit: int) -> bool:
    """Whether ``data`` nests more than ``limit`` collections deep (without recursion)."""
    todo: list[tuple[Any, int]] = [(data, 1)]
    while todo:
        value, depth = todo.pop()
        if depth > limit:
            return True
        if isinstance(value, dict):
            todo.extend((v, depth + 1) for v in value.values() if isinstance(v, dict | list))
        elif isinstance(value, list):
            todo.extend((v, depth + 1) for v in value if isinstance(v, dict | list))
    return False


class _Frame:
    """A collection being built: its value, path, weight (nodes), and pending mapping key."""

    __slots__ = ("has_key", "height", "key", "key_line", "merges", "path", "value", "weight")

    def __init__(self, value: Any, path: PathKey) -> None:
        self.value = value
        self.path = path
        self.weight = 1
        self.height = 1
        self.has_key = False
        self.key: Any = None
        self.key_line = 0
        self.merges: list[dict[str, Any]] = []


class _Builder:
    """The located reader: builds documents from libyaml's events, under the limits."""

    def __init__(self, text: str, source: str) -> None:
        import yaml

        self.yaml = yaml
        loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        self.loader = loader_class(text)
        self.source = source
        self.stack: list[_Frame] = []
        self.problems: list[Problem] = []

    def documents(self) -> list[Document]:
        yaml = self.yaml
        docs: list[Document] = []
        try:
            while True:
                event = self.loader.get_event()
                if isinstance(event, yaml.StreamEndEvent):
                    break
                if isinstance(event, yaml.DocumentStartEvent):
                    doc = self._document()
                    if doc.data is not None:
                        docs.append(doc)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            if "nesting depth" in (exc.problem or "") and self.stack:
                # libyaml's own depth limit, met while it scans ahead of the events that
                # would reach ours: the same refusal, at the field where the nesting starts.
                raise self._fail(_TOO_DEEP, line=line) from None
            what = " ".join(p for p in (exc.context, exc.problem) if p)
            raise InvalidSpec(Problem(f"malformed YAML: {what}", source=self.source,
                                      line=line)) from None
        except yaml.YAMLError as exc:
            raise InvalidSpec(Problem(f"malformed YAML: {exc}", source=self.source)) from None
        finally:
            self.loader.dispose()
        return docs

    def _document(self) -> Document:
        """Read one document, up to and including its end event."""
        yaml = self.yaml
        doc = Document(source=self.source, data=None)
        self.doc = doc
        self.stack = []
        self.anchors: dict[str, tuple[Any, int, int]] = {}
        self.written = 0
        self.aliased = 0
        self.problems = []
        get_event = self.loader.get_event
        while True:
            event = get_event()
            kind = type(event)
            if kind is yaml.ScalarEvent:
                self._place(self._scalar(event), event, 1, 1)
            elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                self._open(event, {} if kind is yaml.MappingStartEvent else [])
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                self._close()
            elif kind is yaml.AliasEvent:
                self._alias(event)
            elif kind is yaml.DocumentEndEvent:
                break
        if self.problems:
            raise InvalidSpec(self.problems)
        return doc

    def _path_of_next(self) -> PathKey:
        if not self.stack:
            return ()
        top = self.stack[-1]
        if isinstance(top.value, list):
            return (*top.path, len(top.value))
        return (*top.path, top.key) if top.has_key else top.path

    def _fail(self, message: str, event: Any = None, path: PathKey | None = None,
              line: int | None = None) -> InvalidSpec:
        """The problems so far plus ``message`` at ``event``'s line (or ``line``), naming the
        field being built (or ``path``)."""
        field_name = _dotted(path if path is not None else self._path_of_next())
        if len(field_name) > 120:
            field_name = field_name[:117] + "..."
        return InvalidSpec([*self.problems, Problem(
            message, source=self.source,
            line=event.start_mark.line + 1 if event is not None else line,
            field=field_name or None)])

    def _scalar(self, event: Any) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.loader.resolve(self.yaml.ScalarNode, event.value, event.implicit)
        if tag == _STR_TAG:
            return event.value
        if tag == _MERGE_TAG:
            return _MERGE
        construct = self.loader.yaml_constructors.get(tag)
        if construct is None:
            raise self._fail(f"unsupported tag {tag}", event)
        node = self.yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark,
                                    event.style)
        try:
            value = construct(self.loader, node)
        except Exception as exc:  # a constructor's own error: KeyError, ValueError...
            raise self._fail(f"unsupported value {event.value!r}: {exc}", event) from None
        if not isinstance(value, _SCALARS):
            raise self._fail(
                f"{event.value!r} is read as a {type(value).__name__}, which a manifest cannot "
                "hold: quote it to make it a string", event)
        return value

    def _open(self, event: Any, value: Any) -> None:
        tag = event.tag
        if tag not in (None, "!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"):
            raise self._fail(f"unsupported tag {tag}", event)
        if len(self.stack) >= MAX_DEPTH:
            raise self._fail(_TOO_DEEP, event)
        path = self._path_of_next()
        self._place(value, event, 0, 0)
        frame = _Frame(value, path)
        self.stack.append(frame)
        if event.anchor is not None:
            self.anchors[event.anchor] = (value, 0, 0)  # its weight is known at its end

    def _close(self) -> None:
        frame = self.stack.pop()
        if frame.merges:
            explicit = dict(frame.value)
            frame.value.clear()
            for merged in reversed(frame.merges):
                frame.value.update(merged)
            frame.value.update(explicit)
        for name, (value, _, _) in self.anchors.items():
            if value is frame.value:
                self.anchors[name] = (value, frame.weight, frame.height)
        if self.stack:
            parent = self.stack[-1]
            parent.weight += frame.weight
            parent.height = max(parent.height, frame.height + 1)

    def _alias(self, event: Any) -> None:
        anchored = self.anchors.get(event.anchor)
        if anchored is None:
            raise self._fail(f"unknown alias *{event.anchor}", event)
        value, weight, height = anchored
        if weight == 0 and isinstance(value, dict | list):
            raise self._fail(f"alias *{event.anchor} refers to a collection that contains it",
                             event)
        self.aliased += weight
        if self.aliased > max(MIN_ALIAS_NODES, self.written):
            raise self._fail(
                f"aliases expand to more than {max(MIN_ALIAS_NODES, self.written)} nodes "
                "(an alias bomb?)", event)
        if len(self.stack) + height > MAX_DEPTH:
            raise self._fail(f"nested deeper than {MAX_DEPTH} levels (through an alias)", event)
        self._place(value, event, weight, height, aliased=True)

    def _place(self, value: Any, event: Any, weight: int, height: int,
               *, aliased: bool = False) -> None:
        """Put a value (or a collection just opened, with weight 0) where the parser is."""
        if not aliased:
            self.written += 1
            if weight and getattr(event, "anchor", None) is not None:
                self.anchors[event.anchor] = (value, weight, height)
        line = event.start_mark.line + 1
        if not self.stack:
            self.doc.data = value
            self.doc.lines[()] = line
            return
        top = self.stack[-1]
        top.weight += weight
        top.height = max(top.height, height + 1)
        if isinstance(top.value, list):
            self.doc.lines.setdefault((*top.path, len(top.value)), line)
            top.value.append(value)
            return
        if not top.has_key:
            self._key(top, value, event, line)
            return
        top.has_key = False
        key = top.key
        if key is _MERGE:
            if isinstance(value, dict):
                top.merges.append(value)
            elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
                top.merges.extend(value)
            else:
                raise self._fail("a merge key (<<) needs a mapping or a list of mappings",
                                 event, top.path)
            return
        top.value[key] = value

    def _key(self, top: _Frame, key: Any, event: Any, line: int) -> None:
        if key is not _MERGE and not isinstance(key, str):
            raise self._fail(f"mapping key {key!r} is not a string", event, top.path)
        if key in top.value and key is not _MERGE:
            first = self.doc.lines.get((*top.path, key))
            self.problems.append(Problem(
                f"duplicate key {key!r} (first on line {first})", source=self.source,
                line=line, field=_dotted((*top.path, key))))
        top.key = key
        top.has_key = True
        if key is not _MERGE:
            self.doc.lines.setdefault((*top.path, key), line)


class _Merge:
    """The ``<<`` merge key."""

    def __repr__(self) -> str:
        return "<<"


_MERGE: Any = _Merge()


def _dotted(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
