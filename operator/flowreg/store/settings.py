"""Collection settings for a Qdrant server or cluster, and what an existing collection has.

``CollectionSettings`` is configured once (operator store config, CLI flags, Python API).
Shards, replication factor, write consistency factor and the global index are the
collection's, applied only when flowreg creates it; read consistency and write ordering are
asked of every read and write. A collection that exists is used as it is:
``CollectionLayout`` is what it has, and ``layout_warnings`` says where it differs from the
configuration (a warning, never a change).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flowreg.errors import InvalidSpec, Problem

GRPC_PORT = 6334
"""The port a Qdrant server serves gRPC on unless configured otherwise (its chart's too)."""
READ_CONSISTENCIES = ("all", "majority", "quorum")
WRITE_ORDERINGS = ("weak", "medium", "strong")
CLUSTER_READ_CONSISTENCY = "majority"
"""Read consistency on a cluster when none is configured: a replica that lags (a node back from
a crash, still catching up) is outvoted, so a no-op plan never sees flows as missing."""
CLUSTER_WRITE_ORDERING = "medium"
"""Write ordering on a cluster when none is configured (docs/operations.md, "Qdrant cluster":
``strong`` fails every write while the shard's first replica is down; ``medium`` orders writes
through a leader elected among the live replicas)."""
TENANT_FIELD = "agent_id"
TENANT_GRAPH_M = 16
"""Links per point of the graph Qdrant builds for each agent's flows (``hnsw_config.payload_m``)
in a collection without a global index; Qdrant's default ``m``."""

KEYS = {"shards": "shards", "replicationFactor": "replication_factor",
        "writeConsistencyFactor": "write_consistency_factor",
        "readConsistency": "read_consistency", "writeOrdering": "write_ordering",
        "globalIndex": "global_index"}
"""Configuration keys (operator config, Helm values, Python mappings) and their fields."""


@dataclass(frozen=True)
class CollectionSettings:
    """What flowreg asks of a Qdrant server; ``None`` leaves a setting to the server (or, for
    read consistency and write ordering on a cluster, to ``CLUSTER_READ_CONSISTENCY`` and
    ``CLUSTER_WRITE_ORDERING``).

    ``read_consistency`` is ``all``, ``majority``, ``quorum`` or a number of replicas.
    ``global_index``: whether a new collection gets Qdrant's graph over all its points
    (``hnsw_config.m``). Unset or false: a graph per agent only (``m: 0``, ``payload_m``), as
    every search flowreg makes is one agent's; Qdrant then builds no graph over the whole
    collection as it grows. True: for searches across agents made outside flowreg.
    """

    shards: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    read_consistency: str | int | None = None
    write_ordering: str | None = None
    global_index: bool | None = None

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise InvalidSpec(problems)

    def problems(self, where: str = "") -> list[Problem]:
        """What is wrong with these settings (``where`` prefixes the setting names)."""
        return _problems({name: getattr(self, name) for name in KEYS.values()}, where)

    @property
    def configured(self) -> bool:
        return any(getattr(self, name) is not None for name in KEYS.values())

    def to_dict(self) -> dict[str, Any]:
        """The settings under their configuration keys (unset ones left out)."""
        return {key: getattr(self, name) for key, name in KEYS.items()
                if getattr(self, name) is not None}


def settings_from(data: Mapping[str, Any] | None, where: str = "") -> CollectionSettings:
    """Settings from configuration keys (``KEYS``); ``InvalidSpec`` names a bad or unknown key,
    prefixed by ``where`` (``stores.default.cluster.``)."""
    data = dict(data or {})
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise InvalidSpec(f"{where.rstrip('.') or 'collection settings'}: unknown setting(s) "
                          f"{', '.join(unknown)} (known: {', '.join(KEYS)})")
    values = {KEYS[key]: value for key, value in data.items()}
    rc = values.get("read_consistency")
    if isinstance(rc, str) and rc.isdigit():
        values["read_consistency"] = int(rc)
    problems = _problems(values, where)
    if problems:
        raise InvalidSpec(problems)
    return CollectionSettings(**values)


LAYOUT_FIELDS = {"shards": "shards", "replicationFactor": "replication_factor",
                 "writeConsistencyFactor": "write_consistency_factor",
                 "globalIndex": "global_index"}
"""The settings a collection keeps from its creation, by configuration key (a field of both
``CollectionSettings`` and ``CollectionLayout``): configured ones that differ from an existing
collection are warnings."""


def _problems(values: Mapping[str, Any], where: str) -> list[Problem]:
    found: list[Problem] = []
    for key, name in LAYOUT_FIELDS.items():
        value = values.get(name)
        if value is None:
            continue
        if name == "global_index":
            if type(value) is not bool:
                found.append(Problem(f"{where}{key} must be true or false, not {value!r}",
                                     field=f"{where}{key}"))
        elif type(value) is not int or value < 1:
            found.append(Problem(f"{where}{key} must be a whole number of at least 1, "
                                 f"not {value!r}", field=f"{where}{key}"))
    rc = values.get("read_consistency")
    if rc is not None and not (rc in READ_CONSISTENCIES or (type(rc) is int and rc >= 1)):
        found.append(Problem(f"{where}readConsistency must be one of "
                             f"{', '.join(READ_CONSISTENCIES)} or a number of replicas "
                             f"of at least 1, not {rc!r}"))
    ordering = values.get("write_ordering")
    if ordering is not None and ordering not in WRITE_ORDERINGS:
        found.append(Problem(f"{where}writeOrdering must be one of "
                             f"{', '.join(WRITE_ORDERINGS)}, not {ordering!r}",
                             field=f"{where}writeOrdering"))
    rf, wcf = values.get("replication_factor"), values.get("write_consistency_factor")
    if type(rf) is int and type(wcf) is int and rf >= 1 and wcf > rf:
        found.append(Problem(f"{where}writeConsistencyFactor {wcf} is larger than "
                             f"{where}replicationFactor {rf} (a write cannot wait for more "
                             "replicas than a shard has)"))
    return found


@dataclass(frozen=True)
class CollectionLayout:
    """What an existing collection on a server has, and the cluster it is on."""

    collection: str
    shards: int
    replication_factor: int
    write_consistency_factor: int
    tenant_index: bool
    """Whether ``agent_id`` is indexed as Qdrant's tenant key (``is_tenant``)."""
    global_index: bool
    """Whether Qdrant builds a graph over all the collection's points (``hnsw_config.m`` > 0)."""
    cluster: bool
    peers: int
    read_consistency: str | int | None
    write_ordering: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"collection": self.collection, "shards": self.shards,
                "replicationFactor": self.replication_factor,
                "writeConsistencyFactor": self.write_consistency_factor,
                "tenantIndex": self.tenant_index, "globalIndex": self.global_index,
                "cluster": self.cluster, "peers": self.peers,
                "readConsistency": self.read_consistency, "writeOrdering": self.write_ordering}


