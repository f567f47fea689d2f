"""A real `flowreg apply` on the embedded store (Qdrant Edge) killed with SIGKILL mid-run
converges on rerun: no duplicates, and nothing written before the kill is embedded again. And a
second concurrent apply on the same embedded store with ``--lock-timeout 0`` fails fast and
clearly (waiting for the lock: tests/cli/test_cli_faults.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from flowreg.store import open_store
from tests.support.builders import make_flows, registry_doc
from tests.support.history import done_so_far

N = 3000


def apply_cmd(manifest: Path, store: Path) -> list[str]:
    return [sys.executable, "-m", "flowreg.cli.main", "apply", "-f", str(manifest),
            "--store", str(store), "--batch-size", "5", "-o", "json", "--progress", "never"]


async def stored(store: Path) -> tuple[int, int, set[str]]:
    """(points, distinct names, checksums) of agent_1 in the store at ``store``."""
    flow_store = open_store(str(store))
    try:
        points = await flow_store.snapshot("agent_1")
    finally:
        await flow_store.close()
    return len(points), len({p.name for p in points}), {p.checksum or "" for p in points}


@pytest.fixture(scope="module")
def big_manifest(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("crash") / "big.yaml"
    path.write_text(yaml.safe_dump(registry_doc(make_flows(N))), encoding="utf-8")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["done>=600", "done>=1800", "0.3 s after the start"])
def test_sigkilled_apply_converges_on_rerun(big_manifest, tmp_path, kill_at):
    store, history = tmp_path / "qdrant", tmp_path / "history.db"
    proc = subprocess.Popen(apply_cmd(big_manifest, store), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    started: float | None = None
    while time.monotonic() < deadline and proc.poll() is None:
        done = done_so_far(history)
        if kill_at.startswith("done") and done >= int(kill_at[6:]):
            break
        if not kill_at.startswith("done"):
            # Mid-batch, at no particular point: some time after the run has planned.
            if started is None and done >= 0:
                started = time.monotonic()
            if started is not None and time.monotonic() - started >= 0.3:
                break
        time.sleep(0.02)
    assert proc.poll() is None, "apply finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)

    written, names, _ = asyncio.run(stored(store))
    assert written == names < N  # no duplicates even mid-run

    rerun = subprocess.run(apply_cmd(big_manifest, store), capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert report["embedded_texts"] == N - written
    assert len(report["created"]) == N - written and len(report["skipped"]) == written
    assert report["resumed"] is not None and report["resumed"]["total"] == N

    total, names, checksums = asyncio.run(stored(store))
    assert total == names == N
    with sqlite3.connect(history) as db:
        statuses = [s for (s,) in db.execute("SELECT status FROM runs ORDER BY started_at")]
    assert statuses == ["interrupted", "succeeded"]

    third = subprocess.run(apply_cmd(big_manifest, store), capture_output=True, text=True,
                           timeout=300)
    again = json.loads(third.stdout)
    assert again["changes"] == 0 and again["store_writes"] == 0 and again["embedded_texts"] == 0
    assert len(checksums) == N


def test_a_second_concurrent_apply_fails_fast_and_clearly(tmp_path):
    store = tmp_path / "qdrant"
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump(registry_doc(make_flows(3))), encoding="utf-8")
    holder = open_store(str(store))
    asyncio.run(holder.ensure_collection(384))  # the shard exists and is held
    try:
        started = time.monotonic()
        result = subprocess.run([*apply_cmd(manifest, store), "--lock-timeout", "0"],
                                capture_output=True, text=True, timeout=60)
        assert time.monotonic() - started < 30
        assert result.returncode == 4
        assert "is in use by another process" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        asyncio.run(holder.close())
    assert subprocess.run(apply_cmd(manifest, store), capture_output=True).returncode == 0
