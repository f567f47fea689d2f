"""The model: a flow, a registry of flows, and what defines a flow's identity and content.

A flow's *content checksum* covers every field that defines it except its name, so a renamed
flow keeps its checksum (that is how renames are detected). Its *embedding text* is what the
embedder sees; a change that leaves the text alone (a blueprint, a condition) never re-embeds.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

import orjson

from flowreg.checksum import CANONICAL_OPTIONS, PREFIX, sha256_of, sha256_text

T = TypeVar("T")

_dumps = orjson.dumps
_sha256 = hashlib.sha256

CHECKSUM_FORMAT = 1
"""Version of the checksummed encoding; bump it only with a migration note."""


class _cached(Generic[T]):
    """A cached property without ``functools.cached_property``'s lock (it runs on hot paths)."""

    def __init__(self, fn: Callable[[Any], T]) -> None:
        self.fn, self.name = fn, fn.__name__

    def __get__(self, obj: Any, owner: type | None = None) -> T:
        value = self.fn(obj)
        # The instance attribute shadows this descriptor from now on. Set as an attribute, not
        # through ``obj.__dict__``: touching that would give every flow a dict of its own (an
        # object the garbage collector must then scan) instead of the shared-key layout.
        object.__setattr__(obj, self.name, value)
        return value


POINT_NAMESPACE = uuid.UUID("6f1e3c2a-5d4b-4f0e-9a7c-2b8d1e0f4a93")


