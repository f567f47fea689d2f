"""``flowreg``: validate, checksum, plan, apply, export and history of FlowRegistry manifests.

Exit codes (the table lives in ``flowreg.errors.ExitCode``): 0 success, 1 internal error,
2 usage error, 3 invalid input, 4 store unavailable, 5 refused by a safety guard,
6 conflict with another registry's flows, 7 embedder unavailable.

Start-up is part of every command's cost: this module imports only what parsing the command
line needs, and each command imports what it uses (the store and qdrant-client only for the
commands that open one, kopf and kubernetes only for ``run``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from flowreg.cli.collection import add_collection_flags
from flowreg.errors import ConflictError, ExitCode, FlowregError, InvalidSpec, Problem
from flowreg.version import __version__

if TYPE_CHECKING:
    from flowreg.embed.base import Embedder
    from flowreg.history import Checkpoint
    from flowreg.manifest import Declaration
    from flowreg.sync import SyncEngine

# The defaults of flowreg.store and flowreg.sync, named here so that --help does not import
# them (tests/test_cli.py checks that they agree).
DEFAULT_LOCATION = ".flowreg/qdrant"
DEFAULT_COLLECTION = "flowreg_flows"
DEFAULT_BATCH_SIZE = 100


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowreg",
        description="Keep an agent's flows in Qdrant in step with FlowRegistry manifests.",
        epilog="Exit codes: 0 ok, 1 internal error, 2 usage, 3 invalid input, "
               "4 store unavailable, 5 refused by a safety guard, 6 conflict, "
               "7 embedder unavailable.")
    parser.add_argument("--version", action="version", version=f"flowreg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def files(p: argparse.ArgumentParser) -> None:
        p.add_argument("-f", "--filename", dest="files", action="append", required=True,
                       metavar="PATH", help="manifest file or directory (repeatable; - for stdin)")

    def output(p: argparse.ArgumentParser) -> None:
        p.add_argument("-o", "--output", choices=("text", "json"), default="text")

    def store(p: argparse.ArgumentParser) -> None:
        p.add_argument("--store", default=os.environ.get("FLOWREG_STORE", DEFAULT_LOCATION),
                       help=":memory:, a directory (embedded Qdrant), or an http(s):// Qdrant URL "
                            "(API key from $QDRANT_API_KEY) [default: %(default)s]")
        p.add_argument("--collection",
                       default=os.environ.get("FLOWREG_COLLECTION", DEFAULT_COLLECTION))
        p.add_argument("--history", default=None,
                       help="run-history SQLite file [default: beside the embedded store]")
        p.add_argument("--embedder", choices=("hashing", "wordllama", "openai"),
                       default=os.environ.get("FLOWREG_EMBEDDER", "hashing"),
                       help="hashing (exact words, deterministic), wordllama (offline semantic "
                            "model), or openai (any OpenAI-compatible endpoint) "
                            "[default: %(default)s]")
        p.add_argument("--embedding-url", default=os.environ.get("FLOWREG_EMBEDDING_URL"),
                       help="OpenAI-compatible base URL, e.g. http://127.0.0.1:11434/v1")
        p.add_argument("--embedding-model", default=os.environ.get("FLOWREG_EMBEDDING_MODEL"))
        p.add_argument("--embedding-dimension", type=int, default=None)
        p.add_argument("--embedding-api-key-env", default="OPENAI_API_KEY",
                       help="environment variable holding the embedding API key")
        add_collection_flags(p)

    p = sub.add_parser("validate", help="check manifests offline (schema, checksums, blueprints)")
    files(p)
    output(p)

    p = sub.add_parser("checksum", help="print, check or write the flows' checksums")
    files(p)
    output(p)
    p.add_argument("--write", action="store_true", help="write them into the files")

    for name, text in (("plan", "show what apply would change; writes nothing"),
                       ("apply", "sync the manifests into Qdrant")):
        p = sub.add_parser(name, help=text)
        files(p)
        output(p)
        store(p)
        p.add_argument("--deep", action="store_true",
                       help="also compare stored content and point ids, not only checksums "
                            "(finds tampering)")
        p.add_argument("--no-prune", action="store_true",
                       help="keep undeclared flows instead of deleting them")
        p.add_argument("--max-deletions", type=int, default=None,
                       help="refuse to delete more flows than this [default: the manifest's "
                            "spec.deletionGuard.maxDeletions, 25]")
        p.add_argument("--allow-empty", action="store_true",
                       help="let an empty registry delete every flow it owns")
        if name == "apply":
            p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
            p.add_argument("--progress", choices=("auto", "always", "never"), default="auto")

    p = sub.add_parser("export", help="write what Qdrant holds for an agent as a manifest")
    store(p)
    p.add_argument("--agent", required=True)
    p.add_argument("--owner", default=None, help="only flows of this owner (namespace/name)")
    p.add_argument("--name", default=None, help="metadata.name [default: the agent id]")
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")

    p = sub.add_parser("query", help="the flows a query selects for an agent, with scores")
    p.add_argument("text", help="what a user might say")
    store(p)
    output(p)
    p.add_argument("--agent", required=True)
    p.add_argument("-k", "--limit", type=int, default=5, help="how many flows [%(default)s]")

    p = sub.add_parser("run", help="run the Kubernetes operator")
    p.add_argument("--config", default=os.environ.get("FLOWREG_CONFIG"),
                   help="operator configuration file (stores, embedders)")
    p.add_argument("-n", "--namespace", dest="namespaces", action="append", default=[],
                   help="namespace (or glob) to watch; repeatable")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("--liveness", default="http://0.0.0.0:8081/healthz",
                   help="liveness endpoint URL, or '' for none")
    p.add_argument("--peering", default=None,
                   help="KopfPeering name for HA: the replica started first reconciles, the "
                        "others stand by; standalone if unset")
    p.add_argument("--peering-lifetime", type=int, default=60,
                   help="seconds without a heartbeat after which a standby takes over "
                        "[%(default)s]")
    p.add_argument("--metrics-port", type=int, default=8080, help="0 disables metrics")
    p.add_argument("--log-format", choices=("json", "text"), default="json")
    p.add_argument("--verbose", action="store_true")

    p = sub.add_parser("store", help="the store's collection: its settings and points")
    store_sub = p.add_subparsers(dest="store_command", required=True, metavar="SUBCOMMAND")
    p = store_sub.add_parser("info", help="shards, replicas, consistency, tenant index, "
                                          "points, and where they differ from the flags")
    store(p)
    output(p)

    p = sub.add_parser("history", help="show the latest apply runs")
    store(p)
    output(p)
    p.add_argument("--limit", type=int, default=20)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run_operator(args)
        if args.command in ("validate", "checksum"):
            return _validate(args) if args.command == "validate" else _checksum(args)
        import asyncio

        return asyncio.run(_dispatch(args))
    except InvalidSpec as exc:
        count = len(exc.problems)
        print(f"error: invalid input ({count} problem{'s' if count != 1 else ''}); "
              "nothing was written:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return int(exc.exit_code)
    except FlowregError as exc:
        print(f"error: {exc.reason}: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


async def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "validate":
        return _validate(args)
    if command == "checksum":
        return _checksum(args)
    if command in ("plan", "apply"):
        return await _sync(args)
    if command == "export":
        return await _export(args)
    if command == "history":
        return _history(args)
    if command == "query":
        return await _query(args)
    if command == "store":
        from flowreg.cli.collection import store_info

        return await store_info(args)
    raise AssertionError(command)


def _run_operator(args: argparse.Namespace) -> int:
    if not args.namespaces and not args.all_namespaces:
        raise InvalidSpec("flowreg run needs --namespace NS (repeatable) or --all-namespaces")
    from flowreg.controller.run import run

    return run(config_path=args.config, namespaces=args.namespaces,
               all_namespaces=args.all_namespaces, liveness=args.liveness or None,
               peering=args.peering, peering_lifetime=args.peering_lifetime,
               metrics_port=args.metrics_port or None,
               log_format=args.log_format, verbose=args.verbose)


def _validate(args: argparse.Namespace) -> int:
    from flowreg import manifest

    decls = manifest.load(args.files)
    _warn_cluster_size(decls)
    if args.output == "json":
        _print_json({"valid": True, "registries": [
            {"name": d.name, "namespace": d.namespace, "agentId": d.registry.agent_id,
             "flows": len(d.registry.flows), "source": d.source} for d in decls]})
    else:
        for d in decls:
            print(f"{d.source}: FlowRegistry {d.registry.owner} (agent {d.registry.agent_id}): "
                  f"{len(d.registry.flows)} flow(s) valid")
    return ExitCode.OK


def _warn_cluster_size(decls: Sequence[Declaration]) -> None:
    """Say on stderr which registries a default Kubernetes cluster could not store."""
    from flowreg.size import cluster_size_warning

    for d in decls:
        warning = cluster_size_warning(d.registry, d.name, d.namespace, d.source)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)


def _checksum(args: argparse.Namespace) -> int:
    from flowreg import documents, manifest

    results: list[dict[str, Any]] = []
    if args.write:
        for path in manifest.manifest_files(args.files):
            text = documents.read_text(path)
            new_text, changed = manifest.refresh_checksums(text, str(path))
            if changed:
                path.write_text(new_text, encoding="utf-8")
            results.append({"source": str(path), "updated": changed})
            if args.output == "text":
                print(f"{path}: {len(changed)} checksum(s) written"
                      + (f" ({', '.join(changed[:8])}{', ...' if len(changed) > 8 else ''})"
                         if changed else ""))
        manifest.load(args.files)
        if args.output == "json":
            _print_json({"files": results})
        return ExitCode.OK
    decls = manifest.load(args.files, verify_checksums=False)
    stale = 0
    for d in decls:
        for flow in d.registry.flows:
            state = ("ok" if flow.checksum == flow.content_checksum
                     else "missing" if flow.checksum is None else "mismatch")
            stale += state != "ok"
            results.append({"registry": d.registry.owner, "flow": flow.name,
                            "checksum": flow.content_checksum, "declared": flow.checksum,
                            "state": state})
            if args.output == "text":
                print(f"{flow.content_checksum}  {d.registry.owner}/{flow.name}"
                      + ("" if state == "ok" else f"  ({state})"))
    if args.output == "json":
        _print_json({"flows": results})
    mismatched = [r for r in results if r["state"] == "mismatch"]
    if mismatched:
        raise InvalidSpec([Problem(f"declared checksum {r['declared']} does not match the "
                                   f"content, which gives {r['checksum']}", flow=r["flow"],
                                   field="checksum") for r in mismatched])
    return ExitCode.OK


async def _sync(args: argparse.Namespace) -> int:
    from flowreg import manifest

    decls = manifest.load(args.files)
    _warn_cluster_size(decls)
    engine = await _engine(args)
    exit_code = ExitCode.OK
    try:
        for decl in decls:
            policy = _policy(decl, args)
            if args.command == "plan":
                planned = await engine.plan(decl.registry, policy, deep=args.deep)
                report = planned.report
                if args.output == "json":
                    _print_json(report.to_dict())
                else:
                    print(f"{decl.registry.owner} (agent {decl.registry.agent_id}): "
                          f"{report.summary()}")
                    for line in _plan_lines(planned.plan):
                        print(f"  {line}")
            else:
                progress = _progress_bar(decl, args)
                try:
                    report = await engine.apply(decl.registry, policy, deep=args.deep,
                                                progress=progress)
                finally:
                    if progress is not None:
                        print(file=sys.stderr)
                if args.output == "json":
                    _print_json(report.to_dict())
                else:
                    print(f"{decl.registry.owner} (agent {decl.registry.agent_id}): "
                          f"{report.summary()}")
            for warning in report.warnings:
                print(f"warning: {warning}", file=sys.stderr)
            if report.conflicts:
                owners = ", ".join(f"{c['flow']} (owned by {c['owner']})"
                                   for c in report.conflicts[:5])
                print(f"error: {ConflictError.reason}: {len(report.conflicts)} declared flow(s) "
                      f"of {decl.registry.owner} belong to another registry and were left "
                      f"untouched: {owners}", file=sys.stderr)
                exit_code = ConflictError.exit_code
    finally:
        await _close(engine)
    return exit_code


def _plan_lines(plan: Any) -> list[str]:
    from flowreg.plan import VectorSource

    lines = []
    renamed = {new: old for old, new in plan.renames}
    for w in plan.creates:
        how = {"embed": "embed", "copy": "reuse vector", "keep": "keep vector"}[w.vector.value]
        if w.flow.name in renamed:
            lines.append(f"RENAME {renamed[w.flow.name]} -> {w.flow.name} ({how})")
        else:
            lines.append(f"CREATE {w.flow.name} ({how})")
    for w in plan.updates:
        how = "re-embed" if w.vector is VectorSource.EMBED else "payload only"
        lines.append(f"UPDATE {w.flow.name} ({how})")
    for r in plan.deletes:
        if r.reason.value != "renamed":
            lines.append(f"DELETE {r.name} ({r.reason.value})")
    lines.extend(f"CONFLICT {c.name} (owned by {c.owner})" for c in plan.conflicts)
    lines.extend(f"KEEP {n} (undeclared, prune is off)" for n in plan.kept)
    return lines


def _policy(decl: Declaration, args: argparse.Namespace) -> Any:
    from dataclasses import replace

    policy = decl.policy
    if args.no_prune:
        policy = replace(policy, prune=False)
    if args.max_deletions is not None:
        policy = replace(policy, max_deletions=args.max_deletions)
    if args.allow_empty:
        policy = replace(policy, allow_empty=True)
    return policy


def _progress_bar(decl: Declaration, args: argparse.Namespace) -> Any:
    show = args.progress == "always" or (args.progress == "auto" and sys.stdout.isatty())
    if not show:
        return None
    out: TextIO = sys.stderr

    def draw(cp: Checkpoint) -> None:
        if cp.total == 0:
            return
        width = 30
        filled = width * cp.done // cp.total
        out.write(f"\r{decl.registry.owner} [{'#' * filled}{'.' * (width - filled)}] "
                  f"{cp.done}/{cp.total} ({100 * cp.done // cp.total}%)")
        out.flush()

    return draw


async def _export(args: argparse.Namespace) -> int:
    from flowreg import schema

    engine = await _engine(args, with_history=False)
    try:
        pairs = await engine.store.read_flows(args.agent)
    finally:
        await _close(engine)
    flows = [flow.to_manifest() for flow, owner in pairs
             if args.owner is None or owner == args.owner]
    doc = {
        "apiVersion": schema.API_VERSION,
        "kind": schema.KIND,
        "metadata": {"name": args.name or _dns_name(args.agent)},
        "spec": {"agentId": args.agent, "flows": flows},
    }
    if args.output == "json":
        _print_json(doc)
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100))
    return ExitCode.OK


async def _query(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise InvalidSpec("-k/--limit must be at least 1")
    engine = await _engine(args, with_history=False)
    try:
        hits = await engine.query(args.agent, args.text, args.limit)
    finally:
        await _close(engine)
    rows = [{"rank": i, "name": h.payload.get("name"), "score": round(h.score, 4),
             "owner": h.payload.get("owner"), "description": h.payload.get("description")}
            for i, h in enumerate(hits, 1)]
    if args.output == "json":
        _print_json({"agent": args.agent, "query": args.text, "flows": rows})
    else:
        for row in rows:
            print(f"{row['rank']:>2}. {row['score']:.3f}  {row['name']}  {row['description']}")
    return ExitCode.OK


def _history(args: argparse.Namespace) -> int:
    from flowreg.history import RunHistory

    history = RunHistory(_history_path(args))
    try:
        runs = history.runs(limit=args.limit)
    finally:
        history.close()
    if args.output == "json":
        _print_json({"runs": [r.__dict__ for r in runs]})
        return ExitCode.OK
    import datetime as dt

    for r in runs:
        when = dt.datetime.fromtimestamp(r.started_at, dt.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        line = f"{when}  {r.run_id[:12]}  {r.status:<11} {r.done}/{r.total}  {r.owner}"
        if r.report:
            line += f"  {r.report.get('changes', 0)} change(s)"
        if r.error:
            line += f"  error: {r.error.splitlines()[0][:120]}"
        print(line)
    return ExitCode.OK


async def _engine(args: argparse.Namespace, *, with_history: bool = True) -> SyncEngine:
    from flowreg.cli.collection import settings_of
    from flowreg.history import RunHistory
    from flowreg.store import open_store
    from flowreg.sync import SyncEngine

    settings = settings_of(args)
    embedder = _embedder(args)
    store = open_store(args.store, args.collection, settings=settings)
    history = RunHistory(_history_path(args)) if with_history else None
    engine = SyncEngine(store, embedder, history=history,
                        batch_size=getattr(args, "batch_size", DEFAULT_BATCH_SIZE))
    return engine


async def _close(engine: SyncEngine) -> None:
    await engine.store.close()
    await engine.embedder.aclose()
    if engine.history is not None:
        engine.history.close()


def _embedder(args: argparse.Namespace) -> Embedder:
    from flowreg.embed.factory import make_embedder

    if args.embedder in ("hashing", "wordllama"):
        return make_embedder({"kind": args.embedder})
    if not args.embedding_url or not args.embedding_model:
        raise InvalidSpec("--embedder openai needs --embedding-url and --embedding-model")
    config: dict[str, Any] = {"kind": "openai", "url": args.embedding_url,
                              "model": args.embedding_model,
                              "apiKeyEnv": args.embedding_api_key_env}
    if args.embedding_dimension:
        config["dimension"] = args.embedding_dimension
    return make_embedder(config)


def _history_path(args: argparse.Namespace) -> str:
    if args.history:
        return str(args.history)
    if args.store == ":memory:":
        return ":memory:"
    if args.store.startswith(("http://", "https://")):
        return str(Path(DEFAULT_LOCATION).parent / "history.db")
    return str(Path(args.store).parent / "history.db")


def _dns_name(agent: str) -> str:
    name = "".join(c if c.isalnum() else "-" for c in agent.lower()).strip("-")
    return name or "flows"


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, sort_keys=False))


if __name__ == "__main__":
    sys.exit(main())
