"""Content checksums: full SHA-256 over a canonical JSON encoding, never truncated."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

PREFIX = "sha256:"
CHECKSUM_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                            allow_nan=False)


def canonical_json(value: Any) -> str:
    """Encode ``value`` so that equal data always gives equal text.

    Keys are sorted, no insignificant white space, non-ASCII kept as UTF-8, floats in Python's
    shortest round-trip form. Raises ``TypeError`` for values JSON cannot hold.
    """
    return _ENCODER.encode(value)


def sha256_of(value: Any) -> str:
    """``sha256:<64 hex>`` of the canonical JSON of ``value``."""
    digest = hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
    return PREFIX + digest


def sha256_text(text: str) -> str:
    """``sha256:<64 hex>`` of a UTF-8 text."""
    return PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_checksum(value: object) -> bool:
    """True for a well-formed ``sha256:<64 lowercase hex>`` string."""
    return isinstance(value, str) and CHECKSUM_PATTERN.match(value) is not None
