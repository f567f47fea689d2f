"""Operator configuration: the Qdrant connections ("stores") an administrator offers tenants.

A FlowRegistry names a store (``spec.store``); only the operator's configuration says where
that store is, which collection and embedder it uses, and which environment variable holds its
API key. Tenants never supply URLs or keys. Example::

    stores:
      default:
        location: http://qdrant.qdrant.svc:6333   # or :memory:, or a directory
        collection: flowreg_flows
        apiKeyEnv: QDRANT_API_KEY                 # filled from a Secret by the Helm chart
        embedder: {kind: hashing, dimension: 384}
        cluster:                                  # Qdrant cluster settings (store.settings)
          shards: 3
          replicationFactor: 2
          readConsistency: majority
    driftCheckSeconds: 10                         # how often intervals are checked
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flowreg.errors import InvalidSpec
from flowreg.schema import parse_duration as parse_duration
from flowreg.store.settings import CollectionSettings, settings_from


@dataclass(frozen=True)
class StoreConfig:
    """One named Qdrant connection with its collection and embedder."""

    name: str
    location: str = ":memory:"
    collection: str = "flowreg_flows"
    api_key_env: str | None = None
    embedder: Mapping[str, Any] = field(default_factory=lambda: {"kind": "hashing"})
    batch_size: int = 100
    page_size: int | None = None
    timeout: float = 30.0
    cluster: CollectionSettings | None = None
    """Applied when the operator creates the collection; read consistency and write ordering
    on every call (``stores.NAME.cluster``)."""

    @property
    def api_key(self) -> str | None:
        """The API key, read from the environment at use (never stored in config or logs)."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None


@dataclass(frozen=True)
class OperatorConfig:
    """Everything the operator process is configured with."""

    stores: Mapping[str, StoreConfig]
    drift_check_seconds: float = 10.0
    max_status_names: int = 20
    progress_every_seconds: float = 2.0

    def store(self, name: str) -> StoreConfig:
        """The store called ``name``; ``InvalidSpec`` if the administrator configured none."""
        try:
            return self.stores[name]
        except KeyError:
            known = ", ".join(sorted(self.stores)) or "none"
            raise InvalidSpec(
                f"spec.store: store {name!r} is not configured in this operator "
                f"(configured: {known})") from None


def parse_config(data: Mapping[str, Any]) -> OperatorConfig:
    """An ``OperatorConfig`` from plain data; raises ``ValueError`` naming a bad setting."""
    stores: dict[str, StoreConfig] = {}
    raw_stores = data.get("stores") or {"default": {}}
    if not isinstance(raw_stores, Mapping):
        raise ValueError("stores: expected a mapping of store name to settings")
    for name, raw in raw_stores.items():
        raw = dict(raw or {})
        if "apiKey" in raw:
            raise ValueError(f"stores.{name}: put API keys in a Secret and name it by apiKeyEnv")
        known = {"location", "collection", "apiKeyEnv", "embedder", "batchSize", "pageSize",
                 "timeout", "cluster"}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"stores.{name}: unknown setting(s) {', '.join(sorted(unknown))}")
        stores[str(name)] = StoreConfig(
            name=str(name),
            location=str(raw.get("location", ":memory:")),
            collection=str(raw.get("collection", "flowreg_flows")),
            api_key_env=raw.get("apiKeyEnv"),
            embedder=dict(raw.get("embedder") or {"kind": "hashing"}),
            batch_size=int(raw.get("batchSize", 100)),
            page_size=int(raw["pageSize"]) if raw.get("pageSize") else None,
            timeout=float(raw.get("timeout", 30.0)),
            cluster=_cluster(raw.get("cluster"), f"stores.{name}.cluster."),
        )
    return OperatorConfig(
        stores=stores,
        drift_check_seconds=float(data.get("driftCheckSeconds", 10.0)),
        max_status_names=int(data.get("maxStatusNames", 20)),
        progress_every_seconds=float(data.get("progressEverySeconds", 2.0)),
    )


def _cluster(raw: Any, where: str) -> CollectionSettings | None:
    """A store's ``cluster`` settings; ``ValueError`` naming a bad one."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where.rstrip('.')}: expected a mapping of settings")
    try:
        return settings_from(raw, where)
    except InvalidSpec as exc:
        raise ValueError("; ".join(str(p) for p in exc.problems)) from None


def load_config(path: str | Path | None) -> OperatorConfig:
    """Read the configuration file (``None``: one embedded in-memory store named default)."""
    if path is None:
        return parse_config({})
    with Path(path).open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    return parse_config(data)
