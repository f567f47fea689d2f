"""Durations the end-to-end tests measure, reported at the end of the run (not asserted)."""

from __future__ import annotations

TIMINGS: dict[str, float] = {}


def record_timing(what: str, seconds: float) -> None:
    """Keep ``seconds`` under ``what`` for the run's closing summary."""
    TIMINGS[what] = seconds
