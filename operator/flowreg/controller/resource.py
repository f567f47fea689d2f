"""A FlowRegistry object as the operator reads it from the Kubernetes API.

``FlowRegistry.of(body)`` is parsed once per handler call. Its spec fields hold the CRD's
defaults wherever the object leaves them out (``crds/flowregistry.yaml`` is the one place that
states them), so no reader of the object repeats a default. Nothing here rejects an object: a
spec the schema refuses is still read (a bad ``interval`` falls back to the default), and
``declaration()`` is what validates it, raising ``InvalidSpec`` for the status to report.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from flowreg import schema
from flowreg.manifest import INTERVAL_PATH, Declaration, parse_object

DEFAULT_INTERVAL = schema.parse_duration(schema.default(INTERVAL_PATH))
"""Seconds between drift checks of a registry whose ``spec.interval`` cannot be read."""


@dataclass(frozen=True)
class FlowRegistry:
    """One FlowRegistry: identity, generation, spec (with the CRD's defaults) and status.

    ``body`` is the object as the handler received it; sinks address the object through it.
    ``spec`` and ``status`` are plain copies, never the handler's own mappings, made on first
    use (a drift-check tick reads only ``spec.interval`` and copies no flows).
    """

    body: Mapping[str, Any]
    uid: str
    name: str | None
    namespace: str | None
    generation: int | None
    deleting: bool

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> FlowRegistry:
        """Read ``body`` (a kopf ``Body`` or a plain mapping)."""
        meta = body.get("metadata") or {}
        return cls(
            body=body,
            uid=uid_of(body),
            name=meta.get("name"),
            namespace=meta.get("namespace"),
            generation=meta.get("generation"),
            deleting=bool(meta.get("deletionTimestamp")),
        )

    @cached_property
    def spec(self) -> Mapping[str, Any]:
        """A plain copy of ``spec`` with the CRD's defaults filled in."""
        spec = _plain(self.body.get("spec") or {})
        if isinstance(spec, dict):
            schema.apply_defaults({"spec": spec})
        return spec  # type: ignore[no-any-return]

    @cached_property
    def status(self) -> Mapping[str, Any]:
        """A plain copy of ``status`` as the body holds it."""
        return _plain(self.body.get("status") or {})  # type: ignore[no-any-return]

    @property
    def owner(self) -> str:
        """``namespace/name``, as the points written for this registry carry it."""
        return f"{self.namespace or 'default'}/{self.name}"

    @property
    def store(self) -> str:
        return str(self.spec.get("store"))

    @property
    def agent_id(self) -> str:
        """``spec.agentId``; ``KeyError`` if the object has none (the CRD requires it)."""
        return str(self.spec["agentId"])

    @property
    def suspend(self) -> bool:
        return bool(self.spec.get("suspend"))

    @property
    def deletion_policy(self) -> str:
        return str(self.spec.get("deletionPolicy"))

    @property
    def flow_count(self) -> int:
        return len(self.spec.get("flows") or [])

    def interval_seconds(self) -> float:
        """``spec.interval`` in seconds, at least the CRD's minimum; the default if unreadable."""
        try:
            wait = schema.parse_duration((self.body.get("spec") or {}).get("interval"))
        except (TypeError, ValueError):
            wait = DEFAULT_INTERVAL
        return max(wait, schema.minimum_duration(INTERVAL_PATH) or 0.0)

    def declaration(self) -> Declaration:
        """The validated declaration; ``InvalidSpec`` naming every problem of the spec."""
        return parse_object({"apiVersion": self.body.get("apiVersion"),
                             "kind": self.body.get("kind"),
                             "metadata": {"name": self.name, "namespace": self.namespace},
                             "spec": self.spec})


def _plain(value: Any) -> Any:
    """A deep copy into plain dicts and lists (through JSON: an object's content is JSON)."""
    return json.loads(json.dumps(value, default=dict))


def uid_of(body: Mapping[str, Any]) -> str:
    """The object's ``metadata.uid`` (``namespace/name`` for an object that has none)."""
    meta = body.get("metadata") or {}
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")
