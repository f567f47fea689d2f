"""What a running ``flowreg apply`` has done, read from its run history (SQLite)."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def done_so_far(history: Path) -> int:
    """Items done by the running apply once it has planned (its total is known); -1 before."""
    if not history.exists():
        return -1
    try:
        with sqlite3.connect(history, timeout=1) as db:
            row = db.execute("SELECT done, total FROM runs WHERE status = 'running'").fetchone()
    except sqlite3.OperationalError:
        return -1
    return int(row[0]) if row and row[1] else -1
