"""The largest FlowRegistry a default cluster stores: measured on the test control plane.

Usage::

    python -m bench.size_limit          # needs the binaries of hack/testbin.sh

Realistic flows (bench/flows.py: a 15-word description, 3-5 examples, 1-2 conditions, a
three-step blueprint, a declared checksum) are applied with ``kubectl apply --server-side``,
as the docs recommend, at growing counts (then bisected) until the apiserver refuses; prints
the largest count stored and the sizes of its manifest (JSON) and of the stored object (with
the managedFields server-side apply adds). etcd runs with its default request limit (1.5 MiB).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.controlplane import ControlPlane, apply_file, find_testbin

from bench.flows import make_flow

REPO = Path(__file__).resolve().parents[1]


def manifest(n: int) -> dict:
    rng = random.Random(7)
    return {"apiVersion": "flowreg.dev/v1alpha1", "kind": "FlowRegistry",
            "metadata": {"name": f"size-{n}", "namespace": "default"},
            "spec": {"agentId": "size_agent", "flows": [
                make_flow(i, rng).to_manifest() for i in range(n)]}}


def applies(cp: ControlPlane, n: int, work: Path) -> tuple[bool, int, int, str]:
    doc = manifest(n)
    path = work / f"size-{n}.json"
    path.write_text(json.dumps(doc))
    run = [str(cp.kubectl), "--kubeconfig", str(cp.kubeconfig)]
    result = subprocess.run([*run, "apply", "--server-side", "-f", str(path)],
                            capture_output=True, text=True, timeout=300)
    stored = 0
    if result.returncode == 0:
        got = subprocess.run([*run, "get", "flowregistry", f"size-{n}", "-o", "json"],
                             capture_output=True, text=True, check=True).stdout
        stored = len(got.encode())
        subprocess.run([*run, "delete", "flowregistry", f"size-{n}", "--wait=false"],
                       capture_output=True, check=False)
    return result.returncode == 0, path.stat().st_size, stored, result.stderr.strip()[:200]


def main() -> None:
    cp = ControlPlane(find_testbin()).start()
    work: Path | None = None
    try:
        kube_api = None
        from kubernetes import config

        kube_api = config.new_client_from_config(str(cp.kubeconfig))
        apply_file(kube_api, REPO / "crds" / "flowregistry.yaml")
        work = Path(tempfile.mkdtemp(prefix="flowreg-size-"))
        low, high = 0, None
        n = 500
        while high is None:  # grow until refused
            ok, size, stored, err = applies(cp, n, work)
            print(f"{n:>6} flows: manifest {size / 1024:8.0f} KiB  stored {stored / 1024:8.0f} "
                  f"KiB  {'stored' if ok else 'REFUSED: ' + err}", file=sys.stderr)
            if ok:
                low, n = n, n * 2
            else:
                high = n
        while high - low > 50:
            n = (low + high) // 2
            ok, size, stored, err = applies(cp, n, work)
            print(f"{n:>6} flows: manifest {size / 1024:8.0f} KiB  stored {stored / 1024:8.0f} "
                  f"KiB  {'stored' if ok else 'REFUSED: ' + err}", file=sys.stderr)
            low, high = (n, high) if ok else (low, n)
        ok, size, stored, _ = applies(cp, low, work)
        print(f"largest registry stored: {low} flows (refused at {high}); manifest "
              f"{size / 1024:.0f} KiB as JSON, {size / low:.0f} bytes per flow; stored object "
              f"{stored / 1024:.0f} KiB with managedFields")
    finally:
        cp.stop()
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
