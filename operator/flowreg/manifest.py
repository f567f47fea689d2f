"""Reading FlowRegistry manifests: YAML with line numbers, schema and meaning checks, defaults.

Everything is checked before anything is returned: ``load`` either gives every declaration in
the files or raises one ``InvalidSpec`` listing every problem, each naming the file, line, flow
and field. Nothing downstream ever sees half-valid input.
"""

from __future__ import annotations

import functools
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from flowreg import blueprint as blueprints
from flowreg import documents, schema
from flowreg.collector import collector_paused
from flowreg.documents import Document, PathKey
from flowreg.errors import InvalidSpec, Problem
from flowreg.flow import DeclaredFlows, DeferredFlows, Flow, SyncPolicy
from flowreg.read_cache import CachedRegistry, ReadCache
from flowreg.size import cluster_size_warning

MANIFEST_SUFFIXES = (".yaml", ".yml")
INTERVAL_PATH: PathKey = ("spec", "interval")
MAX_DELETIONS_PATH: PathKey = ("spec", "deletionGuard", "maxDeletions")
ALLOW_EMPTY_PATH: PathKey = ("spec", "deletionGuard", "allowEmpty")
_dumps = orjson.dumps
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")

__all__ = ["Declaration", "Document", "load", "manifest_files", "parse_document",
           "parse_object", "refresh_checksums"]


@dataclass(frozen=True)
class Declaration:
    """A validated FlowRegistry: the registry, its sync policy, and where it came from.

    Every field the manifest leaves out holds the CRD's default.
    """

    registry: DeclaredFlows | DeferredFlows
    policy: SyncPolicy
    name: str
    namespace: str
    source: str
    store: str
    deletion_policy: str
    suspend: bool
    interval: str

    @functools.cached_property
    def size_warning(self) -> str | None:
        """``flowreg.size.cluster_size_warning`` of the registry (None: a cluster stores it)."""
        if isinstance(self.registry, DeferredFlows):
            return self.registry.size_warning
        return cluster_size_warning(self.registry, self.name, self.namespace, self.source)


def manifest_files(paths: Iterable[str | Path]) -> list[Path]:
    """The manifest files named by ``paths``: files as given, directories' ``*.yaml`` sorted."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in MANIFEST_SUFFIXES))
        elif path.exists() or str(raw) == "-":
            files.append(path)
        else:
            raise InvalidSpec(Problem("no such file or directory", source=str(raw)))
    if not files:
        raise InvalidSpec(Problem("no manifest files found", source=", ".join(map(str, paths))))
    return files


def load(paths: Iterable[str | Path], *, verify_checksums: bool = True,
         cache: ReadCache | None = None, defer: bool = False) -> list[Declaration]:
    """Every FlowRegistry in ``paths``, validated; raises ``InvalidSpec`` listing all problems.

    Each file is read under the limits of ``flowreg.documents``; a file with a problem is read
    again with lines recorded, so that every problem names its line. Input that holds no
    document at all is refused.

    With ``cache``, every file read without a problem is kept in it (``flowreg.read_cache``).
    With ``defer`` too, a file the cache already holds is not parsed: its declarations carry
    ``DeferredFlows``, whose ``load`` reads the file in full (once, for all its registries)
    and refuses it if its bytes changed since. Only regular files are cached (not standard
    input, a pipe or a device: what they gave cannot be read again).
    """
    with collector_paused():
        return _load(paths, verify_checksums, cache, defer)


def _load(paths: Iterable[str | Path], verify_checksums: bool, cache: ReadCache | None,
          defer: bool) -> list[Declaration]:
    declarations: list[Declaration] = []
    problems: list[Problem] = []
    files = manifest_files(paths)
    count = 0
    blueprints_seen: dict[bytes, Any] = {}
    for path in files:
        raw = documents.read_bytes(path)
        key = cache.key(str(path), raw, verify_checksums, schema.crd_digest()) \
            if cache is not None and _regular_file(path) else None
        hit = cache.get(key) if cache is not None and key is not None and defer else None
        if hit is not None:
            assert cache is not None and key is not None
            reader = _FileReader(path, key, cache, verify_checksums)
            count += hit.documents
            declarations.extend(reader.deferred(r) for r in hit.registries)
            continue
        decls, found, docs = _read_file(path, documents.decode(raw, str(path)),
                                        verify_checksums, blueprints_seen)
        count += docs
        declarations.extend(decls)
        problems.extend(found)
        if cache is not None and key is not None and not found:
            cache.put(key, docs, [_cached(d) for d in decls])
    if not count and not problems:
        problems.append(Problem("no FlowRegistry document found (empty input)",
                                source=", ".join(map(str, files))))
    problems.extend(_cross_checks(declarations))
    if problems:
        raise InvalidSpec(problems)
    return declarations


def _regular_file(path: Path) -> bool:
    """Whether ``path`` is a regular file: what a pipe, a terminal or standard input gave
    cannot be read again, so it is never cached."""
    if str(path) == "-":
        return False
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _read_file(path: Path, text: str, verify_checksums: bool,
               blueprints_seen: dict[bytes, Any]) -> tuple[list[Declaration], list[Problem], int]:
    """The declarations and problems of one file's text, and how many documents it holds."""
    docs = documents.read_documents(text, str(path))
    decls, found = _parse_all(docs, verify_checksums, blueprints_seen, consume=True)
    if found and not all(doc.located for doc in docs):
        docs = documents.read_documents(text, str(path), located=True)
        decls, found = _parse_all(docs, verify_checksums, blueprints_seen, consume=True)
    return decls, found, len(docs)


