"""No orphaned etcd or kube-apiserver: a control plane stops with the process that started it.

A starter killed with SIGKILL cannot remove the control plane's work directory (etcd's data,
some 120 MB): the test does."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.controlplane import IDLE_STARTUP_SECONDS, find_testbin, scaled

REPO = Path(__file__).resolve().parents[2]
SCRIPT = """
import json, sys, time
from pathlib import Path
from tests.support.controlplane import ControlPlane
plane = ControlPlane(Path(sys.argv[1])).start()
print(json.dumps({"pids": plane.pids(), "work": str(plane.work_dir)}), flush=True)
try:
    time.sleep(600)
finally:
    plane.stop()
"""


def interruptible() -> None:  # pragma: no cover - runs in the child before exec
    """In the starter before exec: SIGINT delivered, as a terminal's Ctrl-C would be.

    A process started in the background by a non-interactive shell (``hack/test.sh &``, a
    CI runner's script) has SIGINT ignored, and every child inherits that: Python then
    installs no KeyboardInterrupt handler, and the starter would sleep through the signal.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_children_die_with_the_starter(control_plane, sig):
    starter = subprocess.Popen([sys.executable, "-c", SCRIPT, str(find_testbin())], cwd=REPO,
                               stdout=subprocess.PIPE, text=True, preexec_fn=interruptible)
    work = ""
    try:
        # deadlines: ten times what a start (and a stop) takes here, as measured
        ready, _, _ = select.select([starter.stdout], [], [], scaled(10 * IDLE_STARTUP_SECONDS))
        assert ready, "the starter did not start its control plane"
        started = json.loads(starter.stdout.readline())
        pids, work = started["pids"], started["work"]
        assert set(pids) == {"etcd", "kube-apiserver"}
        assert all(alive(pid) for pid in pids.values())
        starter.send_signal(sig)
        starter.wait(scaled(60))
        deadline = time.monotonic() + scaled(20)
        while any(alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in pids.values()), pids
    finally:
        if starter.poll() is None:
            starter.kill()
        if work:
            shutil.rmtree(work, ignore_errors=True)
