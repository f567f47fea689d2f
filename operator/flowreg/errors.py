"""One error family for flowreg, and the table that maps each error to its exit code and reason.

The CLI turns an error into ``exit_code``; the operator turns it into a ``Ready=False`` condition
with ``reason``. Both read the same attributes, so the two shells never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of the ``flowreg`` CLI (documented in README.md)."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    INVALID_INPUT = 3
    STORE_UNAVAILABLE = 4
    SAFETY_GUARD = 5
    CONFLICT = 6
    EMBEDDER_UNAVAILABLE = 7
    LINT_FINDINGS = 8


class FlowregError(Exception):
    """Base of every error flowreg raises on purpose.

    ``reason`` is a CamelCase condition reason, ``exit_code`` the CLI's exit code, ``permanent``
    says whether retrying without a change of input can help (the operator stalls on permanent
    errors and retries transient ones with backoff).
    """

    reason: str = "InternalError"
    exit_code: ExitCode = ExitCode.INTERNAL
    permanent: bool = False


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where it is, which flow and field, and what is wrong."""

    message: str
    source: str = ""
    line: int | None = None
    flow: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        subject = []
        if self.flow is not None:
            subject.append(f'flow "{self.flow}"')
        if self.field:
            subject.append(f'field "{self.field}"')
        parts = [p for p in (where, ", ".join(subject)) if p]
        prefix = ": ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message


class InvalidSpec(FlowregError):
    """The declaration is invalid; nothing was written. Carries every problem found."""

    reason = "InvalidSpec"
    exit_code = ExitCode.INVALID_INPUT
    permanent = True

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = problems
        super().__init__("\n".join(str(p) for p in problems))


class StoreUnavailable(FlowregError):
    """Qdrant could not be reached, or a local store is held by another process."""

    reason = "StoreUnavailable"
    exit_code = ExitCode.STORE_UNAVAILABLE


class StoreIncompatible(FlowregError):
    """The collection exists but cannot hold our vectors (e.g. another vector size)."""

    reason = "StoreIncompatible"
    exit_code = ExitCode.STORE_UNAVAILABLE
    permanent = True


class EmbedderUnavailable(FlowregError):
    """The embedding backend failed after its retries, or answered with something unusable."""

    reason = "EmbedderUnavailable"
    exit_code = ExitCode.EMBEDDER_UNAVAILABLE


class DeletionGuard(FlowregError):
    """A safety guard refused the apply (empty declaration, or too many deletions)."""

    reason = "DeletionGuard"
    exit_code = ExitCode.SAFETY_GUARD
    permanent = True


class ConflictError(FlowregError):
    """Declared flows are owned by another registry; they were left untouched."""

    reason = "Conflict"
    exit_code = ExitCode.CONFLICT
    permanent = True
