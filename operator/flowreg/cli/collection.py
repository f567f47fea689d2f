"""The CLI's collection settings (``--shards``, ``--replication-factor``, ...) and ``flowreg
store info``: what the collection on the store has, and where it differs from the flags.

Imported when the command line is parsed: nothing here imports a store backend at module level.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from flowreg import bounds
from flowreg.cli.flagtypes import bounded
from flowreg.errors import ExitCode

if TYPE_CHECKING:
    from flowreg.store.settings import CollectionSettings

READ_CONSISTENCIES = ("all", "majority", "quorum")
WRITE_ORDERINGS = ("weak", "medium", "strong")


def add_collection_flags(p: argparse.ArgumentParser) -> None:
    """The settings flowreg applies when it creates a collection on a Qdrant server."""
    group = p.add_argument_group(
        "collection settings (Qdrant servers; applied when flowreg creates the collection, "
        "an existing one is used as it is and a mismatch is a warning)")
    group.add_argument("--shards", type=bounded(bounds.SHARDS), default=None, metavar="N",
                       help="shards of a new collection [server default: one per peer]")
    group.add_argument("--replication-factor", type=bounded(bounds.REPLICATION_FACTOR),
                       default=None, metavar="N",
                       help="replicas of each shard of a new collection (at most the number "
                            "of peers) [server default: 1]")
    group.add_argument("--write-consistency-factor",
                       type=bounded(bounds.WRITE_CONSISTENCY_FACTOR), default=None, metavar="N",
                       help="replicas that must confirm a write [server default: 1]")
    group.add_argument("--read-consistency", default=None, metavar="LEVEL",
                       help="all, majority, quorum or a number of replicas "
                            "[default: majority on a cluster]")
    group.add_argument("--write-ordering", choices=WRITE_ORDERINGS, default=None,
                       help="[default: medium on a cluster]")
    group.add_argument("--global-index", action=argparse.BooleanOptionalAction, default=None,
                       help="build Qdrant's graph over all of a new collection's points, for "
                            "searches across agents [default: a graph per agent only]")


def settings_of(args: argparse.Namespace) -> CollectionSettings | None:
    """The settings the flags give (``InvalidSpec`` names a bad one); None if none is set."""
    from flowreg.store.settings import settings_from

    data = {"shards": getattr(args, "shards", None),
            "replicationFactor": getattr(args, "replication_factor", None),
            "writeConsistencyFactor": getattr(args, "write_consistency_factor", None),
            "readConsistency": getattr(args, "read_consistency", None),
            "writeOrdering": getattr(args, "write_ordering", None),
            "globalIndex": getattr(args, "global_index", None)}
    given = {key: value for key, value in data.items() if value is not None}
    return settings_from(given, "--") if given else None


async def store_info(args: argparse.Namespace) -> int:
    """``flowreg store info``: the collection's settings, points and warnings."""
    from flowreg.store import open_store
    from flowreg.store.settings import layout_warnings

    settings = settings_of(args)
    store = open_store(args.store, args.collection, settings=settings,
                       lock_timeout=args.lock_timeout)
    try:
        exists = await store.collection_exists()
        layout = await store.layout() if exists else None
        points = await store.count() if exists else 0
    finally:
        await store.close()
    info: dict[str, Any] = {"location": str(args.store), "collection": args.collection,
                            "exists": exists, "points": points,
                            "settings": layout.to_dict() if layout is not None else None,
                            "configured": settings.to_dict() if settings is not None else {},
                            "warnings": (layout_warnings(layout, store.settings)
                                         if layout is not None else [])}
    if args.output == "json":
        print(json.dumps(info, ensure_ascii=False))
    else:
        state = f"{points} point(s)" if exists else "absent (created on the first apply)"
        print(f"collection {args.collection} on {args.store}: {state}")
        for key, value in (info["settings"] or {}).items():
            if key != "collection":
                print(f"  {key}: {value}")
    for warning in info["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return ExitCode.OK