def _cached(decl: Declaration) -> CachedRegistry:
    registry = decl.registry
    return CachedRegistry(
        registry.agent_id, registry.owner, registry.names, registry.content_checksums,
        decl.policy, decl.name, decl.namespace, decl.source, decl.store, decl.deletion_policy,
        decl.suspend, decl.interval, decl.size_warning)


class _FileReader:
    """A cached file's registries, deferred; the first ``load`` reads the file for all, and
    refuses it unless it gives exactly what the cache said (its bytes unchanged, every
    registry's flows, policy and metadata the same)."""

    def __init__(self, path: Path, key: str, cache: ReadCache, verify_checksums: bool) -> None:
        self.path, self.key, self.cache = path, key, cache
        self.verify_checksums = verify_checksums
        self.cached: dict[str, CachedRegistry] = {}
        self._read: dict[str, DeclaredFlows] | None = None

    def deferred(self, cached: CachedRegistry) -> Declaration:
        self.cached[cached.owner] = cached
        registry = DeferredFlows(cached.agent_id, cached.owner, cached.names,
                                 cached.content_checksums,
                                 lambda: self.load(cached.owner), cached.size_warning)
        return Declaration(
            registry=registry, policy=cached.policy, name=cached.name,
            namespace=cached.namespace, source=cached.source, store=cached.store,
            deletion_policy=cached.deletion_policy, suspend=cached.suspend,
            interval=cached.interval)

    def load(self, owner: str) -> DeclaredFlows:
        if self._read is None:
            self._read = self._read_file()
        return self._read[owner]

    def _read_file(self) -> dict[str, DeclaredFlows]:
        source = str(self.path)
        raw = documents.read_bytes(self.path)
        if self.cache.key(source, raw, self.verify_checksums, schema.crd_digest()) != self.key:
            self.cache.discard(self.key)
            raise InvalidSpec(Problem(
                "the file changed while flowreg ran (after it was first read); nothing of it "
                "was written", source=source))
        with collector_paused():
            decls, found, _ = _read_file(self.path, documents.decode(raw, source),
                                         self.verify_checksums, {})
        if found:
            raise InvalidSpec(found)
        read = {d.registry.owner: d for d in decls}
        if {owner: _cached(d) for owner, d in read.items()} != self.cached:
            self.cache.discard(self.key)
            raise InvalidSpec(Problem(
                "the read cache's entry for this file does not match what the file declares "
                "(the entry is removed; run the command again); nothing of it was written",
                source=source))
        return {owner: d.registry for owner, d in read.items()
                if isinstance(d.registry, DeclaredFlows)}


def _parse_all(docs: list[Document], verify_checksums: bool,
               blueprints_seen: dict[bytes, Any] | None = None, consume: bool = False,
               ) -> tuple[list[Declaration], list[Problem]]:
    declarations: list[Declaration] = []
    problems: list[Problem] = []
    for doc in docs:
        decl, found = parse_document(doc, verify_checksums=verify_checksums,
                                     blueprints_seen=blueprints_seen, consume=consume)
        problems.extend(found)
        if decl is not None:
            declarations.append(decl)
    return declarations, problems


