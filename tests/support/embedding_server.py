"""A real OpenAI-compatible embedding server on loopback, for tests and benchmarks.

``POST /v1/embeddings`` answers deterministic vectors (feature hashing). Knobs: a fixed
``latency`` per request (real APIs are dominated by round-trips), a queue of scripted failures,
an optional required API key, and counters. Run it standalone for a benchmark::

    python -m tests.support.embedding_server --port 8089 --latency 0.02 --dimension 384
"""

from __future__ import annotations

import argparse
import json
import math
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


def vector_of(text: str, dimension: int) -> list[float]:
    vec = [0.0] * dimension
    for word in text.lower().split():
        h = zlib.crc32(word.encode())
        vec[h % dimension] += 1.0 if h & 0x80000000 else -1.0
    norm = math.sqrt(sum(x * x for x in vec)) or 1.0
    return [x / norm for x in vec]


@dataclass
class Failure:
    """One scripted answer: ``status`` with ``body``, or ``hang`` seconds, or a bad payload."""

    status: int = 503
    body: str = '{"error": "unavailable"}'
    headers: dict[str, str] = field(default_factory=dict)
    hang: float = 0.0
    kind: str = "status"  # status | hang | malformed | wrong_count | wrong_dimension


class EmbeddingServer:
    """Context manager running the server in a background thread."""

    def __init__(self, dimension: int = 64, latency: float = 0.0, port: int = 0,
                 api_key: str | None = None) -> None:
        self.dimension = dimension
        self.latency = latency
        self.api_key = api_key
        self.failures: deque[Failure] = deque()
        self.requests = 0
        self.texts = 0
        self.max_batch = 0
        self.auth_headers: list[str | None] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def fail_next(self, *failures: Failure) -> None:
        self.failures.extend(failures)

    def __enter__(self) -> EmbeddingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with server._lock:
                    server.requests += 1
                    server.auth_headers.append(self.headers.get("Authorization"))
                    failure = server.failures.popleft() if server.failures else None
                if server.latency:
                    time.sleep(server.latency)
                if self.path.rstrip("/") != "/v1/embeddings":
                    return self._send(404, '{"error": "not found"}')
                if server.api_key and self.headers.get("Authorization") != \
                        f"Bearer {server.api_key}":
                    return self._send(401, '{"error": "bad key"}')
                try:
                    body = json.loads(raw)
                    texts = body["input"]
                    texts = [texts] if isinstance(texts, str) else list(texts)
                except (ValueError, KeyError, TypeError):
                    return self._send(400, '{"error": "bad request"}')
                with server._lock:
                    server.texts += len(texts)
                    server.max_batch = max(server.max_batch, len(texts))
                dim = server.dimension
                if failure is not None:
                    if failure.kind == "hang":
                        time.sleep(failure.hang)
                    elif failure.kind == "malformed":
                        return self._send(200, '{"data": [{"oops": 1}]}')
                    elif failure.kind == "wrong_count":
                        texts = texts[:-1]
                    elif failure.kind == "wrong_dimension":
                        dim = dim + 1
                    else:
                        return self._send(failure.status, failure.body, failure.headers)
                data = [{"object": "embedding", "index": i, "embedding": vector_of(t, dim)}
                        for i, t in reversed(list(enumerate(texts)))]
                self._send(200, orjson.dumps({"object": "list", "data": data,
                                              "model": body.get("model")}))

            def _send(self, status: int, text: str | bytes,
                      headers: dict[str, str] | None = None) -> None:
                payload = text if isinstance(text, bytes) else text.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--dimension", type=int, default=384)
    args = parser.parse_args()
    with EmbeddingServer(args.dimension, args.latency, args.port) as server:
        print(f"serving {server.base_url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
