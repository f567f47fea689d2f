"""Real ``flowreg apply`` processes under faults: a store another process holds, SIGINT and
SIGTERM mid-apply, a full disk under an embedded store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from flowreg.store import open_store
from flowreg.store.space import MIB, RESERVE, unallocated_bytes
from tests.support.builders import make_flows, registry_doc
from tests.support.history import done_so_far

N = 3000


def apply_cmd(manifest: Path, store: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "flowreg.cli.main", "apply", "-f", str(manifest),
            "--store", str(store), "-o", "json", "--progress", "never", *extra]


def manifest_of(path: Path, n: int) -> Path:
    path.write_text(yaml.safe_dump(registry_doc(make_flows(n))), encoding="utf-8")
    return path


async def stored(store: Path) -> tuple[int, int]:
    """(points, distinct names) of agent_1 in the store at ``store``."""
    flow_store = open_store(str(store), lock_timeout=60)
    try:
        points = await flow_store.snapshot("agent_1")
    finally:
        await flow_store.close()
    return len(points), len({p.name for p in points})


@pytest.fixture(scope="module")
def big_manifest(tmp_path_factory) -> Path:
    return manifest_of(tmp_path_factory.mktemp("faults") / "big.yaml", N)


# --- one store, two processes ---------------------------------------------------------------

def hold(store: Path, seconds: float) -> threading.Event:
    """Hold the embedded store at ``store`` from this process for ``seconds`` (or until the
    event returned is set); the event is set once it is released."""
    holder = open_store(str(store))
    asyncio.run(holder.ensure_collection(384))
    done = threading.Event()

    def release() -> None:
        done.wait(seconds)
        asyncio.run(holder.close())
        released.set()

    released = threading.Event()
    threading.Thread(target=release).start()
    done.released = released  # type: ignore[attr-defined]
    return done


def test_a_second_process_waits_for_the_lock_then_does_its_work(tmp_path):
    store, manifest = tmp_path / "qdrant", manifest_of(tmp_path / "m.yaml", 3)
    held = hold(store, 2.0)
    started = time.monotonic()
    result = subprocess.run(apply_cmd(manifest, store), capture_output=True, text=True,
                            timeout=120)
    waited = time.monotonic() - started
    held.released.wait()
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["created"]) == 3
    assert waited >= 1.5, "it ran while the store was held"


def test_past_the_lock_timeout_the_second_process_exits_4_naming_store_and_wait(tmp_path):
    store, manifest = tmp_path / "qdrant", manifest_of(tmp_path / "m.yaml", 3)
    held = hold(store, 120.0)
    try:
        result = subprocess.run(apply_cmd(manifest, store, "--lock-timeout", "0.5"),
                                capture_output=True, text=True, timeout=120)
    finally:
        held.set()
        held.released.wait()
    assert result.returncode == 4
    assert f"the embedded store {store} is in use by another process" in result.stderr
    assert "waited 0.5 s" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_two_applies_started_together_on_a_new_store_both_succeed(tmp_path):
    manifest = manifest_of(tmp_path / "m.yaml", 200)
    for trial in range(8):  # before the lock, about one trial in five had both refuse
        store = tmp_path / f"qdrant-{trial}"
        procs = [subprocess.Popen(apply_cmd(manifest, store), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        results = [(p.wait(120), *p.communicate()) for p in procs]
        assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
        reports = [json.loads(out) for _, out, _ in results]
        assert sorted(len(r["created"]) for r in reports) == [0, 200]
        assert asyncio.run(stored(store)) == (200, 200)


# --- SIGINT and SIGTERM ---------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_apply_stops_at_a_batch_boundary_and_the_rerun_converges(
        big_manifest, tmp_path, sig, code):
    store, history = tmp_path / "qdrant", tmp_path / "history.db"
    proc = subprocess.Popen(apply_cmd(big_manifest, store, "--batch-size", "3"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while done_so_far(history) < 300 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "apply finished before the signal"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert f"stopped by {sig.name} at a batch boundary" in err
    partial = json.loads(out)
    assert partial["interrupted"] is True and partial["signal"] == sig.name
    done = partial["done"]
    assert 300 <= done < N and done % 3 == 0, "stopped mid-batch"
    assert len(partial["created"]) == done and partial["total"] == N
    assert asyncio.run(stored(store)) == (done, done)  # exactly what it said it did

    rerun = subprocess.run(apply_cmd(big_manifest, store), capture_output=True, text=True,
                           timeout=300)
    again = json.loads(rerun.stdout)
    assert rerun.returncode == 0
    assert len(again["skipped"]) == done and len(again["created"]) == N - done
    assert again["embedded_texts"] == N - done  # nothing written before the signal re-embedded
    assert asyncio.run(stored(store)) == (N, N)
    runs = subprocess.run([sys.executable, "-m", "flowreg.cli.main", "history", "--store",
                           str(store), "-o", "json"], capture_output=True, text=True).stdout
    assert [r["status"] for r in json.loads(runs)["runs"]] == ["succeeded", "interrupted"]


# --- a full disk ----------------------------------------------------------------------------

@contextlib.contextmanager
def tmpfs(path: Path, size_mib: int) -> Iterator[Path]:
    """A tmpfs of ``size_mib`` at ``path`` (needs root), unmounted afterwards."""
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs",
                              str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """A file on ``disk`` taking all its free space but ``leave`` bytes."""
    st = os.statvfs(disk)
    filler = disk / "filler"
    with filler.open("wb") as fh:
        remaining = st.f_bavail * st.f_frsize - leave
        chunk = b"\0" * MIB
        while remaining > 0:
            fh.write(chunk[:min(len(chunk), remaining)])
            remaining -= len(chunk)
    return filler


@pytest.mark.slow
def test_a_full_disk_is_exit_4_with_the_space_needed_never_a_signal(big_manifest, tmp_path):
    with tmpfs(tmp_path / "disk", 256) as disk:
        store, shard = disk / "qdrant", disk / "qdrant" / "flowreg_flows"
        small = manifest_of(tmp_path / "small.yaml", 50)
        assert subprocess.run(apply_cmd(small, store), capture_output=True).returncode == 0

        # Not even room to load the shard: Edge pre-faults its index files while loading,
        # which on this disk is a SIGBUS (-7) unless it is refused before Edge maps anything.
        filler = fill(disk, 2 * MIB)
        result = subprocess.run(apply_cmd(big_manifest, store), capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 4, result.stderr
        assert "no space left on device: need ~" in result.stderr
        assert f"MiB free at {shard}" in result.stderr and "Traceback" not in result.stderr

        # Nothing free: the run history (SQLite) cannot open either; still a message, exit 4.
        filler.unlink()
        filler = fill(disk, 0)
        result = subprocess.run([sys.executable, "-m", "flowreg.cli.main", "history",
                                 "--store", str(store)], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 4, result.stderr
        assert "no space left on device" in result.stderr and "Traceback" not in result.stderr

        # Room to load the shard, not to write the whole registry in one batch.
        filler.unlink()
        filler = fill(disk, unallocated_bytes(shard) + RESERVE + 6 * MIB)
        result = subprocess.run(apply_cmd(big_manifest, store, "--batch-size", "3000"),
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 4, result.stderr
        assert "no space left on device: need ~" in result.stderr
        assert asyncio.run(stored(store)) == (50, 50)

        filler.unlink()
        rerun = subprocess.run(apply_cmd(big_manifest, store), capture_output=True, text=True,
                               timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        again = json.loads(rerun.stdout)
        assert len(again["created"]) == N - 50 and again["embedded_texts"] == N - 50
        assert asyncio.run(stored(store)) == (N, N)


@pytest.mark.slow
def test_a_new_store_on_a_full_disk_is_exit_4(big_manifest, tmp_path):
    with tmpfs(tmp_path / "disk", 64) as disk:
        filler = fill(disk, 20 * MIB)
        result = subprocess.run(apply_cmd(big_manifest, disk / "qdrant"), capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 4, result.stderr
        assert "no space left on device: need ~48 MiB" in result.stderr
        filler.unlink()


def test_the_partial_report_names_the_first_changes_in_the_engines_order():
    from flowreg.cli.stopping import partial_report
    from flowreg.errors import Interrupted
    from flowreg.flow import Flow
    from flowreg.history import Checkpoint
    from flowreg.plan import Plan, Removal, RemovalReason, VectorSource, Write

    def write(name: str) -> Write:
        return Write(Flow(name, f"{name} description"), f"id-{name}", VectorSource.EMBED)

    plan = Plan("a", "ns/r", "hashing:384",
                creates=(write("new1"), write("moved"), write("new2")),
                updates=(write("changed1"), write("changed2")),
                deletes=(Removal("id-old", "old", RemovalReason.RENAMED),
                         Removal("id-gone", "gone", RemovalReason.UNDECLARED)),
                renames=(("old", "moved"),))
    exc = Interrupted(signal.SIGTERM, "at a batch boundary")
    at = {done: partial_report(plan, Checkpoint("r", done, 7), "ns/r", "a", exc)
          for done in (0, 2, 4, 7)}
    assert [at[0][k] for k in ("created", "renamed", "updated", "deleted")] == [[], [], [], []]
    assert (at[2]["created"], at[2]["renamed"]) == (["new1"], ["moved"])
    assert at[4]["updated"] == ["changed1"] and at[4]["created"] == ["new1", "new2"]
    assert at[7]["deleted"] == ["gone"] and at[7]["total"] == 7 and at[7]["signal"] == "SIGTERM"
    assert partial_report(None, None, "ns/r", "a", exc)["done"] == 0


def test_the_engines_own_out_of_space_errors_get_the_same_message(tmp_path):
    import errno

    from flowreg.store.space import NoSpace, is_out_of_space

    store = open_store(str(tmp_path / "qdrant"))
    try:
        edge_error = Exception("Service runtime error: IO Error: No space left on device "
                               "(os error 28)")
        mapped = store._map_error(edge_error)
        assert isinstance(mapped, NoSpace) and mapped.exit_code == 4
        assert str(mapped).startswith("no space left on device: need ~")
        assert str(mapped).endswith(f"MiB free at {tmp_path / 'qdrant' / 'flowreg_flows'}")
        assert is_out_of_space(OSError(errno.ENOSPC, "No space left on device"))
        assert is_out_of_space(Exception("database or disk is full"))
        assert not is_out_of_space(Exception("dimension mismatch"))
    finally:
        asyncio.run(store.close())
