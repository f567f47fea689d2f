"""The plan: a pure function from (declared registry, stored points) to the changes to make.

``plan_sync`` never touches a store; it is printed by ``flowreg plan``, refused by ``guard``,
or applied as a whole by ``flowreg.sync``. Laws (checked by property-based tests): applying a
plan makes the owner's points equal the declaration; planning again gives only skips; points of
another owner are never written or deleted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from flowreg.errors import DeletionGuard
from flowreg.flow import DeclaredFlows, Flow, Snapshot, StoredPoint, SyncPolicy, point_id


class VectorSource(str, Enum):
    """Where a written point's vector comes from."""

    EMBED = "embed"  # call the embedder
    KEEP = "keep"  # the point keeps its vector; only the payload is rewritten
    COPY = "copy"  # copy the vector of another point with the same text and embedder


@dataclass(frozen=True)
class Write:
    """Write ``flow`` to point ``point_id``, with the vector from ``vector``."""

    flow: Flow
    point_id: str
    vector: VectorSource
    copy_from: str | None = None


class RemovalReason(str, Enum):
    UNDECLARED = "undeclared"  # the owner no longer declares this flow
    DUPLICATE = "duplicate"  # a second point for a declared name
    RENAMED = "renamed"  # the flow lives on under a new name


@dataclass(frozen=True)
class Removal:
    point_id: str
    name: str
    reason: RemovalReason


@dataclass(frozen=True)
class Conflict:
    """A declared flow whose point belongs to another owner; it is left untouched."""

    name: str
    owner: str | None
    point_id: str