def layout_warnings(layout: CollectionLayout, settings: CollectionSettings) -> list[str]:
    """Where an existing collection differs from the configuration, and how to upgrade a
    collection whose ``agent_id`` index is not the tenant key. flowreg uses it as it is."""
    warnings: list[str] = []
    name = layout.collection
    for key, field_name in LAYOUT_FIELDS.items():
        wanted, held = getattr(settings, field_name), getattr(layout, field_name)
        if wanted is not None and wanted != held:
            warnings.append(f"collection {name!r} has {key} {_shown(held)}, the configuration "
                            f"asks for {_shown(wanted)}; flowreg uses the collection as it is "
                            "(change it in Qdrant, or the configuration, to silence this)")
    if not layout.tenant_index:
        warnings.append(
            f"collection {name!r} has no tenant index on {TENANT_FIELD} (is_tenant); flowreg "
            "works, but Qdrant cannot lay out each agent's flows together. Upgrade: PUT "
            f"/collections/{name}/index with "
            f'{{"field_name": "{TENANT_FIELD}", "field_schema": {{"type": "keyword", '
            '"is_tenant": true}}')
    return warnings


def check_peers(collection: str, settings: CollectionSettings, peers: int,
                cluster: bool) -> None:
    """``InvalidSpec`` if ``settings`` ask for more replicas than the cluster has peers."""
    rf = settings.replication_factor
    if rf is not None and rf > peers:
        on = f"{peers} peer(s)" if cluster else "1 peer (the server is not a cluster)"
        raise InvalidSpec(
            f"replicationFactor {rf} is larger than the number of peers, {peers}: collection "
            f"{collection!r} not created (a shard cannot have more replicas than there are "
            f"peers; Qdrant has {on})")


def _shown(value: Any) -> str:
    """A setting's value as the configuration writes it (YAML: ``true``, not ``True``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)
