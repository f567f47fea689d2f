"""Flow blueprints: the structure of a flow (steps, handlers, branches), as versioned data.

Format, version 1::

    blueprint:
      version: 1
      entry: classify            # optional; the first step when absent
      steps:
        - id: classify           # unique within the blueprint
          handler: payments.classify
          branches:              # tried in order; the first whose predicate holds wins
            - when: payments.is_large
              to: manual_review
          next: execute          # where to go when no branch matches; "end" or absent ends
          onError: apologise     # where to go when the handler raises
        - ...

The schema (in the CRD) checks the shape; ``check`` here checks the meaning: ids are unique,
every ``entry``/``next``/``to``/``onError`` names a step (or ``end``), and every step is
reachable from the entry. Handler bodies stay in code; a blueprint only names them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

SUPPORTED_VERSIONS = (1,)
END = "end"


@dataclass(frozen=True)
class BlueprintProblem:
    """A defect in a blueprint: the field (relative to the blueprint) and what is wrong."""

    field: str
    message: str


def check(blueprint: Mapping[str, Any]) -> list[BlueprintProblem]:
    """Every semantic defect of a blueprint whose shape already passed the schema."""
    return [] if _sound(blueprint) else problems_of(blueprint)


def problems_of(blueprint: Mapping[str, Any]) -> list[BlueprintProblem]:
    """``check`` without its fast path for sound blueprints: the reference it must agree with."""
    problems: list[BlueprintProblem] = []
    version = blueprint.get("version")
    if version not in SUPPORTED_VERSIONS:
        problems.append(BlueprintProblem("version", f"unsupported blueprint version {version!r}"))
        return problems
    steps = list(blueprint.get("steps") or [])
    if not steps:
        return [BlueprintProblem("steps", "a blueprint needs at least one step")]
    ids: dict[str, int] = {}
    for index, step in enumerate(steps):
        sid = step.get("id")
        if sid == END:
            problems.append(BlueprintProblem(f"steps[{index}].id", f'"{END}" is reserved'))
        elif sid in ids:
            problems.append(BlueprintProblem(
                f"steps[{index}].id", f'duplicate step id "{sid}" (first at steps[{ids[sid]}])'))
        else:
            ids[sid] = index
    for where, target in _references(blueprint):
        if target != END and target not in ids:
            problems.append(BlueprintProblem(where, f'refers to unknown step "{target}"'))
    if problems:
        return problems
    entry = blueprint.get("entry") or steps[0]["id"]
    reached = _reachable(entry, steps)
    for index, step in enumerate(steps):
        if step["id"] not in reached:
            problems.append(BlueprintProblem(
                f"steps[{index}]", f'step "{step["id"]}" is unreachable from "{entry}"'))
    return problems


def _sound(blueprint: Mapping[str, Any]) -> bool:
    """Whether ``blueprint`` has no defect, in one walk from the entry: the common case of
    ``check``, which runs for every flow of every manifest read. ``False`` means only that the
    full check must say what is wrong (or that nothing is, e.g. for an unusual shape)."""
    steps = blueprint.get("steps")
    if blueprint.get("version") not in SUPPORTED_VERSIONS or not isinstance(steps, list) \
            or not steps:
        return False
    try:
        by_id = {step["id"]: step for step in steps}
        if len(by_id) != len(steps) or END in by_id:
            return False
        entry = blueprint.get("entry")
        todo = [entry if entry is not None else steps[0]["id"]]
        seen: set[Any] = set()
        add, pop, push, get = seen.add, todo.pop, todo.append, by_id.get
        while todo:
            sid = pop()
            if sid in seen or sid == END:
                continue
            step = get(sid)
            if step is None:  # an unknown step, named by the entry or by a step reached
                return False
            add(sid)
            target = step.get("next")
            if target is not None:
                push(target)
            target = step.get("onError")
            if target is not None:
                push(target)
            branches = step.get("branches")
            if branches:
                todo.extend([branch["to"] for branch in branches])
    except (KeyError, TypeError, AttributeError):  # a shape the schema would have refused
        return False
    # Every step reached, so every reference of every step was looked up.
    return len(seen) == len(by_id)


def _references(blueprint: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    if blueprint.get("entry") is not None:
        yield "entry", blueprint["entry"]
    for index, step in enumerate(blueprint.get("steps") or []):
        for key in ("next", "onError"):
            if step.get(key) is not None:
                yield f"steps[{index}].{key}", step[key]
        for bindex, branch in enumerate(step.get("branches") or []):
            yield f"steps[{index}].branches[{bindex}].to", branch["to"]


def _reachable(entry: str, steps: list[Mapping[str, Any]]) -> set[str]:
    by_id = {s["id"]: s for s in steps}
    seen: set[str] = set()
    todo = [entry]
    while todo:
        sid = todo.pop()
        if sid == END or sid in seen:
            continue
        seen.add(sid)
        step = by_id[sid]
        todo.extend(step[k] for k in ("next", "onError") if step.get(k))
        todo.extend(b["to"] for b in step.get("branches") or [])
    return seen
