"""The default embedder: deterministic feature hashing, offline, no model, no dependencies.

Words and word pairs of the lowercased text are hashed (CRC-32) into ``dimension`` signed
buckets and the vector is L2-normalised. Texts that share words land near each other, which is
enough for a flow selector to work in demos and tests; use a real model in production.

The vectors are exact: every bucket holds an integer count, its square and their sum are exact
in binary floating point, and the square root and the division are correctly rounded, so the
vectorised computation here gives bit for bit the vectors of the token-by-token definition
(``embed_one``) that earlier releases stored, whatever the order the counts are summed in.

A batch is computed at once. ASCII texts (lowercasing and ``\\w`` are then per byte) are joined
into one byte array; numpy finds their words and runs the table-driven CRC-32 over all words
side by side, one byte position per step. Every adjacent pair follows without running its bytes
again: the CRC of ``b"a b"`` continues the register of ``b"a"`` with a space and ``b"b"``'s
bytes, which is ``b"b"``'s own register XOR a table lookup of how far the two starting
registers differ (the CRC is linear, see ``_Tables``). Other texts, and words longer than
``LONG_WORD`` bytes, are hashed by ``zlib.crc32`` token by token. The hashes are counted into
the batch's matrix with one ``numpy.bincount``, its non-zero entries are divided by their row's
norm, and the rows are handed back as lists whose zeros are all one shared float object.
"""

from __future__ import annotations

import itertools
import math
import re
import zlib
from collections.abc import Sequence
from typing import Any

_WORD = re.compile(r"\w+", re.UNICODE)
_WORD_BYTES = re.compile(rb"\w+")
_SPACE = b" ".__add__
_encode = str.encode
_ASCII_WORD_BYTES = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
"""The ASCII characters ``\\w`` matches (the same for ``str`` and ``bytes`` patterns)."""
LONG_WORD = 64
"""Words longer than this (in bytes) are hashed one by one: the side-by-side CRC takes one
numpy step per byte position of the longest word."""
TABLE_COUNTS = 32
"""Counts up to this (either sign) take their value from a per-row table (``_as_lists``)."""
_ZERO = 0.0
"""The one float object of every zero entry of the vectors a batch returns."""
_SEPARATOR = "\n"
"""Joins the ASCII texts of a batch: not a word character, so no word spans two texts."""


class _Tables:
    """The CRC-32 byte table, the ASCII word-character mask and the zero-byte shift tables,
    built on first use.

    ``shift`` holds, for every length ``n`` up to ``LONG_WORD`` and every byte ``k`` of a
    register, what running ``n`` zero bytes makes of that byte alone (``(n * 4 + k) * 256 +
    value``). A byte's step is linear in the register and in the byte (XOR), so running bytes
    ``B`` from register ``r`` gives the register from ``s`` XOR ``zeros(len(B), r XOR s)``: the
    XOR of the four entries of ``r XOR s``'s bytes.
    """

    def __init__(self, np: Any) -> None:
        table = np.arange(256, dtype=np.uint32)
        for _ in range(8):  # the reflected polynomial of zlib's CRC-32
            table = np.where(table & 1, np.uint32(0xEDB88320) ^ (table >> 1), table >> 1)
        self.crc = table.astype(np.uint32)
        self.word = np.zeros(256, dtype=np.int8)
        self.word[np.frombuffer(_ASCII_WORD_BYTES, dtype=np.uint8)] = 1
        shift = np.empty((LONG_WORD + 1, 4, 256), dtype=np.uint32)
        registers = np.arange(256, dtype=np.uint32) << (8 * np.arange(4, dtype=np.uint32))[:, None]
        for length in range(LONG_WORD + 1):
            shift[length] = registers
            registers = self.crc[registers & 0xFF] ^ (registers >> 8)
        self.shift = shift.reshape(-1)

    def zeros(self, lengths: Any, registers: Any) -> Any:
        """The registers after ``lengths`` zero bytes each (every length at most
        ``LONG_WORD``)."""
        base = lengths * 1024
        shift = self.shift
        return (shift[base + (registers & 0xFF)] ^ shift[base + 256 + ((registers >> 8) & 0xFF)]
                ^ shift[base + 512 + ((registers >> 16) & 0xFF)]
                ^ shift[base + 768 + (registers >> 24)])


