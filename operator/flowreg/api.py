"""The Python API: define flows in code and sync them from an agent's start-up.

A ``Registry`` defined here is exactly a FlowRegistry manifest: ``sync_registry`` validates it
with the same schema, checksums and blueprint rules as ``flowreg validate`` (``InvalidSpec``
names the flow and field, before anything is written), checksums equal those of the same flows in a
manifest, and ``Registry.to_yaml()`` writes the manifest that ``flowreg apply`` (or a GitOps
controller) syncs with no writes at all after a Python sync. What is passed is what is synced:
there is no global registry.

Stores are named as on the command line: a directory (embedded Qdrant Edge, the default
``.flowreg/qdrant``), an ``http(s)://`` Qdrant URL (key from ``$QDRANT_API_KEY``), or
``:memory:``. Embedders are ``"hashing"`` (default), ``"wordllama"``, a mapping as in the
operator's configuration, or any object satisfying the ``Embedder`` protocol
(``flowreg.embed.base``: ``identity``, ``dimension``, ``concurrency``, ``probe``, ``embed``,
``aclose``); the sync closes it when done. On a Qdrant server (or cluster), ``settings``
(shards, replication factor, write consistency factor, read consistency, write ordering) are
applied when the collection is created; an existing collection is used as it is, and the
report's ``warnings`` say where it differs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowreg import schema
from flowreg.embed.base import Embedder
from flowreg.flow import Flow
from flowreg.history import Checkpoint, RunHistory
from flowreg.manifest import ALLOW_EMPTY_PATH, MAX_DELETIONS_PATH, Declaration, parse_object
from flowreg.report import SyncReport
from flowreg.schema import API_VERSION, KIND
from flowreg.store import DEFAULT_COLLECTION, DEFAULT_LOCATION, ScoredFlow, open_store
from flowreg.store.settings import CollectionSettings, settings_from
from flowreg.sync import EngineConfig, SyncEngine

EmbedderLike = str | Mapping[str, Any] | Embedder
SettingsLike = CollectionSettings | Mapping[str, Any] | None
"""Collection settings for a Qdrant server: a ``CollectionSettings`` or a mapping with the
operator configuration's keys (``{"shards": 3, "replicationFactor": 2}``)."""


@dataclass(frozen=True)
class Registry:
    """The flows one registry (``namespace/name``) declares for one agent.

    The same fields as a FlowRegistry's ``metadata`` and ``spec``; ``max_deletions`` and
    ``allow_empty`` are its ``spec.deletionGuard``.
    """

    agent_id: str
    flows: Sequence[Flow]
    name: str = "flows"
    namespace: str = "default"
    prune: bool = True
    max_deletions: int = schema.default(MAX_DELETIONS_PATH)
    allow_empty: bool = schema.default(ALLOW_EMPTY_PATH)
    extra_spec: Mapping[str, Any] = field(default_factory=dict)

    def to_manifest(self) -> dict[str, Any]:
        """The FlowRegistry manifest of this registry, flows with their checksums."""
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "agentId": self.agent_id,
                "prune": self.prune,
                "deletionGuard": {"maxDeletions": self.max_deletions,
                                  "allowEmpty": self.allow_empty},
                **self.extra_spec,
                "flows": [_normalised(f).to_manifest() for f in self.flows],
            },
        }

    def to_yaml(self) -> str:
        """``to_manifest()`` as YAML, ready for ``flowreg apply -f`` or a GitOps repository."""
        import yaml

        return yaml.safe_dump(self.to_manifest(), sort_keys=False, allow_unicode=True,
                              width=100)

    def validated(self) -> Declaration:
        """The registry checked as ``flowreg validate`` checks a manifest (``InvalidSpec``)."""
        return parse_object(self.to_manifest(), source=f"<registry {self.namespace}/{self.name}>")


async def sync_registry(registry: Registry, *, store: str = DEFAULT_LOCATION,
               collection: str = DEFAULT_COLLECTION, embedder: EmbedderLike = "hashing",
               deep: bool = False, history: str | Path | None = None,
               settings: SettingsLike = None) -> SyncReport:
    """Make ``store`` hold exactly ``registry``'s flows; the report the CLI prints.

    Raises ``InvalidSpec`` (nothing written), ``DeletionGuard`` (nothing written),
    ``StoreUnavailable``, ``StoreIncompatible`` or ``EmbedderUnavailable``. Conflicts with
    another registry's flows are in the report, not raised.
    """
    decl = registry.validated()
    config = _config(store, collection, embedder, history, settings)
    async with SyncEngine.open(config) as engine:
        return await engine.apply(decl.registry, decl.policy, deep=deep)


def sync_registry_blocking(registry: Registry, **options: Any) -> SyncReport:
    """``sync_registry`` for code without an event loop (runs one)."""
    return asyncio.run(sync_registry(registry, **options))


async def plan_registry(registry: Registry, *, store: str = DEFAULT_LOCATION,
               collection: str = DEFAULT_COLLECTION, embedder: EmbedderLike = "hashing",
               deep: bool = False, settings: SettingsLike = None) -> SyncReport:
    """What ``sync_registry`` would do, as a dry-run report; writes nothing."""
    decl = registry.validated()
    config = _config(store, collection, embedder, None, settings)
    async with SyncEngine.open(config) as engine:
        return (await engine.plan(decl.registry, decl.policy, deep=deep)).report


async def export_registry(agent_id: str, *, store: str = DEFAULT_LOCATION,
                 collection: str = DEFAULT_COLLECTION, owner: str | None = None,
                 name: str | None = None, namespace: str = "default") -> Registry:
    """What the store holds for ``agent_id`` (of ``owner``, if given) as a ``Registry``."""
    flow_store = open_store(store, collection)
    try:
        pairs = await flow_store.read_flows(agent_id)
    finally:
        await flow_store.close()
    flows = tuple(f for f, held_by in pairs if owner is None or held_by == owner)
    return Registry(agent_id, flows, name=name or "flows", namespace=namespace)


async def query_flows(agent_id: str, text: str, *, limit: int = 5, store: str = DEFAULT_LOCATION,
                collection: str = DEFAULT_COLLECTION,
                embedder: EmbedderLike = "hashing",
                settings: SettingsLike = None) -> list[ScoredFlow]:
    """The flows of ``agent_id`` that ``text`` selects, best first (see ``flowreg query``)."""
    config = _config(store, collection, embedder, None, settings)
    async with SyncEngine.open(config) as engine:
        return await engine.query(agent_id, text, limit)


def latest_checkpoint(history: str | Path, run_id: str | None = None) -> Checkpoint | None:
    """The latest checkpoint of run ``run_id`` (default: the latest run) in a run history."""
    runs = RunHistory(str(history))
    try:
        run = runs.get(run_id) if run_id is not None else next(iter(runs.runs(limit=1)), None)
    finally:
        runs.close()
    return None if run is None else Checkpoint(run.run_id, run.done, run.total, run.error)


def _config(store: str, collection: str, embedder: EmbedderLike,
            history: str | Path | None, settings: SettingsLike = None) -> EngineConfig:
    return EngineConfig(store, collection,
                        embedder={"kind": embedder} if isinstance(embedder, str) else embedder,
                        history=str(history) if history is not None else None,
                        settings=settings_from(settings) if isinstance(settings, Mapping)
                        else settings)


def _normalised(flow: Flow) -> Flow:
    """``flow`` with sequences as tuples (lists given in Python checksum the same)."""
    return Flow(flow.name, flow.description, tuple(flow.examples), tuple(flow.conditions),
                flow.blueprint, flow.checksum)