_NAMESPACE_BYTES = POINT_NAMESPACE.bytes
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def point_id(agent_id: str, name: str) -> str:
    """The Qdrant point id of a flow: uuid5 of agent and name, stable across runs and hosts.

    Equal to ``str(uuid.uuid5(POINT_NAMESPACE, f"{agent_id}\\x00{name}"))``, computed on the
    hex digest without building UUID objects (it runs once per written flow).
    """
    h = hashlib.sha1(_NAMESPACE_BYTES + f"{agent_id}\x00{name}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


@dataclass(frozen=True)
class Flow:
    """One declared flow (a skill of the agent).

    ``blueprint`` is the flow's structure as plain data (validated by ``flowreg.blueprint``);
    ``checksum`` is the declared checksum, if any — ``content_checksum`` is the computed one.
    """

    name: str
    description: str
    examples: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()
    blueprint: Mapping[str, Any] | None = None
    checksum: str | None = None

    def content(self) -> dict[str, Any]:
        """Every field that defines the flow, except its name and declared checksum."""
        return {
            "format": CHECKSUM_FORMAT,
            "description": self.description,
            "examples": list(self.examples),
            "conditions": list(self.conditions),
            "blueprint": self.blueprint,
        }

    @_cached
    def content_checksum(self) -> str:
        """``sha256:<64 hex>`` over the canonical JSON of ``content()``."""
        # content() and sha256_of inlined (this runs for every declared flow on every sync);
        # tuples are left as they are: they encode as the same JSON arrays.
        content = {"format": CHECKSUM_FORMAT, "description": self.description,
                   "examples": self.examples, "conditions": self.conditions,
                   "blueprint": self.blueprint}
        try:
            encoded = _dumps(content, option=CANONICAL_OPTIONS)
        except TypeError:  # beyond orjson: sha256_of takes the standard library's way
            return sha256_of(content)
        return PREFIX + _sha256(encoded).hexdigest()

    def share_checksum(self) -> None:
        """Hold the declared checksum as the computed one: one string instead of two equal
        ones (for 50,000 flows, 6 MB). Raises ``ValueError`` if they differ."""
        if self.checksum != self.content_checksum:
            raise ValueError(f"flow {self.name!r}: declared checksum {self.checksum} is not "
                             f"{self.content_checksum}")
        object.__setattr__(self, "content_checksum", self.checksum)

    @_cached
    def embedding_text(self) -> str:
        """The text the embedder sees: the description, then one example a line."""
        return "\n".join([self.description, *self.examples])

    @_cached
    def text_checksum(self) -> str:
        """Checksum of ``embedding_text``; a flow is re-embedded only when this changes."""
        return sha256_text(self.embedding_text)

    def to_manifest(self) -> dict[str, Any]:
        """The flow as it is written in a FlowRegistry manifest (with its checksum)."""
        out: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.examples:
            out["examples"] = list(self.examples)
        if self.conditions:
            out["conditions"] = list(self.conditions)
        if self.blueprint is not None:
            out["blueprint"] = plain(self.blueprint)
        out["checksum"] = self.content_checksum
        return out


@dataclass(frozen=True)
class SyncPolicy:
    """What one sync may do beyond creating and updating.

    ``prune`` deletes flows this owner wrote earlier and no longer declares; at most
    ``max_deletions`` of them per sync (``None``: no limit), and an empty declaration deletes
    nothing unless ``allow_empty`` is set.
    """

    prune: bool = True
    max_deletions: int | None = 25
    allow_empty: bool = False


@dataclass(frozen=True)
class DeclaredFlows:
    """What a FlowRegistry declares, as the engine syncs it: one owner's flows for one agent.

    ``owner`` identifies the declaring registry (``namespace/name``); points written for it
    carry it, and flowreg never overwrites or deletes points of another owner.
    """

    agent_id: str
    owner: str
    flows: tuple[Flow, ...] = field(default_factory=tuple)

    def by_name(self) -> dict[str, Flow]:
        """Flows keyed by name (names are unique once a registry is validated)."""
        return {f.name: f for f in self.flows}

    @_cached
    def names(self) -> tuple[str, ...]:
        """The flows' names, in declaration order (computed once)."""
        return tuple([f.name for f in self.flows])

    @_cached
    def content_checksums(self) -> tuple[str, ...]:
        """The flows' content checksums, in declaration order (computed once)."""
        return tuple([f.content_checksum for f in self.flows])


@dataclass(frozen=True)
class DeferredFlows:
    """A registry known by what a sync's digest reads of it (names and content checksums, in
    declaration order), whose flows are made only if the sync needs them.

    ``load`` returns the full ``DeclaredFlows``, which must have the same owner, agent, names
    and checksums; it raises ``InvalidSpec`` if its source no longer gives them.
    ``size_warning`` is what ``flowreg.size.cluster_size_warning`` said of the full registry.
    """

    agent_id: str
    owner: str
    names: tuple[str, ...]
    content_checksums: tuple[str, ...]
    load: Callable[[], DeclaredFlows] = field(compare=False, repr=False)
    size_warning: str | None = None


class StoredPoint(NamedTuple):
    """What the plan needs to know of a point in the store (no vector, no full payload)."""

    id: str
    agent_id: str
    name: str
    owner: str | None
    checksum: str | None
    text_checksum: str | None
    embedder: str | None


Entry = tuple[str, Mapping[str, Any]]
"""A point as read for planning: its id and its payload subset (``SNAPSHOT_FIELDS``)."""


class Snapshot:
    """The points one agent has in the store, by flow name, as read for planning.

    ``first[name]`` is the first point read under ``name``; ``more`` holds every further point
    under a name already seen (duplicates, or the same name held by several owners): the plan
    looks there only for names it finds in ``multi``. Entries keep the payload subset as the
    store returned it, so reading 50,000 points makes no object per point beyond the entry.
    Iterating gives ``StoredPoint``s (all of them, in the order read).
    """

    __slots__ = ("agent_id", "first", "more", "multi")

    def __init__(self, agent_id: str, first: dict[str, Entry] | None = None,
                 more: list[Entry] | None = None) -> None:
        self.agent_id = agent_id
        self.first: dict[str, Entry] = first if first is not None else {}
        self.more: list[Entry] = more if more is not None else []
        self.multi: frozenset[str] = frozenset(payload["name"] for _, payload in self.more)

    @classmethod
    def of(cls, agent_id: str, points: Iterable[StoredPoint]) -> Snapshot:
        """The snapshot holding ``points`` of ``agent_id`` (points of other agents are left out)."""
        first: dict[str, Entry] = {}
        more: list[Entry] = []
        for p in points:
            if p.agent_id != agent_id:
                continue
            entry = (p.id, {"agent_id": p.agent_id, "name": p.name, "owner": p.owner,
                            "checksum": p.checksum, "text_checksum": p.text_checksum,
                            "embedder": p.embedder})
            if p.name in first:
                more.append(entry)
            else:
                first[p.name] = entry
        return cls(agent_id, first, more)

    def named(self, name: str) -> list[StoredPoint]:
        """Every point under ``name``, the first read first."""
        entry = self.first.get(name)
        if entry is None:
            return []
        points = [self._point(entry)]
        if name in self.multi:
            points.extend(self._point(e) for e in self.more if e[1]["name"] == name)
        return points

    def __iter__(self) -> Iterator[StoredPoint]:
        for entry in self.first.values():
            yield self._point(entry)
        for entry in self.more:
            yield self._point(entry)

    def __len__(self) -> int:
        return len(self.first) + len(self.more)

    def _point(self, entry: Entry) -> StoredPoint:
        pid, payload = entry
        get = payload.get
        return StoredPoint(pid, self.agent_id, get("name"), get("owner"), get("checksum"),
                           get("text_checksum"), get("embedder"))


def plain(value: Any) -> Any:
    """Deep-copy mappings and sequences into plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
