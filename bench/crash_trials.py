"""SIGKILL trials: a real `flowreg apply` of 3,000 flows on the embedded store (Qdrant Edge),
killed at a random moment of its run, then run again; counts converged runs, duplicates and
lost flows.

Usage::

    python -m bench.crash_trials --trials 20

Each trial: a fresh store; the apply (batches of 5, so a run is long enough to be hit
anywhere) is killed a uniformly random time between its first checkpoint and its expected end;
the rerun must exit 0, leave exactly 3,000 points with 3,000 distinct names, embed only what the
killed run had not written, and a third apply must be a no-op.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from flowreg.store import open_store

N = 3000


def manifest(path: Path) -> None:
    flows = [{"name": f"flow_{i:05d}", "description": f"Handle request kind {i}",
              "examples": [f"please do thing {i}", f"I want {i} done"]} for i in range(N)]
    path.write_text(yaml.safe_dump({"apiVersion": "flowreg.dev/v1alpha1", "kind": "FlowRegistry",
                                    "metadata": {"name": "bot", "namespace": "default"},
                                    "spec": {"agentId": "agent_1", "flows": flows}}))


def apply(manifest_path: Path, store: Path) -> list[str]:
    return [sys.executable, "-m", "flowreg.cli.main", "apply", "-f", str(manifest_path),
            "--store", str(store), "--batch-size", "5", "-o", "json", "--progress", "never"]


def planned(history: Path) -> bool:
    try:
        with sqlite3.connect(history, timeout=1) as db:
            row = db.execute("SELECT total FROM runs WHERE status = 'running'").fetchone()
    except sqlite3.OperationalError:
        return False
    return bool(row and row[0])


def held(store: Path) -> tuple[int, int]:
    async def read() -> tuple[int, int]:
        s = open_store(str(store))
        try:
            points = await s.snapshot("agent_1")
            return len(points), len({p.name for p in points})
        finally:
            await s.close()
    return asyncio.run(read())


def trial(work: Path, manifest_path: Path, run_seconds: float, rng: random.Random) -> dict:
    store, history = work / "qdrant", work / "history.db"
    proc = subprocess.Popen(apply(manifest_path, store), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    while not planned(history) and proc.poll() is None:
        time.sleep(0.005)
    delay = rng.uniform(0.0, run_seconds)
    time.sleep(delay)
    finished_first = proc.poll() is not None
    if not finished_first:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written, _ = held(store)
    rerun = subprocess.run(apply(manifest_path, store), capture_output=True, text=True)
    report = json.loads(rerun.stdout) if rerun.returncode == 0 else {}
    total, names = held(store)
    third = json.loads(subprocess.run(apply(manifest_path, store), capture_output=True,
                                      text=True).stdout)
    return {"delay": delay, "killed_before_end": not finished_first, "written": written,
            "rerun_ok": rerun.returncode == 0, "embedded": report.get("embedded_texts"),
            "points": total, "names": names, "third_changes": third["changes"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest_path = root / "big.yaml"
        manifest(manifest_path)
        # one uninterrupted run measures how long the sync itself takes
        probe = subprocess.run(apply(manifest_path, root / "probe"), check=True,
                               capture_output=True, text=True)
        run_seconds = float(json.loads(probe.stdout)["duration_seconds"])
        results = []
        for i in range(args.trials):
            work = root / f"t{i}"
            work.mkdir()
            results.append(trial(work, manifest_path, run_seconds, rng))
            r = results[-1]
            print(f"trial {i + 1:>2}: killed after {r['delay']:.2f} s with {r['written']:>4} "
                  f"written; rerun embedded {r['embedded']}; {r['points']} points, "
                  f"{r['names']} names; third apply {r['third_changes']} change(s)")
    ok = [r for r in results if r["rerun_ok"] and r["points"] == r["names"] == N
          and r["embedded"] == N - r["written"] and r["third_changes"] == 0]
    mid = sum(r["killed_before_end"] and 0 < r["written"] < N for r in results)
    print(f"{len(ok)}/{len(results)} converged (0 duplicates, 0 lost, nothing embedded twice); "
          f"{mid} killed mid-run; duplicates {sum(r['points'] - r['names'] for r in results)}, "
          f"lost {sum(N - r['names'] for r in results)}")


if __name__ == "__main__":
    main()
