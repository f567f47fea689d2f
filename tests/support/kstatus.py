"""kstatus itself: the verdict Flux computes for an object, from the Go program hack/kstatus.

``hack/flux.sh`` builds the program into the Flux cache directory (``flux_dir``;
``hack/flux.sh kstatus`` builds only it); ``compute`` runs it on objects and returns, per
object, the status and message of ``sigs.k8s.io/cli-utils`` and of ``github.com/fluxcd/cli-utils``
(the fork Flux links).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.support.flux import flux_dir


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
