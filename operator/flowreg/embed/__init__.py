"""Embedders: turn flow texts into vectors. Pluggable; the default needs no model or network."""

from flowreg.embed.base import CountingEmbedder, Embedder
from flowreg.embed.hashing import HashingEmbedder

__all__ = ["CountingEmbedder", "Embedder", "HashingEmbedder"]
