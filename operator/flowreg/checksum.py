"""Content checksums: full SHA-256 over a canonical JSON encoding, never truncated."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson

PREFIX = "sha256:"


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                            allow_nan=False)


CANONICAL_OPTIONS = orjson.OPT_SORT_KEYS
"""orjson's options for the canonical encoding."""
_dumps = orjson.dumps
_sha256 = hashlib.sha256


def canonical_json(value: Any) -> str:
    """Encode ``value`` so that equal data always gives equal text.

    Keys are sorted, no insignificant white space, non-ASCII kept as UTF-8. For strings,
    integers, booleans, null, lists and string-keyed objects (all a valid FlowRegistry can
    hold) this is exactly ``json.dumps(value, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)``, integer keys included. Floats, which no valid flow holds, are written
    in their shortest round-trip form (``1e-7``, not Python's ``1e-07``); NaN and infinities have
    no defined encoding. Raises ``TypeError`` for values JSON cannot hold.
    """
    return canonical_bytes(value).decode("utf-8")


def canonical_bytes(value: Any) -> bytes:
    """``canonical_json(value)`` as UTF-8: orjson's encoding (several times faster) where it
    can encode the value, else the standard library's (integers beyond 64 bits, non-string
    keys)."""
    try:
        return _dumps(value, option=CANONICAL_OPTIONS)
    except TypeError:
        return _ENCODER.encode(value).encode("utf-8")


def sha256_of(value: Any) -> str:
    """``sha256:<64 hex>`` of the canonical JSON of ``value``."""
    return PREFIX + _sha256(canonical_bytes(value)).hexdigest()


def sha256_text(text: str) -> str:
    """``sha256:<64 hex>`` of a UTF-8 text."""
    return PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()

