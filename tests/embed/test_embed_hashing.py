"""The hashing embedder computes a batch at once and gives bit for bit the vectors of its
token-by-token definition, which earlier releases stored: existing stores are neither
re-embedded nor refused."""

from __future__ import annotations

import asyncio
import hashlib
import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from flowreg.embed import HashingEmbedder
from flowreg.embed.hashing import LONG_WORD, TABLE_COUNTS

SAMPLES = ["", "Tell the user the current balance.\nWhat's my balance?",
           "ÄÖÜ straße ǅ İstanbul ﬁx — 東京 タワー", "a " * 5000, "!!! ??? ...", "x"]
PINNED = {  # sha256 of the vectors of SAMPLES, as the token-by-token embedder made them
    384: "f21ce7b8c8aba8076b7bc073dabec8de59b6dc2f8cc7baa081e2a0c9dddaa012",
    64: "ff60dd90e588c1be97fb94f3fcfb431c0888a8e062716eb369a617d081e06614",
}


def packed(vectors: list[list[float]], dim: int) -> bytes:
    return b"".join(struct.pack(f"{dim}d", *v) for v in vectors)


def test_vectors_are_the_ones_earlier_releases_stored():
    for dim, digest in PINNED.items():
        embedder = HashingEmbedder(dim)
        batch = asyncio.run(embedder.embed(SAMPLES))
        assert hashlib.sha256(packed(batch, dim)).hexdigest() == digest
        one_by_one = [embedder.embed_one(t) for t in SAMPLES]
        assert packed(one_by_one, dim) == packed(batch, dim)


WORDS = ["balance", "Balance", "ÉTÉ", "straße", "İ", "ǅ", "東京", "x", "_", "a1", "١٢٣", "ﬁ",
         "don't", "e-mail", "\u0301", "😀", "Ω", "ß"]


def random_text(rng: random.Random) -> str:
    seps = [" ", "  ", "\n", ", ", "—", "\t", "", "!"]
    return "".join(rng.choice(WORDS) + rng.choice(seps) for _ in range(rng.randrange(0, 60)))


def test_batches_equal_the_definition_on_many_random_texts():
    rng = random.Random(21)
    texts = [random_text(rng) for _ in range(3000)] + ["", " ", "word " * 20_000]
    for dim in (8, 384, 1024):
        embedder = HashingEmbedder(dim)
        for start in range(0, len(texts), 250):
            chunk = texts[start:start + 250]
            assert packed(embedder.embed_many(chunk), dim) == packed(
                [embedder.embed_one(t) for t in chunk], dim)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=200), max_size=8), st.sampled_from([8, 100, 384]))
def test_any_unicode_batch_equals_the_definition(texts, dim):
    embedder = HashingEmbedder(dim)
    assert packed(embedder.embed_many(texts), dim) == packed(
        [embedder.embed_one(t) for t in texts], dim)


ASCII = ["Tell the user the current BALANCE.\nWhat's my balance?", "snake_case_name 42 x1 X1",
         "  leading and trailing  ", "", "!!!", "a", "The\tquick\r\nbrown fox; the QUICK fox"]
ASCII_PINNED = "13139a56b3ef384b34a4871a5116a5058dcb2e02400867e2f271c3421b3c810f"
"""sha256 of the 384-dimensional vectors of ASCII (all hashed side by side), as the
token-by-token embedder made them."""


def test_ascii_batches_hashed_side_by_side_are_the_stored_vectors():
    embedder = HashingEmbedder(384)
    batch = embedder.embed_many(ASCII)
    assert packed(batch, 384) == packed([embedder.embed_one(t) for t in ASCII], 384)
    assert hashlib.sha256(packed(batch, 384)).hexdigest() == ASCII_PINNED


def test_long_words_and_their_pairs_equal_the_definition():
    long_word = LONG_WORD + 1
    texts = ["x" * long_word + " hello " + "Y" * (long_word + 7) + " z",
             "a" * LONG_WORD + " " + "b" * long_word, ("w" * long_word + " ") * 3,
             "q" * 5000, "short words only", "über " + "u" * 200 + " end"]
    for dim in (8, 384):
        embedder = HashingEmbedder(dim)
        assert packed(embedder.embed_many(texts), dim) == packed(
            [embedder.embed_one(t) for t in texts], dim)


def test_counts_either_side_of_the_value_table_equal_the_definition():
    # A word repeated more than TABLE_COUNTS times in one text is divided on its own; the
    # other texts of its batch still take their values from the table.
    texts = ["ok " * TABLE_COUNTS, "ok " * (TABLE_COUNTS + 1), "no " * (3 * TABLE_COUNTS),
             "Tell the user the balance.", "", "x " * TABLE_COUNTS + "y " * (TABLE_COUNTS + 5)]
    for dim in (8, 384):
        embedder = HashingEmbedder(dim)
        for batch in (texts, texts[:1], texts[1:2], texts[3:]):
            assert packed(embedder.embed_many(batch), dim) == packed(
                [embedder.embed_one(t) for t in batch], dim)


def test_rows_are_independent_lists_of_floats_sharing_one_zero():
    rng = random.Random(5)
    texts = [random_text(rng) for _ in range(40)] + ASCII + SAMPLES
    embedder = HashingEmbedder(384)
    batch = embedder.embed_many(texts)
    assert all(type(v) is list and len(v) == 384 for v in batch)
    assert all(type(x) is float for v in batch for x in v)
    assert len({id(x) for v in batch for x in v if x == 0.0}) == 1  # one shared zero
    assert len({id(v) for v in batch}) == len(batch)
    batch[0][0] = 5.0  # a caller may change one vector without changing another
    assert all(v[0] != 5.0 for v in batch[1:])


def varied_corpus() -> list[str]:
    """ASCII texts of words from 1 to 300 bytes (either side of ``LONG_WORD``) with varied
    separators, then empty, unicode, mixed and very long texts."""
    rng = random.Random(2026)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
    seps = [" ", "  ", "\n", ", ", ". ", "\t", "-", "'", "!? ", "\r\n"]
    texts = []
    for _ in range(600):
        words = []
        for _ in range(rng.randrange(0, 80)):
            n = rng.choice([1, 2, 3, 5, 8, 12, 20, 40, 63, 64, 65, 66, 100, 300])
            words.append("".join(rng.choice(alphabet) for _ in range(n)))
            words.append(rng.choice(seps))
        texts.append("".join(words))
    return [*texts, "", " ", "é", "ÄÖÜ straße " * 3, "a " * 3000, "z" * 5000,
            "mixed ascii and 東京 text"]


VARIED_PINNED = {  # sha256 of varied_corpus()'s vectors, embedded 100 at a time by the
    # embedder before its pairs were shifted by table (each pair's bytes run one by one)
    8: "dabea9bf75a99c381fabe824c1289e24fadf3b89c7a4330d251e4136cbbd67db",
    384: "f87530f9c51c85501b4204cae8b87e3c405bc23ccfaae495260cd574101d0e53",
}


def test_varied_texts_give_the_vectors_of_the_earlier_implementation():
    texts = varied_corpus()
    for dim, digest in VARIED_PINNED.items():
        embedder = HashingEmbedder(dim)
        batch = [v for start in range(0, len(texts), 100)
                 for v in embedder.embed_many(texts[start:start + 100])]
        assert hashlib.sha256(packed(batch, dim)).hexdigest() == digest
        assert packed(batch, dim) == packed([embedder.embed_one(t) for t in texts], dim)
