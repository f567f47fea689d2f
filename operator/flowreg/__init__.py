"""flowreg: keep an agent's procedural memory in Qdrant in step with declared FlowRegistries.

The public Python API is the names in ``__all__`` (see docs/python-api.md); everything else is
internal. They load on first use, so importing ``flowreg`` (or running the CLI) stays cheap.

Layers (enforced by import-linter, see pyproject.toml):
shells (``cli``, ``controller``, ``api``) -> engine (``sync``) -> parts (``plan``, ``store``,
``embed``, ``manifest``, ``history``) -> ``blueprint``/``schema`` -> ``flow`` ->
``checksum``/``errors``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from flowreg.version import __version__

_PUBLIC = {
    "Flow": "flowreg.flow",
    "Registry": "flowreg.api",
    "SyncReport": "flowreg.report",
    "Checkpoint": "flowreg.history",
    "ScoredFlow": "flowreg.store",
    "CollectionSettings": "flowreg.store.settings",
    "sync_registry": "flowreg.api",
    "sync_registry_blocking": "flowreg.api",
    "plan_registry": "flowreg.api",
    "export_registry": "flowreg.api",
    "query_flows": "flowreg.api",
    "latest_checkpoint": "flowreg.api",
    "FlowregError": "flowreg.errors",
    "InvalidSpec": "flowreg.errors",
    "DeletionGuard": "flowreg.errors",
    "StoreUnavailable": "flowreg.errors",
    "StoreIncompatible": "flowreg.errors",
    "EmbedderUnavailable": "flowreg.errors",
}
__all__ = [
    "Checkpoint", "CollectionSettings", "DeletionGuard", "EmbedderUnavailable", "Flow",
    "FlowregError", "InvalidSpec", "Registry", "ScoredFlow", "StoreIncompatible",
    "StoreUnavailable", "SyncReport",
    "__version__", "export_registry", "latest_checkpoint", "plan_registry", "query_flows",
    "sync_registry", "sync_registry_blocking",
]

if TYPE_CHECKING:
    from flowreg.api import (
        Registry,
        export_registry,
        latest_checkpoint,
        plan_registry,
        query_flows,
        sync_registry,
        sync_registry_blocking,
    )
    from flowreg.errors import (
        DeletionGuard,
        EmbedderUnavailable,
        FlowregError,
        InvalidSpec,
        StoreIncompatible,
        StoreUnavailable,
    )
    from flowreg.flow import Flow
    from flowreg.history import Checkpoint
    from flowreg.report import SyncReport
    from flowreg.store import ScoredFlow
    from flowreg.store.settings import CollectionSettings


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'flowreg' has no attribute {name!r} (the public API is "
                             f"{', '.join(sorted(_PUBLIC))})")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return list(__all__)
