"""argparse types for the CLI's flags: store locations and numbers in their ranges.

A value out of range or a location that names no store is a usage error (exit 2, argparse's
message naming the flag), raised while the command line is parsed, before anything is opened.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from flowreg.bounds import Bound
from flowreg.location import StoreLocation, parse_location


def store_location(text: str) -> StoreLocation:
    """``--store``: a directory, an http(s) URL or ``:memory:``."""
    try:
        return parse_location(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def bounded(bound: Bound) -> Callable[[str], Any]:
    """An argparse type accepting the numbers of ``bound``."""

    def parse(text: str) -> Any:
        try:
            return bound.check("value", text)
        except ValueError:
            raise argparse.ArgumentTypeError(bound.refusal(text)) from None

    parse.__name__ = "integer" if bound.integer else "number"
    return parse
