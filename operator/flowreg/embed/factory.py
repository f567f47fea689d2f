"""Build an embedder from plain configuration (CLI flags, operator config file)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowreg.embed.base import Embedder
from flowreg.embed.hashing import HashingEmbedder

KINDS = ("hashing", "wordllama", "openai")


def make_embedder(config: Mapping[str, Any] | None = None) -> Embedder:
    """An embedder from ``{"kind": ..., ...}``; ``None`` or ``{}`` gives the hashing default.

    ``hashing``: ``dimension`` (384). ``wordllama``: no settings (offline semantic model,
    256 dimensions). ``openai``: ``url`` (base URL ending in ``/v1``),
    ``model``, optional ``dimension``, ``apiKeyEnv`` (the environment variable holding the key),
    ``batchSize``, ``timeout``, ``maxRetries``. Raises ``ValueError`` for unknown settings.
    """
    config = dict(config or {})
    kind = config.pop("kind", "hashing")
    if kind == "hashing":
        dimension = int(config.pop("dimension", 384))
        _no_more(kind, config)
        return HashingEmbedder(dimension)
    if kind == "wordllama":
        from flowreg.embed.wordllama import WordLlamaEmbedder

        _no_more(kind, config)
        return WordLlamaEmbedder()
    if kind == "openai":
        from flowreg.embed.openai import OpenAIEmbedder

        try:
            url = config.pop("url")
            model = config.pop("model")
        except KeyError as exc:
            raise ValueError(f"embedder 'openai' needs {exc.args[0]!r}") from None
        kwargs: dict[str, Any] = {}
        for key, arg, cast in (("dimension", "dimension", int), ("batchSize", "batch_size", int),
                               ("timeout", "timeout", float), ("maxRetries", "max_retries", int),
                               ("concurrency", "concurrency", int),
                               ("apiKeyEnv", "api_key_env", str)):
            if key in config:
                kwargs[arg] = cast(config.pop(key))
        _no_more(kind, config)
        return OpenAIEmbedder(base_url=url, model=model, **kwargs)
    raise ValueError(f"unknown embedder kind {kind!r} (known: {', '.join(KINDS)})")


def _no_more(kind: str, config: Mapping[str, Any]) -> None:
    if config:
        raise ValueError(f"unknown setting(s) for embedder {kind!r}: {', '.join(sorted(config))}")
