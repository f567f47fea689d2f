"""The embedder contract every backend satisfies."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass
class EmbedCounts:
    """Embedding calls and texts."""

    calls: int = 0
    texts: int = 0


_RUNS: ContextVar[tuple[EmbedCounts, ...]] = ContextVar("flowreg_embed_runs", default=())


@contextlib.contextmanager
def counting_embeddings() -> Iterator[EmbedCounts]:
    """Count the embeddings made by this task (and tasks it starts) inside the block only: syncs
    running at once on one ``CountingEmbedder`` each count their own."""
    counts = EmbedCounts()
    token = _RUNS.set((*_RUNS.get(), counts))
    try:
        yield counts
    finally:
        _RUNS.reset(token)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of a fixed dimension; every method the sync engine calls.

    ``identity`` names the model and everything that changes its vectors (e.g.
    ``"hashing-v1/384"``, ``"openai:text-embedding-3-small/1536"``). It is stored with every point;
    when it changes, every flow is re-embedded. ``embed`` returns one vector per text, in order,
    each of length ``dimension``, and raises ``EmbedderUnavailable`` on failure. ``dimension``
    may raise ``EmbedderUnavailable`` until ``probe`` has asked the backend (an endpoint whose
    vector size is not configured); ``probe`` returns the dimension, asking at most once.
    ``concurrency`` is how many ``embed`` calls the backend serves at once (the engine keeps
    that many batches in flight). ``aclose`` releases connections.
    """

    @property
    def identity(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    @property
    def concurrency(self) -> int: ...

    async def probe(self) -> int: ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def aclose(self) -> None: ...


class CountingEmbedder:
    """Wraps an embedder and counts calls and texts, for reports, metrics and tests."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.calls = 0
        self.texts = 0

    @property
    def identity(self) -> str:
        return self.inner.identity

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    @property
    def concurrency(self) -> int:
        return max(1, self.inner.concurrency)

    async def probe(self) -> int:
        return await self.inner.probe()

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        self.calls += 1
        self.texts += len(texts)
        for run in _RUNS.get():
            run.calls += 1
            run.texts += len(texts)
        return await self.inner.embed(texts)

    async def aclose(self) -> None:
        await self.inner.aclose()
