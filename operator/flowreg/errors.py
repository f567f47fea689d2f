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
    STOPPED_BY_SIGINT = 130
    STOPPED_BY_SIGTERM = 143


EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.INTERNAL: "internal error (a bug: please report it)",
    ExitCode.USAGE: "usage error (a flag out of range, a store location that names no store or "
                    "carries credentials, an unset key variable named by a flag or setting, an "
                    "invalid operator configuration)",
    ExitCode.INVALID_INPUT: "invalid input (schema, checksum, blueprint, input over a limit "
                            "below, or no FlowRegistry document at all); nothing was written",
    ExitCode.STORE_UNAVAILABLE: "store unavailable (unreachable server, embedded store still in "
                                "use by another process after `--lock-timeout`, incompatible "
                                "collection, no space left on the embedded store's device)",
    ExitCode.SAFETY_GUARD: "refused by a safety guard (empty registry, too many deletions); "
                           "nothing was written",
    ExitCode.CONFLICT: "conflict: declared flows belong to another registry (they were left "
                       "untouched; the rest was applied)",
    ExitCode.EMBEDDER_UNAVAILABLE: "embedder unavailable",
    ExitCode.LINT_FINDINGS: "`flowreg lint --fail-on KIND`: a finding of that kind (confusable, "
                            "duplicate, thin)",
    ExitCode.STOPPED_BY_SIGINT: "stopped by SIGINT (an apply at a batch boundary, with its "
                                "partial report)",
    ExitCode.STOPPED_BY_SIGTERM: "stopped by SIGTERM (an apply at a batch boundary, with its "
                                 "partial report)",
}
"""What each exit code means: the one table (README.md's equals it; a test checks)."""


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


class UsageError(FlowregError):
    """A flag, setting or environment variable the invocation depends on is wrong or missing."""

    reason = "InvalidConfig"
    exit_code = ExitCode.USAGE
    permanent = True


class Interrupted(FlowregError):
    """A command stopped on a signal (an apply: at a batch boundary, keeping what it wrote).

    ``signum`` is the signal; the CLI exits with 128 + ``signum`` (130 for SIGINT, 143 for
    SIGTERM), as a shell reports a process a signal ended."""

    reason = "Interrupted"

    def __init__(self, signum: int, where: str = "") -> None:
        import signal

        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.signal_name}{' ' + where if where else ''}")
