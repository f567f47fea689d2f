"""The default embedder: deterministic feature hashing, offline, no model, no dependencies.

Words and word pairs of the lowercased text are hashed (CRC-32) into ``dimension`` signed
buckets and the vector is L2-normalised. Texts that share words land near each other, which is
enough for a flow selector to work in demos and tests; use a real model in production.

The vectors are exact: every bucket holds an integer count, its square and their sum are exact
in binary floating point, and the square root and the division are correctly rounded, so the
vectorised computation here gives bit for bit the vectors of the token-by-token definition
(``embed_one``) that earlier releases stored. A batch is computed at once: tokens are hashed by
C-level ``map`` calls, counted with one ``numpy.bincount``, and normalised row by row.
"""

from __future__ import annotations

import itertools
import math
import re
import zlib
from collections.abc import Sequence

_WORD = re.compile(r"\w+", re.UNICODE)
_WORD_BYTES = re.compile(rb"\w+")
_SPACE = b" ".__add__
_encode = str.encode


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
        return self.embed_many(texts)

    def embed_many(self, texts: Sequence[str]) -> list[list[float]]:
        """The vectors of ``texts`` (synchronous), equal to ``embed_one`` of each."""
        if not texts:
            return []
        import numpy as np  # here: a command that embeds nothing does not pay for the import

        dim = self._dimension
        words: list[bytes] = []
        per_text: list[int] = []
        for text in texts:
            lowered = text.lower()
            # On ASCII text, \w of bytes and of str match the same characters.
            found = _WORD_BYTES.findall(lowered.encode()) if lowered.isascii() \
                else list(map(_encode, _WORD.findall(lowered)))
            words += found
            per_text.append(len(found))
        crcs = list(map(zlib.crc32, words))
        # crc32(b"a b") is crc32(b" b") continued from crc32(b"a"): every adjacent pair's CRC,
        # the pairs across two texts included (dropped below).
        pairs = list(map(zlib.crc32, map(_SPACE, words[1:]), crcs))
        n_words = np.asarray(per_text, dtype=np.int64)
        row_of_word = np.repeat(np.arange(len(texts), dtype=np.int64), n_words)
        inside = row_of_word[1:] == row_of_word[:-1]  # the pair's two words are one text's
        h = np.concatenate([np.fromiter(crcs, dtype=np.uint32, count=len(crcs)),
                            np.fromiter(pairs, dtype=np.uint32, count=len(pairs))[inside]])
        rows = np.concatenate([row_of_word, row_of_word[1:][inside]])
        signs = np.where(h >> 31, 1.0, -1.0)
        cells = rows * dim + (h % dim).astype(np.int64)
        matrix = np.bincount(cells, weights=signs,
                             minlength=len(texts) * dim).reshape(len(texts), dim)
        norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
        empty = norms == 0.0
        if empty.any():
            matrix[empty, 0] = 1.0
            norms[empty] = 1.0
        result: list[list[float]] = (matrix / norms[:, None]).tolist()
        return result

    def embed_one(self, text: str) -> list[float]:
        """The vector of one text, token by token: the definition ``embed_many`` computes."""
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
