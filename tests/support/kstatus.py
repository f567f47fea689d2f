"""kstatus itself: the verdict Flux computes for an object, from the Go program hack/kstatus.

``hack/flux.sh`` builds the program into the Flux cache directory (``hack/flux.sh kstatus``
builds only it); ``compute`` runs it on objects and returns, per object, the status and message
of ``sigs.k8s.io/cli-utils`` and of ``github.com/fluxcd/cli-utils`` (the fork Flux links).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def flux_dir(only: str | None = "kstatus") -> Path:
    """The Flux cache directory: ``$FLOWREG_FLUX_DIR``, else what hack/flux.sh prints.

    The script builds what is missing first: with ``only="kstatus"`` (the default) just that
    small program, with ``only=None`` the controllers too.
    """
    env = os.environ.get("FLOWREG_FLUX_DIR")
    if env:
        return Path(env)
    args = ["bash", str(REPO / "hack" / "flux.sh"), *([only] if only else [])]
    out = subprocess.run(args, check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def kstatus_binary() -> Path:
    """The kstatus program (built by hack/flux.sh)."""
    return flux_dir() / "kstatus"


def compute(objects: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """cli-utils' ``status.Compute`` for each object, in order."""
    out = subprocess.run([str(kstatus_binary())], input=json.dumps(list(objects)),
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"kstatus failed ({out.returncode}): {out.stderr}")
    return [json.loads(line) for line in out.stdout.splitlines()]
