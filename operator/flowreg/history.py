"""Run history and checkpoints, in a small SQLite file beside the store.

Each apply is a run: it starts ``running``, records a checkpoint (items done of total) after
every batch, and ends ``succeeded``, ``failed`` (with the error), or ``refused`` (a safety
guard). A run still marked ``running`` when the next one for the same owner starts was
interrupted; the new run marks it so and reports where it had got to.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    started_at  REAL NOT NULL,
    finished_at REAL,
    status      TEXT NOT NULL,
    done        INTEGER NOT NULL DEFAULT 0,
    total       INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    report      TEXT
);
CREATE INDEX IF NOT EXISTS runs_owner ON runs (owner, started_at);
"""


@dataclass(frozen=True)
class Checkpoint:
    """Where a run is: items done of total, and its last error."""

    run_id: str
    done: int
    total: int
    error: str | None = None


@dataclass(frozen=True)
class Run:
    """One row of the history."""

    run_id: str
    owner: str
    agent_id: str
    started_at: float
    finished_at: float | None
    status: str
    done: int
    total: int
    error: str | None
    report: dict[str, Any] | None


class RunHistory:
    """Runs and their checkpoints in SQLite (``:memory:`` or a file, created on first use)."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def start(self, run_id: str, owner: str, agent_id: str) -> Run | None:
        """Record a new running run; return the owner's interrupted run, if any."""
        row = self._db.execute(
            "SELECT * FROM runs WHERE owner = ? AND status = 'running' "
            "ORDER BY started_at DESC LIMIT 1", (owner,)).fetchone()
        interrupted = _run(row) if row else None
        if interrupted is not None:
            self._db.execute(
                "UPDATE runs SET status = 'interrupted', finished_at = ? "
                "WHERE owner = ? AND status = 'running'", (time.time(), owner))
        self._db.execute(
            "INSERT INTO runs (run_id, owner, agent_id, started_at, status) "
            "VALUES (?, ?, ?, ?, 'running')", (run_id, owner, agent_id, time.time()))
        return interrupted

    def checkpoint(self, checkpoint: Checkpoint) -> None:
        """Save how far a run has got (after every batch)."""
        self._db.execute(
            "UPDATE runs SET done = ?, total = ?, error = ? WHERE run_id = ?",
            (checkpoint.done, checkpoint.total, checkpoint.error, checkpoint.run_id))

    def finish(self, run_id: str, status: str, *, report: dict[str, Any] | None = None,
               error: str | None = None) -> None:
        """Close a run as ``succeeded``, ``failed`` or ``refused``."""
        self._db.execute(
            "UPDATE runs SET status = ?, finished_at = ?, error = ?, report = ? "
            "WHERE run_id = ?",
            (status, time.time(), error, json.dumps(report) if report is not None else None,
             run_id))

    def runs(self, owner: str | None = None, limit: int = 20) -> list[Run]:
        """The latest runs, newest first."""
        if owner is None:
            rows = self._db.execute(
                "SELECT * FROM runs ORDER BY started_at DESC LIMIT ?", (limit,)).fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM runs WHERE owner = ? ORDER BY started_at DESC LIMIT ?",
                (owner, limit)).fetchall()
        return [_run(r) for r in rows]

    def get(self, run_id: str) -> Run | None:
        row = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return _run(row) if row else None


def _run(row: tuple[Any, ...]) -> Run:
    (run_id, owner, agent_id, started, finished, status, done, total, error, report) = row
    return Run(run_id, owner, agent_id, started, finished, status, done, total, error,
               json.loads(report) if report else None)
