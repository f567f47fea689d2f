"""The benchmarks remove the stores they make: a run of ``bench_sync`` at 50,000 flows makes
stores of some 160 MB each, and runs repeated for a comparison would otherwise fill the disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", [
    ["bench.edge_profile", "60", "--repeat", "1"],
    ["bench.bench_sync", "--sizes", "60", "--store", "path", "--systems", "edge",
     "--repeat", "1", "--page-sizes", ""],
    ["bench.bench_sync", "--sizes", "60", "--store", "memory", "--systems", "edge",
     "--repeat", "1", "--page-sizes", ""],
], ids=["edge_profile", "bench_sync-path", "bench_sync-memory"])
def test_a_benchmark_run_leaves_its_temporary_directory_empty(tmp_path: Path,
                                                               command: list[str]) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    out = subprocess.run([sys.executable, "-m", *command], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "first apply" in out.stdout  # it measured something
    assert sorted(p.name for p in temp.iterdir()) == []
