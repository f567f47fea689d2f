"""Operator configuration: the Qdrant connections ("stores") an administrator offers tenants.

A FlowRegistry names a store (``spec.store``); only the operator's configuration says where
that store is, which collection and embedder it uses, and which environment variable holds its
API key. Tenants never supply URLs or keys. Example::

    stores:
      default:
        location: http://qdrant.qdrant.svc:6333   # or :memory:, or a directory
        collection: flowreg_flows
        apiKeyEnv: QDRANT_API_KEY                 # filled from a Secret by the Helm chart
        grpcPort: 6334                            # over gRPC on this port (unset: REST)
        embedder: {kind: hashing, dimension: 384}
        cluster:                                  # Qdrant cluster settings (store.settings)
          shards: 3
          replicationFactor: 2
          readConsistency: majority
    driftCheckSeconds: 10                         # the longest the re-sync clock sleeps
    deepCheckInterval: 1h                         # how often each registry is read in full
    concurrentSyncs: 8                            # syncs of large registries at once (schedule)

Every number has a range (``flowreg.bounds``, the same as the CLI's flags) and every location
is parsed (``flowreg.location``); a bad value is a ``ConfigError`` naming the setting. The file
the operator starts with must give each store a ``location``: there is no default store, since
the only one that needs no setting (``:memory:``) loses every flow when the process stops.
``:memory:`` written explicitly is accepted, and logged as a warning at start.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flowreg import bounds
from flowreg.errors import InvalidSpec, UsageError
from flowreg.location import StoreLocation, parse_location
from flowreg.schema import parse_duration as parse_duration
from flowreg.store.settings import CollectionSettings, settings_from


class ConfigError(UsageError, ValueError):
    """The operator's configuration is invalid; the message names the setting (exit 2)."""


@dataclass(frozen=True)
class StoreConfig:
    """One named Qdrant connection with its collection and embedder."""

    name: str
    location: StoreLocation = field(default_factory=lambda: parse_location(":memory:"))
    """Parsed once, when the configuration is read; ``str()`` is safe to show."""
    collection: str = "flowreg_flows"
    api_key_env: str | None = None
    embedder: Mapping[str, Any] = field(default_factory=lambda: {"kind": "hashing"})
    batch_size: int = 100
    page_size: int | None = None
    timeout: float = 30.0
    cluster: CollectionSettings | None = None
    """Applied when the operator creates the collection; read consistency and write ordering
    on every call (``stores.NAME.cluster``)."""
    grpc_port: int | None = None
    """A Qdrant server is spoken to over gRPC on this port (``stores.NAME.grpcPort``; Qdrant's
    own is 6334); ``None``: over REST, at the location's port."""

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
    deep_check_seconds: float = 3600.0
    """How often each registry is deep-checked (every point read; see controller.deepcheck)."""
    concurrent_syncs: int = 8
    """How many syncs run at once, of all registries together (see controller.schedule)."""

    def store(self, name: str) -> StoreConfig:
        """The store called ``name``; ``InvalidSpec`` if the administrator configured none."""
        try:
            return self.stores[name]
        except KeyError:
            known = ", ".join(sorted(self.stores)) or "none"
            raise InvalidSpec(
                f"spec.store: store {name!r} is not configured in this operator "
                f"(configured: {known})") from None


CONCURRENT_SYNCS = bounds.Bound(1, 256)
"""``concurrentSyncs``: syncs of large registries running at once (``controller.schedule``:
``SMALL_SHARE`` times as many syncs in all)."""
EMBEDDER_BOUNDS = {"dimension": bounds.EMBEDDING_DIMENSION,
                   "batchSize": bounds.EMBEDDER_BATCH_SIZE, "timeout": bounds.EMBEDDER_TIMEOUT,
                   "maxRetries": bounds.EMBEDDER_MAX_RETRIES,
                   "concurrency": bounds.EMBEDDER_CONCURRENCY}


