"""SIGINT and SIGTERM during ``apply``: stop at the next batch boundary and say what was done.

``StopSignals`` records the first SIGINT or SIGTERM instead of letting it end the process
mid-write; the apply checks it after each batch's checkpoint and before the first write, and
raises ``Interrupted`` there. A second signal of the same kind takes its default action (a
kill is safe too: batches are atomic and a rerun converges). ``partial_report`` says which of
the planned changes were made before the stop.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from flowreg.errors import Interrupted
from flowreg.history import Checkpoint
from flowreg.plan import Plan, RemovalReason

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """The first SIGINT/SIGTERM received while installed (on the running event loop)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self) -> None:
        self._loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            self._loop.add_signal_handler(sig, self._received, sig)

    def uninstall(self) -> None:
        if self._loop is not None:
            for sig in SIGNALS:
                self._loop.remove_signal_handler(sig)
            self._loop = None

    def _received(self, sig: int) -> None:
        if self.signum is None:
            self.signum = sig
        if self._loop is not None:  # the next one takes its default action
            self._loop.remove_signal_handler(sig)

    def check(self, checkpoint: Checkpoint | None = None,
              where: str = "at a batch boundary; nothing was written after it") -> None:
        """Raise ``Interrupted`` if a signal came (unless ``checkpoint`` says all is done)."""
        if self.signum is not None and (checkpoint is None
                                        or checkpoint.done < checkpoint.total):
            raise Interrupted(self.signum, where)


def partial_report(plan: Plan | None, checkpoint: Checkpoint | None, owner: str,
                   agent_id: str, exc: Interrupted) -> dict[str, Any]:
    """What an interrupted apply had done: the first ``done`` changes of ``plan``, in the
    engine's order (writes, then deletions)."""
    done = checkpoint.done if checkpoint is not None else 0
    creates = plan.creates if plan is not None else ()
    updates = plan.updates if plan is not None else ()
    deletes = plan.deletes if plan is not None else ()
    total = len(creates) + len(updates) + len(deletes)
    renamed_to = {new for _, new in plan.renames} if plan is not None else set()
    made_creates = [w.flow.name for w in creates[:done]]
    made_updates = [w.flow.name for w in updates[:max(0, done - len(creates))]]
    made_deletes = deletes[:max(0, done - len(creates) - len(updates))]
    created = [n for n in made_creates if n not in renamed_to]
    renamed = [n for n in made_creates if n in renamed_to]
    updated = made_updates
    deleted = [r.name for r in made_deletes if r.reason is not RemovalReason.RENAMED]
    return {"agent_id": agent_id, "owner": owner, "interrupted": True,
            "signal": exc.signal_name, "done": done, "total": total, "created": created,
            "updated": updated, "renamed": renamed, "deleted": deleted}


def partial_summary(report: dict[str, Any]) -> str:
    """One line for the text output."""
    return (f"{report['owner']} (agent {report['agent_id']}): interrupted by {report['signal']} "
            f"after {report['done']} of {report['total']} change(s) ({len(report['created'])} "
            f"created, {len(report['updated'])} updated, {len(report['renamed'])} renamed, "
            f"{len(report['deleted'])} deleted); run the same apply again to finish")
