"""The operator image and the chart on a real node: size, build times, time to a Ready pod.

    python -m bench.bench_image [--repeat 3] [--cold]

Prints the image's size (uncompressed, as `podman images` reports it, and gzip-compressed, as
a registry would store it), the build time (warm: the cache holds it; ``--cold``: the base and
the image are removed first and rebuilt, pip downloads included), the time a restricted
``podman run ... --version`` takes, and on a node (tests/support/node.py) the seconds from
``helm install`` to a Ready operator pod, ``--repeat`` times (install, wait, uninstall).
Targets (issue 13): image <= 250 MB; pod Ready <= 60 s after helm install on a warm cache.
Needs root and the tools of hack/container-tools.sh, and hack/testbin.sh's binaries.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import subprocess
import time
from pathlib import Path

from tests.support.controlplane import find_testbin
from tests.support.images import build, missing_tools, podman
from tests.support.node import NodeCluster, missing

REPO = Path(__file__).resolve().parents[1]


def compressed_size(path: Path) -> int:
    """Bytes of ``path`` gzip-compressed (level 6, as registries commonly store layers)."""
    size = 0

    class Counter:
        def write(self, data: bytes) -> int:
            nonlocal size
            size += len(data)
            return len(data)

        def flush(self) -> None:
            pass

    with path.open("rb") as src, gzip.GzipFile(fileobj=Counter(), mode="wb",  # type: ignore[arg-type]
                                               compresslevel=6) as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
    return size


def pod_ready_seconds(node: NodeCluster, image_ref: str) -> float:
    repository, tag = image_ref.rsplit(":", 1)
    started = time.monotonic()
    node.helm("install", "flowreg", str(REPO / "helm" / "flowreg"), "-n", "flowreg-system",
              "--create-namespace", f"--set=image.repository={repository}",
              f"--set=image.tag={tag}", "--set=stores.default.location=/tmp/flowreg-store")
    node.kubectl("-n", "flowreg-system", "wait", "--for=condition=Ready", "pod", "-l",
                 "app.kubernetes.io/instance=flowreg", "--timeout=300s", timeout=320)
    seconds = time.monotonic() - started
    node.helm("uninstall", "flowreg", "-n", "flowreg-system", "--wait")
    node.wait_pods_gone("flowreg-system", timeout=120)  # the next round starts from none
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cold", action="store_true",
                        help="remove the cached base and image first (a cold build)")
    args = parser.parse_args()
    why = missing_tools()
    if why:
        raise SystemExit(f"cannot build images here: {why}")
    if args.cold:
        for ref in podman("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split():
            if ref.startswith(("localhost/flowreg", "localhost/pause")):
                podman("rmi", "--force", ref, check=False)
    image = build("flowreg")
    print(f"build ({'cold' if args.cold else 'warm'}): {image.build_seconds:.1f} s")
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image.ref).stdout)
    print(f"image {image.ref}: {size / 1e6:.0f} MB uncompressed, "
          f"{compressed_size(image.tar) / 1e6:.0f} MB gzip-compressed (target <= 250 MB)")
    runs = []
    for _ in range(args.repeat):
        started = time.monotonic()
        podman("run", "--rm", "--network", "none", "--read-only", "--user", "10001:10001",
               "--cap-drop", "ALL", "--security-opt", "no-new-privileges", image.ref,
               "--version")
        runs.append(time.monotonic() - started)
    print(f"podman run --version (restricted): median {statistics.median(runs):.2f} s")

    bin_dir = find_testbin()
    why = missing(bin_dir)
    if why:
        raise SystemExit(f"no node here: {why}")
    pause = build("pause")
    node = NodeCluster(bin_dir, images=[pause.tar, image.tar], sandbox_image=pause.ref)
    started = time.monotonic()
    node.start()
    print(f"node Ready (control plane, containerd, image import, kubelet): "
          f"{time.monotonic() - started:.1f} s")
    try:
        readies = [pod_ready_seconds(node, image.ref) for _ in range(args.repeat)]
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"{exc}\n{exc.stderr}\n{node.log('kubelet')}") from None
    finally:
        node.stop()
    print("helm install -> operator pod Ready: "
          + ", ".join(f"{s:.1f}" for s in readies)
          + f" s (median {statistics.median(readies):.1f} s; target <= 60 s)")


if __name__ == "__main__":
    main()