_tables: _Tables | None = None


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

        global _tables
        if _tables is None:
            _tables = _Tables(np)
        dim = self._dimension
        rows, h = _token_hashes(np, _tables, texts)
        signs = np.where(h >> 31, 1.0, -1.0)
        cells = rows * dim + (h % dim).astype(np.int64)
        matrix = np.bincount(cells, weights=signs,
                             minlength=len(texts) * dim).reshape(len(texts), dim)
        norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
        empty = norms == 0.0
        if empty.any():
            matrix[empty, 0] = 1.0
            norms[empty] = 1.0
        return _as_lists(np, matrix, norms)

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


def _as_lists(np: Any, matrix: Any, norms: Any) -> list[list[float]]:
    """The rows of ``matrix`` (integer counts) divided by ``norms`` (one per row) as lists of
    floats, equal to ``(matrix / norms[:, None]).tolist()``, but every zero entry is the one
    shared ``_ZERO`` (a row of 384 holds some 50 other values; a float object per entry would
    about triple the memory of a vector a caller keeps).

    A row holds few distinct counts (mostly -3 to 3), so each value is divided once: a table
    of ``c / norm`` for every count ``c`` from ``-k`` to ``k`` and every row (the same IEEE
    division), taken into an object array by each entry's count, whose ``tolist`` hands each
    row back as a list of those objects (fewer divisions and float objects than one per
    non-zero entry). Counts beyond ``TABLE_COUNTS`` (a word repeated that often in one text)
    are divided one by one.
    """
    n, dim = matrix.shape
    # The codes index the table (n rows of at most 2 * TABLE_COUNTS + 1): 32 bits if they
    # fit, which makes the take faster.
    index = np.int32 if n * (2 * TABLE_COUNTS + 1) < 2**31 else np.intp
    codes = matrix.astype(index)  # exact: a count is at most the text's length
    top = int(max(codes.max(), -codes.min()))  # never empty: embed_many returns [] for no texts
    k = min(top, TABLE_COUNTS)
    width = 2 * k + 1
    values = np.arange(-k, k + 1, dtype=np.float64) / norms[:, None]
    table = np.array(values.reshape(-1).tolist(), dtype=object)
    table[k::width] = _ZERO
    if top > k:
        np.clip(codes, -k, k, out=codes)
    codes += (np.arange(n, dtype=index) * width + k)[:, None]
    objects = table[codes]
    if top > k:
        flat = matrix.reshape(-1)
        cells = np.flatnonzero(np.abs(flat) > k)
        objects.reshape(-1)[cells] = flat[cells] / norms[cells // dim]
    rows: list[list[float]] = objects.tolist()
    return rows


def _token_hashes(np: Any, tables: _Tables, texts: Sequence[str]) -> tuple[Any, Any]:
    """(row, CRC-32) of every word and adjacent word pair of each of ``texts`` (row: the
    text's index), as two numpy arrays of equal length, in no particular order."""
    ascii_rows = [i for i, text in enumerate(texts) if text.isascii()]
    parts: list[tuple[Any, Any]] = []
    if ascii_rows:
        rows, h = _ascii_hashes(np, tables, [texts[i] for i in ascii_rows])
        if len(ascii_rows) < len(texts):
            rows = np.asarray(ascii_rows, dtype=np.int64)[rows]
        parts.append((rows, h))
    if len(ascii_rows) < len(texts):
        chosen = set(ascii_rows)
        others = [i for i in range(len(texts)) if i not in chosen]
        rows, h = _unicode_hashes(np, [texts[i] for i in others])
        parts.append((np.asarray(others, dtype=np.int64)[rows], h))
    if len(parts) == 1:
        return parts[0]
    return (np.concatenate([r for r, _ in parts]), np.concatenate([h for _, h in parts]))


def _unicode_hashes(np: Any, texts: Sequence[str]) -> tuple[Any, Any]:
    """``_token_hashes`` of any texts, token by token (``zlib.crc32`` over C-level maps)."""
    words: list[bytes] = []
    per_text: list[int] = []
    for text in texts:
        found = list(map(_encode, _WORD.findall(text.lower())))
        words += found
        per_text.append(len(found))
    crcs = list(map(zlib.crc32, words))
    # crc32(b"a b") is crc32(b" b") continued from crc32(b"a"): every adjacent pair's CRC,
    # the pairs across two texts included (dropped below).
    pairs = list(map(zlib.crc32, map(_SPACE, words[1:]), crcs))
    row_of_word = np.repeat(np.arange(len(texts), dtype=np.int64),
                            np.asarray(per_text, dtype=np.int64))
    inside = row_of_word[1:] == row_of_word[:-1]  # the pair's two words are one text's
    h = np.concatenate([np.fromiter(crcs, dtype=np.uint32, count=len(crcs)),
                        np.fromiter(pairs, dtype=np.uint32, count=len(pairs))[inside]])
    return np.concatenate([row_of_word, row_of_word[1:][inside]]), h


def _ascii_hashes(np: Any, tables: _Tables, texts: Sequence[str]) -> tuple[Any, Any]:
    """``_token_hashes`` of ASCII texts, computed side by side over the joined bytes."""
    # ASCII: bytes.lower is str.lower (A-Z only), and much faster.
    data = np.frombuffer(_SEPARATOR.join(texts).encode("ascii").lower(), dtype=np.uint8)
    edges = np.diff(tables.word[data], prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    lengths = np.flatnonzero(edges == -1) - starts
    sizes = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)) + len(_SEPARATOR)
    rows = np.searchsorted(np.cumsum(sizes) - sizes, starts, side="right") - 1
    crc = tables.crc
    # Words: the register starts at all ones; the CRC is its complement at the end.
    words = _crc_registers(np, crc, data, starts, lengths,
                           np.full(len(starts), 0xFFFFFFFF, dtype=np.uint32))
    # Pairs of adjacent words of one text: the first word's register, then a space, then
    # the second word's bytes. The second word's own register ran those bytes from all ones:
    # the pair's differs from it by the zero-byte shift of the difference of the two starts.
    first = np.flatnonzero(rows[1:] == rows[:-1])
    second = first + 1
    registers = words[first]
    registers = crc[(registers ^ 0x20) & 0xFF] ^ (registers >> 8)
    size = lengths[second]
    pairs = words[second] ^ tables.zeros(np.minimum(size, LONG_WORD), ~registers)
    long = np.flatnonzero(size > LONG_WORD)  # beyond the shift tables: byte by byte
    if len(long):
        pairs[long] = _crc_registers(np, crc, data, starts[second[long]], size[long],
                                     registers[long])
    return np.concatenate([rows, rows[second]]), ~np.concatenate([words, pairs])