@dataclass(frozen=True)
class Plan:
    """The changes one sync makes for one registry, as a value."""

    agent_id: str
    owner: str
    embedder: str
    creates: tuple[Write, ...] = ()
    updates: tuple[Write, ...] = ()
    deletes: tuple[Removal, ...] = ()
    skips: tuple[str, ...] = ()
    renames: tuple[tuple[str, str], ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    kept: tuple[str, ...] = field(default=())
    """Undeclared flows of this owner left in place because pruning is off."""

    @property
    def writes(self) -> tuple[Write, ...]:
        return self.creates + self.updates

    @property
    def change_count(self) -> int:
        return len(self.creates) + len(self.updates) + len(self.deletes)

    @property
    def is_noop(self) -> bool:
        return self.change_count == 0

    @property
    def embed_count(self) -> int:
        return sum(1 for w in self.writes if w.vector is VectorSource.EMBED)

    @property
    def pruned(self) -> tuple[Removal, ...]:
        """Deletions that lose a declared-once flow (what the deletion guard counts)."""
        return tuple(r for r in self.deletes if r.reason is RemovalReason.UNDECLARED)


def plan_sync(registry: DeclaredFlows, points: Snapshot | Iterable[StoredPoint], embedder: str,
              policy: SyncPolicy | None = None, *, verify_ids: bool = True) -> Plan:
    """The minimum set of changes that makes the store hold exactly ``registry``'s flows.

    ``points`` are what the store holds for ``registry.agent_id`` (points of other agents are
    ignored); other owners' points under names the registry does not declare are never read
    and may be left out. Points whose owner differs from ``registry.owner`` are never written
    or deleted: a declared name held by another owner becomes a ``Conflict``. Every write goes
    to the flow's canonical point id.

    With ``verify_ids`` (the default) a flow is skipped only if its one point sits at its
    canonical id; without it, the one current point of a flow is trusted wherever it sits (as
    its stored checksums are trusted), which spares hashing every name on every sync. A point
    moved off its id by another writer is then moved back when its flow next changes, or by a
    planning pass that verifies ids.
    """
    policy = policy or SyncPolicy()
    agent, owner = registry.agent_id, registry.owner
    snapshot = points if isinstance(points, Snapshot) else Snapshot.of(agent, points)
    if snapshot.agent_id != agent:
        raise ValueError(f"a snapshot of agent {snapshot.agent_id!r} cannot plan agent {agent!r}")
    first, multi = snapshot.first, snapshot.multi

    creates: list[Write] = []
    updates: list[Write] = []
    deletes: list[Removal] = []
    skips: list[str] = []
    conflicts: list[Conflict] = []
    matched = 0  # declared names found in the snapshot
    skip = skips.append

    for flow in registry.flows:
        name = flow.name
        entry = first.get(name)
        if entry is None:  # no point under this name: a create (a rename's is found below)
            creates.append(Write(flow, point_id(agent, name), VectorSource.EMBED))
            continue
        matched += 1
        # The usual case, kept tight: one point, ours, current, where it belongs.
        payload = entry[1]
        if (payload.get("checksum") == flow.content_checksum
                and payload.get("owner") == owner and payload.get("embedder") == embedder
                and name not in multi
                and (not verify_ids or entry[0] == point_id(agent, name))):
            skip(name)
            continue
        existing = snapshot.named(name)
        other = next((p for p in existing if p.owner != owner), None)
        if other is not None:
            conflicts.append(Conflict(name, other.owner, other.id))
            continue
        pid = point_id(agent, name)
        canonical = next((p for p in existing if p.id == pid), None)
        deletes.extend(Removal(p.id, p.name, RemovalReason.DUPLICATE)
                       for p in existing if p is not canonical)
        if canonical is None:
            creates.append(_write(flow, pid, _donor(flow, embedder, existing)))
        elif canonical.checksum == flow.content_checksum and canonical.embedder == embedder:
            skip(name)
        elif canonical.text_checksum == flow.text_checksum and canonical.embedder == embedder:
            updates.append(Write(flow, pid, VectorSource.KEEP))
        else:
            updates.append(Write(flow, pid, VectorSource.EMBED))

    undeclared: list[StoredPoint] = []
    if matched < len(first):
        declared = {f.name for f in registry.flows}
        undeclared = [p for name in first if name not in declared
                      for p in snapshot.named(name) if p.owner == owner]
    renames: list[tuple[str, str]] = []
    kept: list[str] = []
    removed_as_rename: set[str] = set()
    by_content: dict[str, list[StoredPoint]] = {}
    for p in undeclared if policy.prune else ():
        if p.checksum is not None:
            by_content.setdefault(p.checksum, []).append(p)
    for i, w in enumerate(creates):
        if w.vector is not VectorSource.EMBED:
            continue
        candidates = by_content.get(w.flow.content_checksum)
        if candidates:
            old = candidates.pop()
            removed_as_rename.add(old.id)
            renames.append((old.name, w.flow.name))
            if old.embedder == embedder and old.text_checksum == w.flow.text_checksum:
                creates[i] = Write(w.flow, w.point_id, VectorSource.COPY, old.id)
    # A vector already stored for the same text and model is copied, never re-embedded.
    if any(w.vector is VectorSource.EMBED for w in (*creates, *updates)):
        donors = {p.text_checksum: p for p in snapshot
                  if p.owner == owner and p.embedder == embedder and p.text_checksum}
        for writes in (creates, updates) if donors else ():
            for i, w in enumerate(writes):
                donor = donors.get(w.flow.text_checksum)
                if w.vector is VectorSource.EMBED and donor is not None:
                    writes[i] = Write(w.flow, w.point_id, VectorSource.COPY, donor.id)
    for p in undeclared:
        if p.id in removed_as_rename:
            deletes.append(Removal(p.id, p.name, RemovalReason.RENAMED))
        elif policy.prune:
            deletes.append(Removal(p.id, p.name, RemovalReason.UNDECLARED))
        else:
            kept.append(p.name)

    return Plan(
        agent_id=agent, owner=owner, embedder=embedder,
        creates=tuple(creates), updates=tuple(updates), deletes=tuple(deletes),
        skips=tuple(skips), renames=tuple(renames), conflicts=tuple(conflicts),
        kept=tuple(sorted(set(kept))),
    )


def guard(plan: Plan, registry: DeclaredFlows, policy: SyncPolicy) -> None:
    """Refuse, with ``DeletionGuard``, a plan that deletes more than ``policy`` allows."""
    pruned = plan.pruned
    if not pruned:
        return
    if not registry.flows and not policy.allow_empty:
        raise DeletionGuard(
            f"refusing to delete all {len(pruned)} flow(s) of agent {plan.agent_id!r} owned by "
            f"{plan.owner}: the registry declares no flows. If that is intended, allow an "
            "empty registry (--allow-empty, or spec.deletionGuard.allowEmpty: true).")
    limit = policy.max_deletions
    if limit is not None and len(pruned) > limit:
        names = ", ".join(r.name for r in pruned[:5]) + (", ..." if len(pruned) > 5 else "")
        raise DeletionGuard(
            f"refusing to delete {len(pruned)} flow(s) of agent {plan.agent_id!r} ({names}): "
            f"more than the limit of {limit} per sync. Raise the limit (--max-deletions N, or "
            "spec.deletionGuard.maxDeletions) if that is intended.")


def _donor(flow: Flow, embedder: str, candidates: list[StoredPoint]) -> StoredPoint | None:
    return next((p for p in candidates
                 if p.embedder == embedder and p.text_checksum == flow.text_checksum), None)


def _write(flow: Flow, pid: str, donor: StoredPoint | None) -> Write:
    if donor is None:
        return Write(flow, pid, VectorSource.EMBED)
    return Write(flow, pid, VectorSource.COPY, donor.id)
