"""The default embedder: deterministic feature hashing, offline, no model, no dependencies.

Words and word pairs of the lowercased text are hashed (CRC-32) into ``dimension`` signed
buckets and the vector is L2-normalised. Texts that share words land near each other, which is
enough for a flow selector to work in demos and tests; use a real model in production.
"""

from __future__ import annotations

import itertools
import math
import re
import zlib
from collections.abc import Sequence

_WORD = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder:
    """Feature-hashing embedder. Same text, same vector, on every machine and Python version."""

    def __init__(self, dimension: int = 384) -> None:
        if dimension < 8:
            raise ValueError("dimension must be at least 8")
        self._dimension = dimension

    @property
    def identity(self) -> str:
        return f"hashing-v1/{self._dimension}"

    @property
    def dimension(self) -> int:
        return self._dimension

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.embed_one(text) for text in texts]

    def embed_one(self, text: str) -> list[float]:
        """The vector of one text (synchronous; ``embed`` maps it over a batch)."""
        dim = self._dimension
        vec = [0.0] * dim
        words = _WORD.findall(text.lower())
        tokens = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
        for token in tokens:
            h = zlib.crc32(token.encode("utf-8"))
            vec[h % dim] += 1.0 if (h >> 31) & 1 else -1.0
        norm = math.sqrt(sum(x * x for x in vec))
        if norm == 0.0:
            vec[0] = 1.0
            return vec
        return [x / norm for x in vec]

    @property
    def concurrency(self) -> int:
        return 1

    async def probe(self) -> int:
        return self.dimension

    async def aclose(self) -> None:
        return None
