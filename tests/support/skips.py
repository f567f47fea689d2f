"""Skips that must not pass unnoticed: repeated in a banner at the end of the run."""

from __future__ import annotations

from typing import NoReturn

import pytest

LOUD: list[str] = []


def loud_skip(reason: str) -> NoReturn:
    """Skip the test, and list ``reason`` under "NOT TESTED ON THIS MACHINE" at the end."""
    if reason not in LOUD:
        LOUD.append(reason)
    pytest.skip(reason)
