"""A git server on loopback over smart HTTP, holding one repository the tests commit to.

``GitServer`` serves the bare repositories under its root through ``git http-backend`` (git's
own CGI program, the one real git hosting runs behind a web server) from a small threaded WSGI
server in this process. Source-controller's go-git client speaks only the smart protocol, which
``http-backend`` provides. ``GitRepo`` is one bare repository with a work tree beside it: a
test writes files, and ``commit`` records them and returns the commit's hash, at once visible
to clients of the server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from tests.support.processes import free_port

BACKEND = "http-backend"
AUTHOR = {"GIT_AUTHOR_NAME": "flowreg tests", "GIT_AUTHOR_EMAIL": "tests@flowreg.dev",
          "GIT_COMMITTER_NAME": "flowreg tests", "GIT_COMMITTER_EMAIL": "tests@flowreg.dev"}


def _git(*args: str, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(["git", *args], check=True, capture_output=True, text=True,
                         env={**os.environ, **AUTHOR, **(env or {})})
    return out.stdout.strip()


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


class GitRepo:
    """A bare repository served as ``<server>/<name>.git``, with a work tree to commit from."""

    def __init__(self, bare: Path, work: Path, url: str) -> None:
        self.bare, self.work, self.url = bare, work, url
        self.commits: list[str] = []

    def write(self, relative: str, text: str) -> Path:
        path = self.work / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def remove(self, relative: str) -> None:
        (self.work / relative).unlink()

    def commit(self, message: str) -> str:
        """Record the whole work tree (additions, changes, removals) on ``main``; its hash."""
        tree = ["--git-dir", str(self.bare), "--work-tree", str(self.work)]
        _git(*tree, "add", "--all", ".")
        _git(*tree, "commit", "--quiet", "--allow-empty", "-m", message)
        sha = _git("--git-dir", str(self.bare), "rev-parse", "HEAD")
        self.commits.append(sha)
        return sha


class GitServer:
    """``git http-backend`` behind a threaded WSGI server on 127.0.0.1; a context manager."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="flowreg-git-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[str] = []
        exec_path = _git("--exec-path")
        self.backend = str(Path(exec_path) / f"git-{BACKEND}")
        self._server = make_server("127.0.0.1", self.port, self._app,
                                   server_class=_ThreadingWSGIServer,
                                   handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> GitServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
        shutil.rmtree(self.root, ignore_errors=True)

    def repository(self, name: str) -> GitRepo:
        """A new empty repository ``name`` whose default branch is ``main``."""
        bare = self.root / "repos" / f"{name}.git"
        _git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
        work = self.root / "work" / name
        work.mkdir(parents=True)
        return GitRepo(bare, work, f"{self.url}/{name}.git")

    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.requests.append(f"{environ['REQUEST_METHOD']} {environ.get('PATH_INFO', '')}")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        cgi = {key: str(value) for key, value in environ.items()
               if key.isupper() and isinstance(value, str)}
        cgi.update({"GIT_PROJECT_ROOT": str(self.root / "repos"), "GIT_HTTP_EXPORT_ALL": "1",
                    "CONTENT_LENGTH": str(len(body)), "PATH": os.environ.get("PATH", "")})
        out = subprocess.run([self.backend], input=body, env=cgi, capture_output=True,
                             check=False)
        head, found, payload = out.stdout.partition(b"\r\n\r\n")
        if not found:
            head, _, payload = out.stdout.partition(b"\n\n")
        headers = list(_headers(head.decode("latin-1").splitlines()))
        status = next((v for k, v in headers if k.lower() == "status"), "200 OK")
        start_response(status, [(k, v) for k, v in headers if k.lower() != "status"])
        return [payload]


def _headers(lines: list[str]) -> Iterator[tuple[str, str]]:
    for line in lines:
        name, _, value = line.partition(":")
        if name:
            yield name.strip(), value.strip()
