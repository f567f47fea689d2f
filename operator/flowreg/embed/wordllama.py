"""An offline semantic embedder: WordLlama's static 256-dimension model, shipped in its wheel.

WordLlama averages token embeddings distilled from a large language model's input layer: it
matches texts by meaning (``how much money do I have`` lands near ``tell the user their
balance``), needs no network and no download, and embeds thousands of texts a second on a CPU.
The model loads on first use (about half a second), never at import.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowreg.errors import EmbedderUnavailable

MODEL = "l2_supercat"
DIMENSION = 256


class WordLlamaEmbedder:
    """WordLlama ``l2_supercat`` at 256 dimensions, loaded from the installed package only."""

    def __init__(self) -> None:
        self._model: Any = None

    @property
    def identity(self) -> str:
        return f"wordllama-{MODEL}/{DIMENSION}"

    @property
    def dimension(self) -> int:
        return DIMENSION

    def _load(self) -> Any:
        if self._model is None:
            try:
                import wordllama
                from wordllama import WordLlama
            except ImportError as exc:
                raise EmbedderUnavailable(
                    "the wordllama embedder needs the wordllama package "
                    "(pip install 'flowreg[semantic]')") from exc
            # The wheel carries the weights and the tokenizer; look nowhere else.
            self._model = WordLlama.load(config=MODEL, dim=DIMENSION, disable_download=True,
                                         cache_dir=Path(wordllama.__file__).parent)
        return self._model

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_now, texts)

    def embed_now(self, texts: Sequence[str]) -> list[list[float]]:
        """The vectors of ``texts``, L2-normalised (synchronous)."""
        if not texts:
            return []
        vectors = self._load().embed(list(texts), norm=True)
        return [[float(x) for x in row] for row in vectors.tolist()]

    @property
    def concurrency(self) -> int:
        return 1

    async def probe(self) -> int:
        return self.dimension

    async def aclose(self) -> None:
        return None
