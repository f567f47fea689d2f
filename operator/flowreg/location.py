"""Where a store is: a location string parsed once into a typed value, and its safe display form.

A store location is exactly one of

* ``:memory:`` — qdrant-client's in-process emulation (tests);
* an ``http://`` or ``https://`` URL with a host — a Qdrant server;
* anything else that does not look like a URL — a directory holding an embedded store.

Text that looks like a URL but is none of those (another scheme such as ``ftp://h/x``, a
scheme with one slash such as ``ftp:/x`` or ``http:/h``, ``host:6333`` without a scheme, an
http(s) URL without a host or with a bad port) is refused: read as a directory it would
silently create a store in a place nobody meant.

Credentials never travel in a location: a URL with userinfo (``user:password@``) is refused,
and the key of a server comes from an environment variable (``$QDRANT_API_KEY`` for the CLI,
``apiKeyEnv`` in the operator's configuration). ``redact`` removes userinfo from any text, and
every message, log line, event and status field that shows a location passes through it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

MEMORY = ":memory:"
ACCEPTED = ("a directory (an embedded store), an http:// or https:// Qdrant URL "
            "(API key from $QDRANT_API_KEY), or :memory:")

_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*:/+)[^/?#@\s]*@")
_SCHEME_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")
_HOST_PORT = re.compile(r"^[A-Za-z0-9.-]+:\d+(/|$)")


class LocationKind(Enum):
    """The three kinds of store."""

    DIRECTORY = "directory"
    SERVER = "server"
    MEMORY = "memory"


class LocationError(ValueError):
    """A location that names no store; the message quotes it without credentials."""


@dataclass(frozen=True)
class StoreLocation:
    """A parsed store location. ``value`` is the directory, the URL or ``:memory:``; it never
    holds credentials, so ``str()`` of a location is safe to show anywhere."""

    kind: LocationKind
    value: str

    def __str__(self) -> str:
        return self.value

    @property
    def is_directory(self) -> bool:
        return self.kind is LocationKind.DIRECTORY

    @property
    def is_server(self) -> bool:
        return self.kind is LocationKind.SERVER

    @property
    def is_memory(self) -> bool:
        return self.kind is LocationKind.MEMORY


def redact(text: str) -> str:
    """``text`` with the userinfo (``user:password@``) of every URL in it removed."""
    return _URL_USERINFO.sub(r"\1", text)


def parse_location(text: str | StoreLocation) -> StoreLocation:
    """The ``StoreLocation`` that ``text`` names; ``LocationError`` naming the accepted forms
    if it names none (see the module docstring)."""
    if isinstance(text, StoreLocation):
        return text
    if not isinstance(text, str) or not text.strip():
        raise LocationError(f"store location {text!r} is empty; expected {ACCEPTED}")
    shown = redact(text)
    if text == MEMORY:
        return StoreLocation(LocationKind.MEMORY, MEMORY)
    lowered = text.lower()
    if lowered.startswith(("http://", "https://")):
        return StoreLocation(LocationKind.SERVER, _server_url(text, shown))
    if _SCHEME_LIKE.match(text):
        scheme = text.split(":", 1)[0]
        raise LocationError(
            f"store location {shown!r} looks like a URL, but {scheme}: is not a scheme flowreg "
            f"reads (and as a directory it would put a store where nobody meant); expected "
            f"{ACCEPTED}")
    if _HOST_PORT.match(text):
        raise LocationError(
            f"store location {shown!r} looks like host:port without a scheme; write "
            f"http://{shown} for a Qdrant server (or ./{shown} for a directory); expected "
            f"{ACCEPTED}")
    if "\0" in text:
        raise LocationError("store location contains a NUL byte")
    return StoreLocation(LocationKind.DIRECTORY, text)


def _server_url(text: str, shown: str) -> str:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise LocationError(f"store URL {shown!r} is malformed ({exc}); expected "
                            f"{ACCEPTED}") from None
    if parts.username is not None or parts.password is not None:
        raise LocationError(
            f"store URL {shown!r} carries credentials (user:password@); they are not accepted "
            "in a URL, which shows in process lists, shell history and logs: put the API key "
            "in $QDRANT_API_KEY (the operator: a Secret named by apiKeyEnv)")
    if not parts.hostname:
        raise LocationError(f"store URL {shown!r} has no host; expected {ACCEPTED}")
    if port == 0:
        raise LocationError(f"store URL {shown!r}: port 0 is not a port; expected {ACCEPTED}")
    if parts.query or parts.fragment:
        raise LocationError(f"store URL {shown!r}: a query or fragment means nothing here; "
                            f"expected {ACCEPTED}")
    return text.rstrip("/") if parts.path in ("", "/") else text
