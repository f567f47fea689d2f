"""The cyclic garbage collector's settings for a long-running process."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from flowreg.collector import (
    MIDDLE_COLLECTION_AFTER,
    OLD_COLLECTION_AFTER,
    YOUNG_COLLECTION_EVERY,
    tune_for_service,
)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def collector() -> Iterator[None]:
    """The collector as the test found it, afterwards."""
    thresholds, enabled = gc.get_threshold(), gc.isenabled()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        (gc.enable if enabled else gc.disable)()


def test_a_service_frees_earlier_garbage_before_freezing_the_rest(collector: None) -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    garbage = weakref.ref(a)
    del a, b
    tune_for_service()
    assert garbage() is None, "garbage made before the freeze would be kept for good"
    assert gc.get_freeze_count() > 0


def test_a_service_collects_the_young_generation_less_often(collector: None) -> None:
    tune_for_service()
    assert gc.get_threshold() == (YOUNG_COLLECTION_EVERY, MIDDLE_COLLECTION_AFTER,
                                  OLD_COLLECTION_AFTER)
    assert YOUNG_COLLECTION_EVERY > 700 and OLD_COLLECTION_AFTER < 10  # Python's defaults
    a, b = Node(), Node()
    a.other, b.other = b, a
    garbage = weakref.ref(a)
    del a, b
    gc.collect()  # a cycle made afterwards is still freed
    assert garbage() is None