def parse_object(obj: Mapping[str, Any], source: str = "",
                 *, verify_checksums: bool = True) -> Declaration:
    """One FlowRegistry from a plain object (e.g. from the Kubernetes API).

    The CRD's minimum durations are not enforced here: the apiserver enforces them on writes,
    and an object stored before a minimum was raised keeps working (its reader clamps).
    """
    doc = Document(source=source, data=obj)
    decl, problems = parse_document(doc, verify_checksums=verify_checksums, minimums=False)
    if problems or decl is None:
        raise InvalidSpec(problems or [Problem("not a FlowRegistry", source=source)])
    return decl


def parse_document(doc: Document, *, verify_checksums: bool = True, minimums: bool = True,
                   blueprints_seen: dict[bytes, Any] | None = None, consume: bool = False,
                   ) -> tuple[Declaration | None, list[Problem]]:
    """Check one document against the schema and the rules the schema cannot state.

    ``minimums=False`` leaves out the CRD's minimum durations (see ``parse_object``).
    ``blueprints_seen`` (owned by the caller, empty at first) lets documents read together
    share the check and the object of equal blueprints. ``consume=True`` (for a document
    nothing else holds) empties ``doc.data``'s flow list as the flows are made.
    """
    data = doc.data
    if not isinstance(data, dict):
        return None, [Problem("a manifest must be a mapping", source=doc.source,
                              line=doc.line_of(()))]
    if data.get("apiVersion") != schema.API_VERSION or data.get("kind") != schema.KIND:
        got = f"{data.get('apiVersion')}/{data.get('kind')}"
        return None, [Problem(
            f"expected apiVersion {schema.API_VERSION} and kind {schema.KIND}, got {got}",
            source=doc.source, line=doc.line_of(()))]
    problems = [_problem(doc, err.path, err.message)
                for err in schema.validate(data, minimums=minimums)]
    problems.extend(_check_metadata(doc))
    if not doc.located and not problems:
        # a document the schema accepts nests deeper than it allows only where it lets
        # anything in; the located reader names the line
        for key in ("metadata", "status"):
            if documents.deeper_than(data.get(key), documents.MAX_DEPTH - 1):
                problems.append(_problem(doc, (key,), "nested too deep"))
    if problems:
        return None, problems
    schema.apply_defaults(data)
    spec = data["spec"]
    meta = data.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    flows: list[Flow] = []
    if blueprints_seen is None:
        blueprints_seen = {}
    raws = spec.get("flows") or []
    for index, raw in enumerate(raws):
        blueprint = raw.get("blueprint")
        bp_problems: list[blueprints.BlueprintProblem] = []
        if blueprint is not None:
            # Equal blueprints (to the byte, key order included) are checked once and held
            # once: many flows of a registry share one shape, and a blueprint is most of a
            # flow's memory.
            try:
                key = _dumps(blueprint)
            except TypeError:  # beyond orjson (an integer over 64 bits): not shared
                bp_problems = blueprints.check(blueprint)
            else:
                seen = blueprints_seen.get(key)
                if seen is None:
                    seen = blueprints_seen[key] = (blueprint, blueprints.check(blueprint))
                blueprint, bp_problems = seen
        flow = Flow(raw["name"], raw["description"], tuple(raw.get("examples") or ()),
                    tuple(raw.get("conditions") or ()), blueprint, raw.get("checksum"))
        if bp_problems:
            base: PathKey = ("spec", "flows", index)
            for bp in bp_problems:
                problems.append(_problem(doc, (*base, "blueprint"), bp.message,
                                         field=f"blueprint.{bp.field}"))
        if verify_checksums and flow.checksum is not None:
            computed = flow.content_checksum
            if flow.checksum != computed:
                problems.append(_problem(
                    doc, ("spec", "flows", index, "checksum"),
                    f"declared checksum {flow.checksum} does not match the content, which gives "
                    f"{computed} (run `flowreg checksum --write` after editing a flow)"))
            else:
                flow.share_checksum()
        flows.append(flow)
        if consume:  # freed once read (its problems named it): the next flows reuse its memory
            raws[index] = None
    if problems:
        return None, problems
    guard = spec.get("deletionGuard") or {}
    policy = SyncPolicy(
        prune=spec["prune"],
        max_deletions=guard.get("maxDeletions", schema.default(MAX_DELETIONS_PATH)),
        allow_empty=guard.get("allowEmpty", schema.default(ALLOW_EMPTY_PATH)),
    )
    registry = DeclaredFlows(agent_id=spec["agentId"], owner=f"{namespace}/{meta['name']}",
                             flows=tuple(flows))
    # What a sync's digest reads of every flow, gathered now while the flows are fresh in
    # the processor's caches (a no-op sync then reads no flow at all).
    registry.names  # noqa: B018
    registry.content_checksums  # noqa: B018
    return Declaration(
        registry=registry, policy=policy, name=meta["name"], namespace=namespace,
        source=doc.source, store=spec["store"], deletion_policy=spec["deletionPolicy"],
        suspend=spec["suspend"], interval=spec["interval"],
    ), []


