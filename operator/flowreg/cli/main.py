"""``flowreg``: validate, lint, checksum, plan, apply, export and history of FlowRegistry manifests.

Exit codes: ``flowreg.errors.ExitCode``, with their meanings in ``EXIT_CODE_MEANINGS``; 128 + N
when stopped by signal N (130 SIGINT, 143 SIGTERM; an apply stops at a batch boundary, see
``flowreg.cli.stopping``).

Start-up is part of every command's cost: this module imports only what parsing the command
line needs, and each command imports what it uses (the store and qdrant-client only for the
commands that open one, kopf and kubernetes only for ``run``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from flowreg import bounds
from flowreg.cli.collection import add_collection_flags
from flowreg.cli.flagtypes import bounded, store_location
from flowreg.embed.factory import KINDS as EMBEDDER_KINDS
from flowreg.errors import (
    EXIT_CODE_MEANINGS,
    ConflictError,
    ExitCode,
    FlowregError,
    Interrupted,
    InvalidSpec,
    Problem,
    UsageError,
)
from flowreg.location import redact
from flowreg.version import __version__

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from flowreg.cli.stopping import StopSignals
    from flowreg.history import Checkpoint
    from flowreg.manifest import Declaration
    from flowreg.read_cache import ReadCache
    from flowreg.sync import SyncEngine

# The defaults of flowreg.store and flowreg.sync, named here so that --help does not import
# them (tests/cli/test_cli.py checks that they agree).
DEFAULT_LOCATION = ".flowreg/qdrant"
DEFAULT_COLLECTION = "flowreg_flows"
DEFAULT_BATCH_SIZE = 100
DEFAULT_LOCK_TIMEOUT = 30.0
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
CLI_COLLECTION_RECHECK = 60.0
"""Seconds an apply of several registries trusts the collection it found for the first (each
further registry's digest read is then its one store call; a failed call asks again)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowreg",
        description="Keep an agent's flows in Qdrant in step with FlowRegistry manifests.",
        epilog="Exit codes: " + ", ".join(
            f"{code.value} {EXIT_CODE_MEANINGS[code].split(' (')[0]}" for code in ExitCode)
        + ".")
    parser.add_argument("--version", action="version", version=f"flowreg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def files(p: argparse.ArgumentParser) -> None:
        p.add_argument("-f", "--filename", dest="files", action="append", required=True,
                       metavar="PATH", help="manifest file or directory (repeatable; - for stdin)")

    def output(p: argparse.ArgumentParser) -> None:
        p.add_argument("-o", "--output", choices=("text", "json"), default="text")

    def store(p: argparse.ArgumentParser) -> None:
        p.add_argument("--store", default=os.environ.get("FLOWREG_STORE", DEFAULT_LOCATION),
                       type=store_location,
                       help=":memory:, a directory (embedded Qdrant), or an http(s):// Qdrant URL "
                            "(API key from $QDRANT_API_KEY, never in the URL) "
                            "[default: %(default)s]")
        p.add_argument("--lock-timeout", type=bounded(bounds.LOCK_TIMEOUT),
                       default=DEFAULT_LOCK_TIMEOUT, metavar="SECONDS",
                       help="how long to wait for another process holding an embedded store; "
                            "0 fails at once [%(default)g]")
        p.add_argument("--collection",
                       default=os.environ.get("FLOWREG_COLLECTION", DEFAULT_COLLECTION))
        p.add_argument("--history", default=None,
                       help="run-history SQLite file [default: beside the embedded store]")
        embedder(p)
        add_collection_flags(p)

    def embedder(p: argparse.ArgumentParser) -> None:
        p.add_argument("--embedder", choices=EMBEDDER_KINDS,
                       default=os.environ.get("FLOWREG_EMBEDDER", "hashing"),
                       help="hashing (exact words, deterministic), wordllama (offline semantic "
                            "model), or openai (any OpenAI-compatible endpoint) "
                            "[default: %(default)s]")
        p.add_argument("--embedding-url", default=os.environ.get("FLOWREG_EMBEDDING_URL"),
                       help="OpenAI-compatible base URL, e.g. http://127.0.0.1:11434/v1")
        p.add_argument("--embedding-model", default=os.environ.get("FLOWREG_EMBEDDING_MODEL"))
        p.add_argument("--embedding-dimension", type=bounded(bounds.EMBEDDING_DIMENSION),
                       default=None)
        p.add_argument("--embedding-api-key-env", default=None, metavar="NAME",
                       help="environment variable holding the embedding API key; must be set "
                            f"when given [default: {DEFAULT_KEY_ENV}, optional]")

    def read_cache(p: argparse.ArgumentParser) -> None:
        p.add_argument("--no-read-cache", dest="read_cache", action="store_false",
                       help="neither use nor keep what reading unchanged manifests found "
                            "[kept in $FLOWREG_CACHE_DIR, default ~/.cache/flowreg/manifests; "
                            "'off' disables]")

    p = sub.add_parser("validate", help="check manifests offline (schema, checksums, blueprints)")
    files(p)
    output(p)
    read_cache(p)

    from flowreg.cli import lint

    lint.add_parser(sub, lambda p: (files(p), output(p), embedder(p)))

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
        read_cache(p)
        p.add_argument("--deep", action="store_true",
                       help="ignore the registry digest and compare stored content and point "
                            "ids, not only checksums (finds tampering)")
        p.add_argument("--no-prune", action="store_true",
                       help="keep undeclared flows instead of deleting them")
        p.add_argument("--max-deletions", type=bounded(bounds.MAX_DELETIONS), default=None,
                       help="refuse to delete more flows than this [default: the manifest's "
                            "spec.deletionGuard.maxDeletions, 25]")
        p.add_argument("--allow-empty", action="store_true",
                       help="let an empty registry delete every flow it owns")
        if name == "apply":
            p.add_argument("--batch-size", type=bounded(bounds.BATCH_SIZE),
                           default=DEFAULT_BATCH_SIZE,
                           help="changes per write (one embedding call, one write call, one "
                                "checkpoint) [%(default)s]")
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
    p.add_argument("-k", "--limit", type=bounded(bounds.QUERY_LIMIT), default=5,
                   help="how many flows [%(default)s]")

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
    p.add_argument("--peering-lifetime", type=bounded(bounds.PEERING_LIFETIME), default=60,
                   help="seconds without a heartbeat after which a standby takes over "
                        "[%(default)s]")
    p.add_argument("--metrics-port", type=bounded(bounds.METRICS_PORT), default=8080,
                   help="0 disables metrics")
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
    p.add_argument("--limit", type=bounded(bounds.HISTORY_LIMIT), default=20)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
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
            print(f"  {redact(str(problem))}", file=sys.stderr)
        return int(exc.exit_code)
    except Interrupted as exc:
        print(f"error: {exc.reason}: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except FlowregError as exc:
        print(f"error: {exc.reason}: {redact(str(exc))}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print(f"error: Interrupted: stopped by {signal.SIGINT.name}", file=sys.stderr)
        return 128 + signal.SIGINT
    except Exception as exc:
        # A full disk outside the store's own writes (the run history's SQLite, a migration).
        error = _storage_error(exc, args)
        if error is None:
            raise
        print(f"error: {error.reason}: {error}", file=sys.stderr)
        return int(error.exit_code)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM outside an apply's batches: stop where the program is, as SIGINT would."""
    raise Interrupted(signum)


def _storage_error(exc: Exception, args: argparse.Namespace) -> FlowregError | None:
    """The error to report for a failure of the local files (the run history's SQLite file,
    an embedded store's migration): ``NoSpace`` on a full disk; None if it is not one."""
    import sqlite3

    from flowreg.errors import StoreUnavailable
    from flowreg.store.space import RESERVE, free_bytes, is_out_of_space, no_space

    if not getattr(args, "store", None):
        return None
    history = Path(_history_path(args))
    where = next((p for p in (history.parent, Path(args.store.value), Path("."))
                  if p.exists()), Path("."))
    if is_out_of_space(exc):
        return no_space(where)
    if isinstance(exc, sqlite3.Error):  # SQLite reports a full disk as an I/O error, too
        if free_bytes(where) < RESERVE:
            return no_space(where)
        return StoreUnavailable(f"the run history {history} failed: {exc}")
    return None


async def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command in ("plan", "apply"):
        return await _sync(args)
    if command == "export":
        return await _export(args)
    if command == "history":
        return _history(args)
    if command == "query":
        return await _query(args)
    if command == "lint":
        from flowreg.cli import lint
        from flowreg.embed.factory import make_embedder

        return await lint.run(args, make_embedder(_embedder_config(args)))
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

    decls = manifest.load(args.files, cache=_read_cache(args))
    _freeze_collector()
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


def _freeze_collector() -> None:
    """Leave what the process has made so far, the declarations read, out of every later
    garbage collection: they live until the command ends, and a full collection would scan
    them all (50,000 flows) to find nothing."""
    import gc

    gc.freeze()


def _warn_cluster_size(decls: Sequence[Declaration]) -> None:
    """Say on stderr which registries a default Kubernetes cluster could not store."""
    for d in decls:
        if d.size_warning:
            print(f"warning: {d.size_warning}", file=sys.stderr)


def _read_cache(args: argparse.Namespace) -> ReadCache | None:
    """The read cache the flags and the environment allow (None: off)."""
    from flowreg.read_cache import ReadCache

    return ReadCache.default() if args.read_cache else None


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
    from flowreg.cli.stopping import StopSignals, partial_report, partial_summary

    # An apply that compares digests reads a file the cache holds only if a digest differs.
    decls = manifest.load(args.files, cache=_read_cache(args),
                          defer=args.command == "apply" and not args.deep)
    _freeze_collector()
    _warn_cluster_size(decls)
    exit_code = ExitCode.OK
    stop = StopSignals()
    stop.install()
    try:
        async with _engine(args) as engine:
            if args.command == "apply":
                decls = await _resolved(engine, decls, args, stop)
            for decl in decls:
                stop.check(where="before the next registry; nothing was written after it"
                           if args.command == "apply" else "")
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
                    bar = _progress_bar(decl, args)
                    seen: dict[str, Any] = {}

                    async def on_plan(plan: Any, seen: dict[str, Any] = seen) -> None:
                        seen["plan"] = plan
                        stop.check()

                    def progress(cp: Checkpoint, seen: dict[str, Any] = seen,
                                 bar: Any = bar) -> None:
                        seen["checkpoint"] = cp
                        if bar is not None:
                            bar(cp)
                        stop.check(cp)

                    try:
                        report = await engine.apply(decl.registry, policy, deep=args.deep,
                                                    progress=progress, on_plan=on_plan)
                    except Interrupted as exc:
                        partial = partial_report(seen.get("plan"), seen.get("checkpoint"),
                                                 decl.registry.owner, decl.registry.agent_id, exc)
                        if args.output == "json":
                            _print_json(partial)
                        else:
                            print(partial_summary(partial))
                        raise
                    finally:
                        if bar is not None:
                            print(file=sys.stderr)
                    if args.output == "json":
                        _print_json(report.to_dict())
                    else:
                        print(f"{decl.registry.owner} (agent {decl.registry.agent_id}): "
                              f"{report.summary()}")
                for warning in report.warnings:
                    print(f"warning: {warning}", file=sys.stderr)
                if report.conflicts:
                    print(f"error: {ConflictError.reason}: {decl.registry.owner}: "
                          f"{report.conflict_message()}", file=sys.stderr)
                    exit_code = ConflictError.exit_code
    finally:
        stop.uninstall()
    if stop.signum is not None:  # it came after the last batch: everything was done
        raise Interrupted(stop.signum, "after the last batch; the apply is complete"
                          if args.command == "apply" else "")
    return exit_code


async def _resolved(engine: SyncEngine, decls: list[Declaration], args: argparse.Namespace,
                    stop: StopSignals) -> list[Declaration]:
    """``decls`` with every registry an apply will write read in full, before its first write
    (``SyncEngine.resolve``): a manifest that no longer reads as it did stops the apply with
    nothing written. The collection found for the first is trusted for the others."""
    engine.store.collection_recheck = CLI_COLLECTION_RECHECK
    resolved = []
    for decl in decls:
        stop.check(where="before the first write; nothing was written")
        registry = await engine.resolve(decl.registry, _policy(decl, args))
        resolved.append(decl if registry is decl.registry
                        else dataclasses.replace(decl, registry=registry))
    return resolved


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

    async with _engine(args, with_history=False) as engine:
        pairs = await engine.store.read_flows(args.agent)
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
    async with _engine(args, with_history=False) as engine:
        hits = await engine.query(args.agent, args.text, args.limit)
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
            line += f"  error: {redact(r.error.splitlines()[0])[:120]}"
        print(line)
    return ExitCode.OK


def _engine(args: argparse.Namespace, *,
            with_history: bool = True) -> AbstractAsyncContextManager[SyncEngine]:
    """The engine the store and embedder flags name, as ``async with`` owns it."""
    from flowreg.cli.collection import settings_of
    from flowreg.sync import EngineConfig, SyncEngine

    return SyncEngine.open(EngineConfig(
        args.store, args.collection, embedder=_embedder_config(args),
        history=_history_path(args) if with_history else None,
        batch_size=getattr(args, "batch_size", DEFAULT_BATCH_SIZE),
        lock_timeout=args.lock_timeout, settings=settings_of(args)))


def _embedder_config(args: argparse.Namespace) -> dict[str, Any]:
    if args.embedder != "openai":
        return {"kind": args.embedder}
    if not args.embedding_url or not args.embedding_model:
        raise InvalidSpec("--embedder openai needs --embedding-url and --embedding-model")
    key_env = args.embedding_api_key_env or DEFAULT_KEY_ENV
    if not os.environ.get(key_env):
        if args.embedding_api_key_env:
            raise UsageError(
                f"--embedding-api-key-env {key_env}: the variable ${key_env} is not set (or "
                "empty), so there is no API key to send; set it, or leave the flag out for an "
                "endpoint that needs no key")
        print(f"warning: ${key_env} is not set: calling {redact(args.embedding_url)} without "
              "an API key (name the key's variable with --embedding-api-key-env)",
              file=sys.stderr)
    config: dict[str, Any] = {"kind": "openai", "url": args.embedding_url,
                              "model": args.embedding_model, "apiKeyEnv": key_env}
    if args.embedding_dimension:
        config["dimension"] = args.embedding_dimension
    return config


def _history_path(args: argparse.Namespace) -> str:
    if args.history:
        return str(args.history)
    if args.store.is_memory:
        return ":memory:"
    if args.store.is_server:
        return str(Path(DEFAULT_LOCATION).parent / "history.db")
    return str(Path(args.store.value).parent / "history.db")


def _dns_name(agent: str) -> str:
    name = "".join(c if c.isalnum() else "-" for c in agent.lower()).strip("-")
    return name or "flows"


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, sort_keys=False))


if __name__ == "__main__":
    sys.exit(main())
