"""Container images for the tests, built into a cache outside the repo: the operator's and the
pod sandbox by hack/image.sh, CoreDNS's and the Qdrant server's by hack/node-images.sh.

Building and running them needs root, podman, mmdebstrap, runc and gcc (Debian packages that
.ci/run installs). Where they are missing, ``missing_tools`` says which, and the tests that need
them skip with that reason (listed again at the end of the run: see tests/conftest.py).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "hack" / "image.sh"
NODE_SCRIPT = REPO / "hack" / "node-images.sh"
TOOLS = ("podman", "mmdebstrap", "runc", "gcc")


@dataclass(frozen=True)
class Image:
    ref: str  # e.g. localhost/flowreg:0.1.0-<key>
    tar: Path  # docker-archive, for `ctr images import`
    build_seconds: float  # 0-ish when the cache already held it


def missing_tools(tools: tuple[str, ...] = TOOLS) -> str | None:
    """Why images cannot be built and run here, or None."""
    if os.geteuid() != 0:
        return "not root (rootful podman and containerd need root)"
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (Debian packages; .ci/run installs them)"
    return None


@functools.cache
def podman_env() -> dict[str, str]:
    """The environment under which podman uses the cache's storage and configuration."""
    out = subprocess.run(["bash", str(SCRIPT), "--print-env"], check=True, text=True,
                         stdout=subprocess.PIPE).stdout
    return {**os.environ, **dict(line.split("=", 1) for line in out.splitlines() if "=" in line)}


@functools.cache
def build(target: str = "flowreg") -> Image:
    """Build (or reuse from the cache) ``flowreg`` or ``pause``; the build log goes to stderr."""
    started = time.monotonic()
    out = subprocess.run(["bash", str(SCRIPT), target], check=True, text=True,
                         stdout=subprocess.PIPE).stdout.splitlines()
    return Image(ref=out[-2], tar=Path(out[-1]), build_seconds=time.monotonic() - started)


@functools.cache
def build_node_image(target: str) -> Image:
    """Build (or reuse from the cache) ``coredns`` or ``qdrant`` from the binaries the suite
    builds (hack/node-images.sh); the build log goes to stderr."""
    started = time.monotonic()
    out = subprocess.run(["bash", str(NODE_SCRIPT), target], check=True, text=True,
                         stdout=subprocess.PIPE).stdout.splitlines()
    return Image(ref=out[-2], tar=Path(out[-1]), build_seconds=time.monotonic() - started)


def podman(*args: str, check: bool = True, timeout: float | None = 120,
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], env=podman_env(), capture_output=True, text=True,
                          check=check, timeout=timeout)
