"""Whole-process time of ``flowreg lint`` on a generated registry, per embedder.

    python -m bench.bench_lint --size 5000 --repeat 3 --embedders hashing,wordllama

The registry is written by ``bench.bench_cli.write_registry`` (``bench.flows``: 3-5 examples
a flow, so 5,000 flows hold about 20,000 examples) before any clock starts. Each run is one
real ``flowreg lint`` process, start to exit. Prints the median and fastest wall time, the
CPU time (user + system) of the median run, its peak RSS, and the load average: on a shared
machine the wall time moves with the load, the CPU time much less.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_cli import write_registry


def run(argv: list[str]) -> tuple[float, float, float]:
    """Wall time (s), CPU time (s) and peak RSS (MB) of one process; exit 0 or 8 expected."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 8):
        stderr = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{' '.join(argv)} exited {code}:\n{stderr[-2000:]}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--embedders", default="hashing,wordllama")
    args = parser.parse_args()
    flowreg = shutil.which("flowreg") or str(Path(sys.executable).with_name("flowreg"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "registry.yaml"
        write_registry(args.size, path)
        print(f"flows={args.size} load average before: {os.getloadavg()[0]:.1f}")
        print(f"{'embedder':<10} {'median s':>9} {'fastest s':>9} {'cpu s':>7} {'rss MB':>7}")
        for kind in args.embedders.split(","):
            runs = [run([flowreg, "lint", "-f", str(path), "--embedder", kind])
                    for _ in range(args.repeat)]
            runs.sort()
            wall, cpu, rss = runs[len(runs) // 2]
            print(f"{kind:<10} {wall:>9.2f} "
                  f"{runs[0][0]:>9.2f} {cpu:>7.2f} {rss:>7.0f}")
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
