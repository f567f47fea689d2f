"""Shared fixtures: example manifests and a helper to write manifests into a temp dir."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.qdrant_cluster import stop_session_cluster
from tests.support.qdrant_server import stop_session_server
from tests.support.skips import LOUD
from tests.support.stores import backends, drop, open_backend
from tests.support.timings import TIMINGS


@pytest.fixture
def write_manifest(tmp_path: Path) -> Callable[..., Path]:
    """Write a manifest (dict, list of dicts, or raw text) to a file and return its path."""
    counter = iter(range(1_000_000))

    def write(content: Any, filename: str | None = None) -> Path:
        path = tmp_path / (filename or f"manifest-{next(counter)}.yaml")
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        elif isinstance(content, list):
            path.write_text(yaml.safe_dump_all(content, sort_keys=False), encoding="utf-8")
        else:
            path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
        return path

    return write


@pytest.fixture(params=backends())
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """An empty store on each backend the machine has (see tests/support/stores.py)."""
    opened = open_backend(request.param, tmp_path)
    yield opened
    await drop(opened)


@pytest.fixture(scope="session", autouse=True)
def _stop_qdrant_server_at_the_end() -> Any:
    """The session's Qdrant server (started on first use) stops with the session."""
    yield
    stop_session_server()
    stop_session_cluster()


def pytest_configure(config: pytest.Config) -> None:
    """The run's own manifest read cache (flowreg.read_cache), for it and every process it
    starts: nothing is read from or left in the user's."""
    if "FLOWREG_CACHE_DIR" not in os.environ:
        os.environ["FLOWREG_CACHE_DIR"] = tempfile.mkdtemp(prefix="flowreg-read-cache-")
        config.add_cleanup(lambda: shutil.rmtree(os.environ.pop("FLOWREG_CACHE_DIR"),
                                                 ignore_errors=True))


def pytest_report_header(config: pytest.Config) -> str:
    return "store backends: " + ", ".join(backends())


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.section("e2e timings")
        for what, seconds in TIMINGS.items():
            terminalreporter.line(f"{what}: {seconds:.2f} s")
    if LOUD:
        terminalreporter.section("NOT TESTED ON THIS MACHINE", sep="!", red=True, bold=True)
        for reason in LOUD:
            terminalreporter.line(reason, red=True, bold=True)