def _number(data: Mapping[str, Any], key: str, bound: bounds.Bound, default: Any,
            where: str) -> Any:
    if data.get(key) is None:
        return default
    try:
        return bound.check(f"{where}{key}", data[key])
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _embedder(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {"kind": "hashing"}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping with kind and settings")
    embedder = dict(raw)
    for key, bound in EMBEDDER_BOUNDS.items():
        if key in embedder:
            embedder[key] = _number(embedder, key, bound, None, f"{where}.")
    return embedder


def parse_config(data: Mapping[str, Any], *, require_location: bool = False) -> OperatorConfig:
    """An ``OperatorConfig`` from plain data; raises ``ConfigError`` (a ``ValueError``) naming
    a bad setting. ``require_location``: a store without ``location`` is an error (the operator
    at start); otherwise it is ``:memory:`` (tests, library use)."""
    stores: dict[str, StoreConfig] = {}
    raw_stores = data.get("stores") or {"default": {}}
    if not isinstance(raw_stores, Mapping):
        raise ConfigError("stores: expected a mapping of store name to settings")
    for name, raw in raw_stores.items():
        if raw is not None and not isinstance(raw, Mapping):
            raise ConfigError(f"stores.{name}: expected a mapping of settings")
        raw = dict(raw or {})
        if "apiKey" in raw:
            raise ConfigError(f"stores.{name}: put API keys in a Secret and name it by apiKeyEnv")
        known = {"location", "collection", "apiKeyEnv", "embedder", "batchSize", "pageSize",
                 "timeout", "cluster", "grpcPort"}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"stores.{name}: unknown setting(s) {', '.join(sorted(unknown))}")
        if require_location and raw.get("location") is None:
            raise ConfigError(
                f"stores.{name}.location is not set: the operator has no default store. Give "
                "it a directory on a persistent volume (an embedded store), an http(s):// "
                "Qdrant URL, or ':memory:' explicitly (every flow is lost when the operator "
                "stops)")
        where = f"stores.{name}."
        location = _location(raw.get("location", ":memory:"), f"{where}location")
        grpc_port = _number(raw, "grpcPort", bounds.PORT, None, where)
        if grpc_port is not None and not location.is_server:
            raise ConfigError(f"{where}grpcPort: gRPC is spoken only to a Qdrant server (an "
                              f"http(s):// location), not to {location}")
        stores[str(name)] = StoreConfig(
            name=str(name),
            location=location,
            collection=str(raw.get("collection", "flowreg_flows")),
            api_key_env=raw.get("apiKeyEnv"),
            embedder=_embedder(raw.get("embedder"), f"{where}embedder"),
            batch_size=_number(raw, "batchSize", bounds.BATCH_SIZE, 100, where),
            page_size=_number(raw, "pageSize", bounds.PAGE_SIZE, None, where),
            timeout=float(_number(raw, "timeout", bounds.STORE_TIMEOUT, 30.0, where)),
            cluster=_cluster(raw.get("cluster"), f"{where}cluster."),
            grpc_port=grpc_port,
        )
    deep = data.get("deepCheckInterval", "1h")
    try:
        deep_seconds = bounds.DEEP_CHECK_SECONDS.check(
            "deepCheckInterval", parse_duration(deep) if isinstance(deep, str) else deep)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"deepCheckInterval: {exc}" if "deepCheckInterval" not in str(exc)
                          else str(exc)) from None
    return OperatorConfig(
        stores=stores,
        drift_check_seconds=float(_number(data, "driftCheckSeconds",
                                          bounds.DRIFT_CHECK_SECONDS, 10.0, "")),
        max_status_names=_number(data, "maxStatusNames", bounds.MAX_STATUS_NAMES, 20, ""),
        progress_every_seconds=float(_number(data, "progressEverySeconds",
                                             bounds.PROGRESS_EVERY_SECONDS, 2.0, "")),
        deep_check_seconds=deep_seconds,
        concurrent_syncs=_number(data, "concurrentSyncs", CONCURRENT_SYNCS, 8, ""),
    )


def _location(value: Any, setting: str) -> StoreLocation:
    try:
        return parse_location(str(value))
    except ValueError as exc:
        raise ConfigError(f"{setting}: {exc}") from None


def _cluster(raw: Any, where: str) -> CollectionSettings | None:
    """A store's ``cluster`` settings; ``ValueError`` naming a bad one."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where.rstrip('.')}: expected a mapping of settings")
    try:
        return settings_from(raw, where)
    except InvalidSpec as exc:
        raise ConfigError("; ".join(str(p) for p in exc.problems)) from None


def load_config(path: str | Path | None) -> OperatorConfig:
    """Read the configuration file the operator starts with; every store must name its
    ``location`` (``ConfigError`` without a file, or for a store without one)."""
    if path is None:
        raise ConfigError(
            "no configuration (--config or $FLOWREG_CONFIG): the operator has no default "
            "store. Configure stores.default.location: a directory on a persistent volume (an "
            "embedded store), an http(s):// Qdrant URL, or ':memory:' explicitly (every flow "
            "is lost when the operator stops)")
    try:
        with Path(path).open(encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the configuration {path}: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping of settings")
    return parse_config(data, require_location=True)


def missing_keys(config: OperatorConfig) -> list[str]:
    """The settings naming an API-key variable that is unset or empty (checked at start,
    before any call): ``stores.N.apiKeyEnv`` and an embedder's ``apiKeyEnv``."""
    missing = []
    for store in config.stores.values():
        if store.api_key_env and not os.environ.get(store.api_key_env):
            missing.append(f"stores.{store.name}.apiKeyEnv: ${store.api_key_env} is not set")
        env = store.embedder.get("apiKeyEnv")
        if env and not os.environ.get(str(env)):
            missing.append(f"stores.{store.name}.embedder.apiKeyEnv: ${env} is not set")
    return missing


def store_lines(config: OperatorConfig) -> list[str]:
    """One plain line per configured store: what it is and where (for the start-up log)."""
    lines = []
    for store in config.stores.values():
        where = store.location
        if where.is_memory:
            lines.append(f"store {store.name!r}: :memory: (in this process only: every flow is "
                         "lost when the operator stops)")
        elif where.is_server:
            lines.append(f"store {store.name!r}: Qdrant server {where}, collection "
                         f"{store.collection}")
        else:
            lines.append(f"store {store.name!r}: embedded directory "
                         f"{Path(where.value).resolve()}, collection {store.collection}")
    return lines