def _crc_registers(np: Any, crc: Any, data: Any, starts: Any, lengths: Any,
                   registers: Any) -> Any:
    """The CRC-32 registers after running each of ``registers`` over its word's bytes
    (``data[start:start + length]``); words longer than ``LONG_WORD`` go through zlib."""
    out = registers.copy()
    long = np.flatnonzero(lengths > LONG_WORD)
    for i in long.tolist():
        start, register = int(starts[i]), int(registers[i])
        word = data[start:start + int(lengths[i])].tobytes()
        # zlib continues a CRC: its register is the complement of the CRC so far.
        out[i] = ~zlib.crc32(word, ~register & 0xFFFFFFFF) & 0xFFFFFFFF
    short = np.flatnonzero(lengths <= LONG_WORD)
    if not len(short):
        return out
    # Longest first, so that the words still running at byte position j are a prefix.
    order = short[np.argsort((LONG_WORD - lengths[short]).astype(np.uint8), kind="stable")]
    begin, run, size = starts[order], out[order], lengths[order]
    running = np.searchsorted(-size, -np.arange(int(size[0])), side="left").tolist()
    for j, k in enumerate(running):
        head = run[:k]
        run[:k] = crc[(head ^ data[begin[:k] + j]) & 0xFF] ^ (head >> 8)
    out[order] = run
    return out
