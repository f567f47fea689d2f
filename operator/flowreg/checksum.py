"""Content checksums: full SHA-256 over a canonical JSON encoding, never truncated."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import orjson

PREFIX = "sha256:"
CHECKSUM_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                            allow_nan=False)


_ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
_dumps = orjson.dumps
_sha256 = hashlib.sha256


def canonical_json(value: Any) -> str:
    """Encode ``value`` so that equal data always gives equal text.

    Keys are sorted, no insignificant white space, non-ASCII kept as UTF-8, floats in Python's
    shortest round-trip form: exactly ``json.dumps(value, sort_keys=True, separators=(",",
    ":"), ensure_ascii=False)``. Raises ``TypeError`` or ``ValueError`` for values JSON cannot
    hold.
    """
    return canonical_bytes(value).decode("utf-8")


def canonical_bytes(value: Any) -> bytes:
    """``canonical_json(value)`` as UTF-8, computed by orjson (several times faster) when it
    can encode the value, else by the standard library; both give the same bytes."""
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS)
    except TypeError:  # e.g. integers beyond 64 bits
        return _ENCODER.encode(value).encode("utf-8")


def sha256_of(value: Any) -> str:
    """``sha256:<64 hex>`` of the canonical JSON of ``value``."""
    try:  # canonical_bytes, inlined: this runs for every declared flow on every sync
        encoded = _dumps(value, option=_ORJSON_OPTIONS)
    except TypeError:
        encoded = _ENCODER.encode(value).encode("utf-8")
    return PREFIX + _sha256(encoded).hexdigest()


def sha256_text(text: str) -> str:
    """``sha256:<64 hex>`` of a UTF-8 text."""
    return PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_checksum(value: object) -> bool:
    """True for a well-formed ``sha256:<64 lowercase hex>`` string."""
    return isinstance(value, str) and CHECKSUM_PATTERN.match(value) is not None
