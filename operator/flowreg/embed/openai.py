"""An embedder for any OpenAI-compatible ``/v1/embeddings`` endpoint (OpenAI, Ollama, vLLM, TEI).

Texts are sent in batches of ``batch_size`` with up to ``concurrency`` requests in flight;
vectors come back in input order. Connection errors, timeouts, 429 and 5xx answers are retried
with exponential backoff and jitter (``Retry-After`` is honoured, capped); other 4xx answers
are not. Whatever fails after the retries, or answers with the wrong number or size of vectors,
raises ``EmbedderUnavailable``. The API key is sent as a Bearer token and never appears in
``repr``, logs or errors.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from flowreg.errors import EmbedderUnavailable

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 30.0


class OpenAIEmbedder:
    """Embeds through ``POST {base_url}/embeddings``.

    ``dimension`` may be left out: ``probe()`` (called by the engine before first use) learns
    it from one short request. ``api_key`` defaults to the variable named by ``api_key_env``.
    """

    def __init__(self, base_url: str, model: str, *, dimension: int | None = None,
                 api_key: str | None = None, api_key_env: str | None = "OPENAI_API_KEY",
                 batch_size: int = 100, concurrency: int = 4, timeout: float = 30.0,
                 max_retries: int = 4, backoff: float = 0.5,
                 send_dimensions: bool = False) -> None:
        if batch_size < 1 or concurrency < 1 or max_retries < 0:
            raise ValueError("batch_size and concurrency must be >= 1, max_retries >= 0")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._dimension = dimension
        key = api_key if api_key is not None else (
            os.environ.get(api_key_env) if api_key_env else None)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        self.send_dimensions = send_dimensions
        self.timeout = timeout
        self._client = httpx.AsyncClient(headers=headers, timeout=timeout)
        self._limit = asyncio.Semaphore(concurrency)

    def __repr__(self) -> str:
        return (f"OpenAIEmbedder(base_url={self.base_url!r}, model={self.model!r}, "
                f"dimension={self._dimension!r})")

    @property
    def identity(self) -> str:
        return f"openai:{self.model}/{self.dimension}"

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            raise EmbedderUnavailable(
                f"the dimension of {self.model!r} is not known yet: configure it or probe()")
        return self._dimension

    async def probe(self) -> int:
        """Learn the vector size with one request (if not configured); return it."""
        if self._dimension is None:
            [vector] = await self._request(["dimension probe"])
            self._dimension = len(vector)
        return self._dimension

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        batches = [list(texts[i:i + self.batch_size])
                   for i in range(0, len(texts), self.batch_size)]
        results = await asyncio.gather(*(self._limited(batch) for batch in batches))
        vectors = [vector for batch in results for vector in batch]
        if self._dimension is None:
            self._dimension = len(vectors[0])
        for vector in vectors:
            if len(vector) != self._dimension:
                raise EmbedderUnavailable(
                    f"{self.base_url}: got a {len(vector)}-dimensional vector, expected "
                    f"{self._dimension}")
        return vectors

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _limited(self, batch: list[str]) -> list[list[float]]:
        async with self._limit:
            return await self._request(batch)

    async def _request(self, batch: list[str]) -> list[list[float]]:
        body: dict[str, Any] = {"model": self.model, "input": batch}
        if self.send_dimensions and self._dimension is not None:
            body["dimensions"] = self._dimension
        url = f"{self.base_url}/embeddings"
        problem = ""
        for attempt in range(self.max_retries + 1):
            delay: float | None = None
            try:
                response = await self._client.post(url, json=body)
            except httpx.TimeoutException:
                problem = f"timed out after {self.timeout} s"
            except httpx.TransportError as exc:
                problem = f"cannot connect: {type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return self._parse(response, len(batch))
                problem = f"HTTP {response.status_code}: {response.text[:200]!r}"
                if response.status_code not in RETRYABLE_STATUS:
                    raise EmbedderUnavailable(f"{url} answered {problem}")
                delay = _retry_after(response)
            if attempt == self.max_retries:
                break
            if delay is None:
                delay = self.backoff * 2 ** attempt * (0.5 + random.random())
            await asyncio.sleep(delay)
        raise EmbedderUnavailable(
            f"{url} failed after {self.max_retries + 1} attempt(s): {problem}")

    def _parse(self, response: httpx.Response, expected: int) -> list[list[float]]:
        try:
            data = orjson.loads(response.content)["data"]
            items = sorted(data, key=lambda item: int(item["index"]))
            vectors = [item["embedding"] for item in items]
            for vector in vectors:
                if not isinstance(vector, list):
                    raise TypeError("an embedding is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbedderUnavailable(
                f"{self.base_url}: malformed embeddings response ({type(exc).__name__}: "
                f"{exc})") from None
        if len(vectors) != expected:
            raise EmbedderUnavailable(
                f"{self.base_url}: {len(vectors)} vectors for {expected} texts")
        for vector in vectors:
            # One sum per vector: any NaN, infinity or non-number makes it non-finite or fail.
            try:
                finite = bool(vector) and math.isfinite(math.fsum(vector))
            except (TypeError, OverflowError, ValueError):
                finite = False
            if not finite:
                raise EmbedderUnavailable(f"{self.base_url}: empty or non-finite vector")
        return vectors


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return None
