"""The sync report: what one sync did (or, for a dry run, would do), as names and counts."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any

_NAME_LISTS = frozenset({"created", "updated", "deleted", "skipped", "duplicates_removed", "kept",
                         "warnings"})
"""The fields of ``SyncReport`` that hold lists of strings."""


@dataclass
class SyncReport:
    """Result of syncing one registry.

    ``created``/``updated``/``deleted``/``skipped`` are flow names; a rename is listed only in
    ``renamed`` and a removed duplicate point only in ``duplicates_removed``. ``conflicts`` are
    declared flows left alone because another owner holds them; ``kept`` are undeclared flows
    left in place because pruning is off.
    """

    agent_id: str
    owner: str
    run_id: str = ""
    dry_run: bool = False
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    renamed: list[dict[str, str]] = field(default_factory=list)
    duplicates_removed: list[str] = field(default_factory=list)
    conflicts: list[dict[str, str | None]] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    embedding_calls: int = 0
    embedded_texts: int = 0
    vectors_reused: int = 0
    store_calls: int = 0
    store_writes: int = 0
    points_written: int = 0
    points_deleted: int = 0
    batches: int = 0
    duration_seconds: float = 0.0
    resumed: dict[str, Any] | None = None
    digest: str = ""
    """The registry digest: ``matched`` (nothing was read), ``written`` (after a full
    comparison), ``none`` (not written: conflicts remain); empty for a dry run."""
    collection: dict[str, Any] | None = None
    """The collection's shards, replicas, consistency and tenant index (Qdrant servers)."""
    warnings: list[str] = field(default_factory=list)
    """Where the collection differs from the configured settings (it is used as it is)."""

    @property
    def change_count(self) -> int:
        return (len(self.created) + len(self.updated) + len(self.deleted)
                + len(self.renamed) + len(self.duplicates_removed))

    def summary(self, max_names: int = 8) -> str:
        """``2 change(s), 3 unchanged (CREATE a, UPDATE b, SKIP c, ...)``, plus conflicts."""
        items = ([f"CREATE {n}" for n in self.created] + [f"UPDATE {n}" for n in self.updated]
                 + [f"RENAME {r['from']} -> {r['to']}" for r in self.renamed]
                 + [f"DELETE {n}" for n in self.deleted]
                 + [f"DEDUPLICATE {n}" for n in self.duplicates_removed]
                 + [f"SKIP {n}" for n in self.skipped])
        shown = ", ".join(items[:max_names]) + (", ..." if len(items) > max_names else "")
        verb = "would make " if self.dry_run else ""
        text = f"{verb}{self.change_count} change(s), {len(self.skipped)} unchanged"
        if shown:
            text += f" ({shown})"
        if self.conflicts:
            text += f"; {len(self.conflicts)} conflict(s): {self.conflict_owners()}"
        if self.kept:
            text += f"; {len(self.kept)} undeclared flow(s) kept (prune is off)"
        return text

    def conflict_owners(self, limit: int = 5) -> str:
        """``a (owned by ns/x), b (owned by ns/y) and 3 more``: the first ``limit`` conflicts."""
        owners = ", ".join(f"{c['flow']} (owned by {c['owner']})"
                           for c in self.conflicts[:limit])
        more = len(self.conflicts) - limit
        return owners + (f" and {more} more" if more > 0 else "")

    def conflict_message(self) -> str:
        """The one sentence that says a sync met conflicts (the CLI's error, the status)."""
        return (f"{len(self.conflicts)} declared flow(s) belong to another registry and were "
                f"left untouched: {self.conflict_owners()}")

    def to_dict(self, max_names: int | None = None) -> dict[str, Any]:
        """Plain data; with ``max_names``, name lists are cut and their full counts added."""
        # As dataclasses.asdict would give, without its call per list item (a no-op of 50,000
        # flows reports 50,000 names): lists of names are copied as lists, the rest deep-copied.
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _NAME_LISTS:
                value = list(value)
            elif isinstance(value, (list, dict)):
                value = copy.deepcopy(value)
            data[f.name] = value
        data["changes"] = self.change_count
        if max_names is not None:
            for key in ("created", "updated", "deleted", "skipped", "renamed",
                        "duplicates_removed", "conflicts", "kept"):
                values = data[key]
                data[f"{key}Count"] = len(values)
                data[key] = values[:max_names]
        return data
