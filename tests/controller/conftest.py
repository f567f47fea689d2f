"""Fixtures of the reconciler tests: a reconciler on qdrant-client's emulation, with a sink
that plays the apiserver."""

from __future__ import annotations

import pytest

from flowreg.controller.config import parse_config
from flowreg.controller.reconcile import Reconciler
from tests.support.reconciler import RecordingSink


@pytest.fixture
async def reconciler():
    rec = Reconciler(parse_config({"stores": {"default": {"location": ":memory:"}}}),
                     RecordingSink())
    yield rec
    await rec.close()
