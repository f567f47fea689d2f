"""The reconciler without Kubernetes: a sink that plays the apiserver, and FlowRegistry bodies."""

from __future__ import annotations

import copy
from typing import Any

from tests.support.builders import registry_doc


class RecordingSink:
    """Applies status patches to the body (as the apiserver would) and records events."""

    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []
        self.events: list[tuple[str, str, str]] = []

    async def patch_status(self, body, status):
        self.patches.append(copy.deepcopy(status))
        current = body.setdefault("status", {})
        for key, value in status.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = copy.deepcopy(value)

    async def event(self, body, type_, reason, message):
        self.events.append((type_, reason, message))

    async def close(self):
        pass


def body_of(flows, generation=1, **spec) -> dict[str, Any]:
    doc = registry_doc(flows, name="reg", namespace="team-a", **spec)
    doc["metadata"].update(uid="uid-1", generation=generation)
    return doc


def ready(body) -> dict[str, Any]:
    return next(c for c in body["status"]["conditions"] if c["type"] == "Ready")
