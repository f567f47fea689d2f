"""A real Qdrant server for the test session: the binary `hack/qdrant.sh` builds, on loopback.

``QdrantServer`` starts the server on free HTTP and gRPC ports with its own storage directory
and an API key, waits for ``/readyz``, and stops it (children die with the test process too).
``session_server()`` is the one server of the session, started on first use; ``$QDRANT_URL``
(with ``$QDRANT_API_KEY``) names an external server instead, and nothing is started.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import die_with_parent, free_port, stop_group

STARTUP_BUDGET = 60.0
"""Seconds to wait for /readyz: the server is ready in about 0.5 s on an idle 2-core machine;
the budget leaves two orders of magnitude for a loaded one."""


REPO = Path(__file__).resolve().parents[2]
HOW_TO_BUILD = ("no Qdrant server binary: build it with `bash hack/qdrant.sh` (hack/test.sh "
                "does), or name one with $FLOWREG_QDRANT_BIN")


def cached_binary() -> Path:
    """Where hack/qdrant.sh puts the server it builds (keyed by the version it names)."""
    script = (REPO / "hack" / "qdrant.sh").read_text(encoding="utf-8")
    version = re.search(r"^QDRANT_VERSION=(\S+)$", script, re.M)
    assert version, "hack/qdrant.sh names no QDRANT_VERSION"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "flowreg" / "qdrant" / version.group(1) / "qdrant"


def server_binary() -> Path | None:
    """The server binary: ``$FLOWREG_QDRANT_BIN`` (set by hack/test.sh), else the one
    hack/qdrant.sh built into the cache; ``None`` if there is none, or with
    ``$FLOWREG_SKIP_QDRANT_SERVER=1``."""
    if os.environ.get("FLOWREG_SKIP_QDRANT_SERVER") == "1":
        return None
    named = os.environ.get("FLOWREG_QDRANT_BIN")
    path = Path(named) if named else cached_binary()
    return path if os.access(path, os.X_OK) else None


def require_binary() -> Path:
    """The server binary; without one the test skips saying how to build it (fails in CI)."""
    binary = server_binary()
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(HOW_TO_BUILD)
        pytest.skip(HOW_TO_BUILD)
    return binary


def server_available() -> bool:
    return bool(os.environ.get("QDRANT_URL")) or server_binary() is not None


@dataclass
class Endpoint:
    url: str
    api_key: str | None
    grpc_port: int | None = None


ADDRESS_IN_USE = "Address already in use"
PORT_TRIES = 3
"""Starts with new ports when another process took a chosen one first (``PortTaken``)."""


class PortTaken(RuntimeError):
    """Another process bound one of the server's ports between its choice and the server's
    own bind (the server then runs without it, and never answers)."""


class QdrantServer:
    """One Qdrant server process with its own storage, on ``host`` (127.0.0.1 by default)."""

    def __init__(self, binary: Path, storage: Path | None = None,
                 host: str = "127.0.0.1") -> None:
        self.extra_env: dict[str, str] = {}
        """More settings (cluster mode: tests/support/qdrant_cluster.py)."""
        self.args: list[str] = []
        self.host = host
        self.binary = binary
        self.work = Path(tempfile.mkdtemp(prefix="flowreg-qdrant-"))
        self.storage = storage or self.work / "storage"
        self.api_key = secrets.token_hex(16)
        self.http_port, self.grpc_port = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._served = False
        """Whether it has answered on its ports once (a restart keeps them: clients hold them)."""
        self._log_start = 0

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(f"http://{self.host}:{self.http_port}", self.api_key, self.grpc_port)

    def start(self, timeout: float = STARTUP_BUDGET) -> QdrantServer:
        """Start the process; return once it answers. At its first start, a port another
        process took meanwhile (a free port is only free when it is chosen) is replaced by a
        new one, ``PORT_TRIES`` times in all; at a restart that raises ``PortTaken``."""
        attempt = 1
        while True:
            self._spawn()
            try:
                self._wait_ready(timeout)
            except PortTaken:
                self.stop()
                if self._served or attempt == PORT_TRIES:
                    raise
                self.http_port, self.grpc_port = free_port(), free_port()
                attempt += 1
                continue
            self._served = True
            return self

    def _spawn(self) -> None:
        env = {**os.environ,
               "QDRANT__SERVICE__HOST": self.host,
               "QDRANT__SERVICE__HTTP_PORT": str(self.http_port),
               "QDRANT__SERVICE__GRPC_PORT": str(self.grpc_port),
               "QDRANT__SERVICE__API_KEY": self.api_key,
               "QDRANT__STORAGE__STORAGE_PATH": str(self.storage),
               "QDRANT__STORAGE__SNAPSHOTS_PATH": str(self.work / "snapshots"),
               "QDRANT__TELEMETRY_DISABLED": "true",
               "QDRANT__LOG_LEVEL": "WARN",
               **self.extra_env}
        log = (self.work / "qdrant.log").open("ab")
        self._log_start = log.tell()
        self.proc = subprocess.Popen([str(self.binary), *self.args], cwd=self.work, env=env,
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     preexec_fn=die_with_parent)
        log.close()

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        url = f"http://{self.host}:{self.http_port}/readyz"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"qdrant exited with {self.proc.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                if ADDRESS_IN_USE in self._this_run_log():
                    raise PortTaken(f"a port of qdrant was taken: {self.log()}") from None
            time.sleep(0.05)
        raise TimeoutError(f"qdrant not ready within {timeout} s: {self.log()}")

    def _this_run_log(self) -> str:
        """What the process started last has logged so far."""
        with (self.work / "qdrant.log").open("rb") as log:
            log.seek(self._log_start)
            return log.read().decode(errors="replace")

    def log(self) -> str:
        path = self.work / "qdrant.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        """Stop the process (storage kept: ``start`` again resumes on it)."""
        if self.proc is not None:
            stop_group(self.proc)
            self.proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.work, ignore_errors=True)


_session: QdrantServer | None = None


def session_server() -> Endpoint:
    """The session's server, started on first use (or ``$QDRANT_URL``)."""
    global _session
    if os.environ.get("QDRANT_URL"):
        return Endpoint(os.environ["QDRANT_URL"], os.environ.get("QDRANT_API_KEY"))
    if _session is None:
        binary = server_binary()
        if binary is None:
            raise RuntimeError("no Qdrant server: run hack/qdrant.sh or set QDRANT_URL")
        _session = QdrantServer(binary).start()
        atexit.register(_session.remove)
    return _session.endpoint


def stop_session_server() -> None:
    global _session
    if _session is not None:
        _session.remove()
        _session = None