def _check_metadata(doc: Document) -> list[Problem]:
    meta = doc.data.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        return [_problem(doc, ("metadata",), "metadata.name is required", field="metadata.name")]
    if len(name) > 253 or not _NAME.match(name):
        return [_problem(doc, ("metadata", "name"),
                         f"{name!r} is not a valid name (lowercase DNS subdomain)",
                         field="metadata.name")]
    return []


def _cross_checks(declarations: list[Declaration]) -> list[Problem]:
    seen: dict[str, str] = {}
    problems = []
    for decl in declarations:
        owner = decl.registry.owner
        if owner in seen:
            problems.append(Problem(
                f"FlowRegistry {owner} is declared twice (also in {seen[owner]})",
                source=decl.source))
        seen[owner] = decl.source
    return problems


def _problem(doc: Document, path: Sequence[str | int], message: str,
             field: str | None = None) -> Problem:
    """A Problem located at ``path``, naming the flow and the field inside it."""
    flow_name = None
    path = tuple(path)
    if len(path) >= 3 and path[:2] == ("spec", "flows") and isinstance(path[2], int):
        flows = doc.data.get("spec", {}).get("flows") if isinstance(doc.data, dict) else None
        raw = flows[path[2]] if isinstance(flows, list) and path[2] < len(flows) else None
        name = raw.get("name") if isinstance(raw, dict) else None
        flow_name = name if isinstance(name, str) else f"#{path[2]}"
        if field is None:
            field = _dotted(path[3:]) or None
    elif field is None:
        field = _dotted(path) or None
    return Problem(message, source=doc.source, line=doc.line_of(path), flow=flow_name, field=field)


def _dotted(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def refresh_checksums(text: str, source: str) -> tuple[str, list[str]]:
    """``text`` with every flow's ``checksum`` set to its computed value; and the names changed.

    Edits the text in place (comments, order and formatting are kept): an existing checksum
    value is replaced, a missing one is added after the flow's ``name``. The input must pass
    every check but the checksums; otherwise ``InvalidSpec`` is raised and nothing changes.
    """
    import yaml

    edits: list[tuple[int, int, str]] = []
    changed: list[str] = []
    problems: list[Problem] = []
    docs = documents.read_documents(text, source, located=True)  # bounded: refuses the hostile
    decls, problems = _parse_all(docs, verify_checksums=False)
    if problems:
        raise InvalidSpec(problems)
    roots = [node for node in yaml.compose_all(text, Loader=yaml.SafeLoader)
             if node is not None and not (isinstance(node, yaml.ScalarNode) and node.tag ==
                                          "tag:yaml.org,2002:null")]
    for doc, decl, root in zip(docs, decls, roots, strict=True):
        flow_nodes = _flow_nodes(root)
        for index, flow in enumerate(decl.registry.flows):
            computed = flow.content_checksum
            if flow.checksum == computed:
                continue
            changed.append(flow.name)
            edits.append(_checksum_edit(flow_nodes[index], computed, doc))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text, changed


def _flow_nodes(root: Any) -> list[Any]:
    """The nodes of ``spec.flows`` items in a composed FlowRegistry document."""
    spec = next(v for k, v in root.value if k.value == "spec")
    flows = next(v for k, v in spec.value if k.value == "flows")
    return list(flows.value)


def _checksum_edit(node: Any, checksum: str, doc: Document) -> tuple[int, int, str]:
    """The (start, end, text) edit that sets ``checksum`` in the flow mapping ``node``."""
    if not isinstance(node.value, list) or (node.value and not isinstance(node.value[0], tuple)):
        raise InvalidSpec(Problem("a flow must be a mapping", source=doc.source,
                                  line=node.start_mark.line + 1))
    for key_node, value_node in node.value:
        if key_node.value == "checksum":
            return value_node.start_mark.index, value_node.end_mark.index, checksum
    for key_node, value_node in node.value:
        if key_node.value == "name":
            at = value_node.end_mark.index
            if node.flow_style:
                return at, at, f", checksum: {checksum}"
            indent = " " * key_node.start_mark.column
            return at, at, f"\n{indent}checksum: {checksum}"
    raise InvalidSpec(Problem("flow has no name", source=doc.source,
                              line=node.start_mark.line + 1))
