"""Architecture: the import-linter contracts in pyproject.toml hold, and the layout rules."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.builders import REPO


def test_import_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is not installed"
    result = subprocess.run([exe, "--no-cache"], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    count = len(declared["tool"]["importlinter"]["contracts"])
    assert count >= 4  # layers, core without kopf, store backends, embedders
    assert f"Contracts: {count} kept, 0 broken" in result.stdout


def test_operator_dir_is_not_a_package():
    assert not (REPO / "operator" / "__init__.py").exists()
    import operator

    assert hasattr(operator, "itemgetter")


def test_core_does_not_load_kopf_or_kubernetes():
    code = ("import sys, flowreg.sync, flowreg.cli.main;"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('kopf', 'kubernetes')];"
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
