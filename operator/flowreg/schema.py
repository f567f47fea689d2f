"""The FlowRegistry schema, read from the CRD file, and offline validation against it.

``crds/flowregistry.yaml`` is the one schema: this module loads its ``openAPIV3Schema`` once
and compiles it into a validator (``jsonschema_rs``, in Rust) that checks objects the way the
apiserver does for everything a structural schema states: types, required fields, patterns,
bounds, enums, and fields the schema does not declare (compiled as ``additionalProperties:
false`` wherever the schema declares properties and does not preserve unknown fields).
Undeclared fields are errors, as with ``kubectl apply``'s strict field validation: the apiserver
would drop them, so a file that kept them would not mean, or checksum, the same offline and in
a cluster. What JSON Schema cannot state is derived from the same schema at compile time: key
uniqueness in ``x-kubernetes-list-type: map`` lists, the defaults, and the CEL rules of the form
``duration(self) >= duration('10s')`` (minimum durations). Other CEL rules compare with the old
object (transition rules) and have no meaning offline, so they are left to the apiserver.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GROUP = "flowreg.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "FlowRegistry"
PLURAL = "flowregistries"

Path_ = tuple[str | int, ...]


def crd_path() -> Path:
    """Where the CRD file is: ``$FLOWREG_CRD``, the installed package data, or the source tree."""
    override = os.environ.get("FLOWREG_CRD")
    if override:
        return Path(override)
    # The installed package data, or the source tree, found without importlib.resources (which
    # imports zipfile, tempfile, email...: start-up time of every command); it is asked only
    # for a package that is not plain files.
    here = Path(__file__).resolve()
    for candidate in (here.with_name("crds") / "flowregistry.yaml",
                      here.parents[2] / "crds" / "flowregistry.yaml"):
        if candidate.is_file():
            return candidate
    from importlib import resources

    packaged = resources.files("flowreg").joinpath("crds/flowregistry.yaml")
    return Path(str(packaged))


@functools.lru_cache(maxsize=1)
def _crd_text() -> str:
    """The CRD file's text, read once: validation and ``crd_digest`` both use this reading."""
    return crd_path().read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def crd_digest() -> str:
    """sha256 of the CRD text this process validates against (what a cached reading of a
    manifest depends on, whichever file it came from)."""
    import hashlib

    return hashlib.sha256(_crd_text().encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=1)
def crd() -> dict[str, Any]:
    """The CustomResourceDefinition as a dict."""
    text = _crd_text()
    try:
        import yaml_rs

        loaded = yaml_rs.loads(text, parse_datetime=False)
    except ImportError:  # pragma: no cover - yaml-rs is a declared dependency
        import yaml

        loaded = yaml.safe_load(text)
    if not isinstance(loaded, dict):
        raise RuntimeError(f"{crd_path()} does not hold a CustomResourceDefinition")
    return loaded


@functools.lru_cache(maxsize=1)
def object_schema() -> dict[str, Any]:
    """The ``openAPIV3Schema`` of the served version."""
    for version in crd()["spec"]["versions"]:
        if version["name"] == VERSION:
            schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
            return schema
    raise RuntimeError(f"{crd_path()} has no version {VERSION}")


@dataclass(frozen=True)
class _Compiled:
    """What validation needs, derived once from the schema."""

    validator: Any
    list_maps: tuple[tuple[Path_, tuple[str, ...]], ...]  # (path with "*" for items, keys)
    minimum_durations: tuple[tuple[Path_, float, str, str], ...]  # path, seconds, text, message
    defaults: dict[str, Any]  # the schema pruned to the branches that hold defaults


@functools.lru_cache(maxsize=1)
def _compiled() -> _Compiled:
    import jsonschema_rs

    schema = object_schema()
    list_maps: list[tuple[Path_, tuple[str, ...]]] = []
    durations: list[tuple[Path_, float, str, str]] = []
    for path, sub in _subschemas(schema, ()):
        if sub.get("x-kubernetes-list-type") == "map":
            list_maps.append((path, tuple(sub.get("x-kubernetes-list-map-keys", ()))))
        for rule in sub.get("x-kubernetes-validations", ()):
            match = _MIN_DURATION.fullmatch(rule.get("rule", "").strip())
            if match:
                durations.append((path, parse_duration(match.group(1)), match.group(1),
                                  rule.get("message", f"must be at least {match.group(1)}")))
    return _Compiled(jsonschema_rs.Draft7Validator(_strict(schema)), tuple(list_maps),
                     tuple(durations), _with_defaults(schema) or {})


_MIN_DURATION = re.compile(r"""duration\(self\)\s*>=\s*duration\(['"]([^'"]+)['"]\)""")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``90s``, ``10m``, ``1h30m``, ``500ms`` (CEL's units)."""
    total, pos = 0.0, 0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: {text!r}")
    return total


def default(path: Path_) -> Any:
    """The CRD's ``default`` for the field at ``path`` (e.g. ``("spec", "interval")``).

    Raises ``KeyError`` naming the path if the CRD declares no default there.
    """
    node: dict[str, Any] = object_schema()
    for key in path:
        node = node.get("properties", {}).get(key) or {}
    if "default" not in node:
        raise KeyError(f"the CRD declares no default for {'.'.join(map(str, path))}")
    return json.loads(json.dumps(node["default"]))


def minimum_duration(path: Path_) -> float | None:
    """The minimum the CRD's CEL rules set for the duration at ``path`` (seconds), if any."""
    for where, seconds, _, _ in _compiled().minimum_durations:
        if where == tuple(path):
            return seconds
    return None


def _subschemas(schema: dict[str, Any], path: Path_) -> Iterator[tuple[Path_, dict[str, Any]]]:
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from _subschemas(sub, (*path, key))
    if isinstance(schema.get("items"), dict):
        yield from _subschemas(schema["items"], (*path, "*"))


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with ``additionalProperties: false`` where it declares properties."""
    out = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if "properties" in schema:
        out["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(schema.get("items"), dict):
        out["items"] = _strict(schema["items"])
    return out


def _with_defaults(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The part of ``schema`` that leads to a ``default`` (``None`` if none)."""
    found: dict[str, Any] = {}
    if "default" in schema:
        found["default"] = schema["default"]
    props = {k: sub for k, sub in ((k, _with_defaults(v))
                                   for k, v in schema.get("properties", {}).items()) if sub}
    if props:
        found["properties"] = props
    if isinstance(schema.get("items"), dict):
        items = _with_defaults(schema["items"])
        if items:
            found["items"] = items
    return found or None


@dataclass(frozen=True)
class SchemaError:
    """One schema violation: the JSON path of the offending value and the message."""

    path: Path_
    message: str


def validate(obj: Any, *, minimums: bool = True) -> list[SchemaError]:
    """Every schema violation in ``obj`` (a whole FlowRegistry object), in document order.

    ``minimums=False`` leaves out the minimum durations of the CRD's CEL rules.
    """
    compiled = _compiled()
    errors: list[SchemaError] = []
    try:
        valid = compiled.validator.is_valid(obj)
        if not valid:
            errors.extend(_schema_error(err) for err in compiled.validator.iter_errors(obj))
    except (ValueError, TypeError) as exc:  # a value JSON cannot hold (a non-string key...)
        return [SchemaError((), f"not a JSON object: {exc}")]
    for path, keys in compiled.list_maps:
        path = path[:-1] if path and path[-1] == "*" else path
        if len(keys) == 1 and _unique_keys(_values_at(obj, path), keys[0]):
            continue  # the common case, without a path built per list
        for where, items in _at(obj, path, ()):
            if isinstance(items, list):
                errors.extend(_list_map_duplicates(items, keys, where))
    for path, seconds, text, message in compiled.minimum_durations if minimums else ():
        for where, value in _at(obj, path, ()):
            try:
                too_short = isinstance(value, str) and parse_duration(value) < seconds
            except ValueError:
                continue  # the pattern reports it
            if too_short:
                errors.append(SchemaError(where, f"{message} (got {value}, minimum {text})"))
    return sorted(errors, key=lambda e: [str(p).zfill(8) for p in e.path])


def apply_defaults(obj: Any, schema: dict[str, Any] | None = None) -> Any:
    """Fill in the schema's ``default`` values where a field is absent, in place; returns obj."""
    schema = _compiled().defaults if schema is None else schema
    if isinstance(obj, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in obj and "default" in sub:
                obj[key] = json.loads(json.dumps(sub["default"]))
            if key in obj:
                apply_defaults(obj[key], sub)
    elif isinstance(obj, list) and "items" in schema:
        for item in obj:
            apply_defaults(item, schema["items"])
    return obj


def _at(obj: Any, path: Path_, where: Path_) -> Iterator[tuple[Path_, Any]]:
    """The values at ``path`` in ``obj`` (``"*"`` stands for every item of a list)."""
    if not path:
        yield where, obj
        return
    head, rest = path[0], path[1:]
    if head == "*":
        if isinstance(obj, list):
            for index, item in enumerate(obj):
                yield from _at(item, rest, (*where, index))
    elif isinstance(obj, dict) and head in obj:
        yield from _at(obj[head], rest, (*where, head))


def _values_at(obj: Any, path: Path_) -> list[Any]:
    """The values ``_at`` finds, without their paths."""
    level = [obj]
    for head in path:
        if head == "*":
            level = [item for value in level if isinstance(value, list) for item in value]
        else:
            level = [value[head] for value in level if isinstance(value, dict) and head in value]
    return level


def _unique_keys(lists: list[Any], key: str) -> bool:
    """Whether every list in ``lists`` holds each value of ``key`` at most once (False when
    unsure: an unhashable value)."""
    try:
        for items in lists:
            if isinstance(items, list) and len(items) > 1:
                values = {item.get(key) if isinstance(item, dict) else item for item in items}
                if len(values) != len(items):
                    return False
    except TypeError:
        return False
    return True


def _list_map_duplicates(items: list[Any], keys: tuple[str, ...],
                         path: Path_) -> Iterator[SchemaError]:
    """Duplicate keys in an ``x-kubernetes-list-type: map`` list, as the apiserver says."""
    if len(keys) == 1:  # the common case, at C speed when there is no duplicate
        [key] = keys
        values = [item.get(key) if isinstance(item, dict) else item for item in items]
        with contextlib.suppress(TypeError):
            if len(set(values)) == len(values):
                return
    seen: dict[tuple[Any, ...], int] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        ident = tuple(item.get(k) for k in keys)
        if not all(isinstance(v, str | int | None) for v in ident):
            ident = tuple(json.dumps(v, sort_keys=True, default=str) for v in ident)
        if ident in seen:
            token = json.dumps({k: item.get(k) for k in keys}, sort_keys=True, default=str)
            yield SchemaError((*path, index),
                              f"Duplicate value: {token} (first at index {seen[ident]})")
        else:
            seen[ident] = index


def _schema_error(err: Any) -> SchemaError:
    path = tuple(err.instance_path)
    kind = err.kind
    if kind.name == "additionalProperties":
        [field] = kind.as_dict()["unexpected"][:1] or ["?"]
        return SchemaError((*path, field), f'unknown field "{field}" (not in the schema)')
    return SchemaError(path, _message(kind, err.instance, err.message))


def _message(kind: Any, instance: Any, default: str) -> str:
    name = kind.name
    info = kind.as_dict()
    if name == "required":
        return f"'{info['property']}' is required"
    if name == "type":
        expected = " or ".join(str(t) for t in info['types'])
        return f"expected {expected}, got {_type_name(instance)}"
    if name == "maxLength":
        return f"too long: {len(instance)} characters, at most {info['limit']} allowed"
    if name == "maxItems":
        return f"too many items: {len(instance)}, at most {info['limit']} allowed"
    if name == "minLength":
        return f"too short: at least {info['limit']} character(s) required"
    if name == "minItems":
        return f"too few items: at least {info['limit']} required"
    if name == "pattern":
        return f"{_short(instance)} does not match {info['pattern']!r}"
    if name == "enum":
        allowed = ", ".join(json.dumps(v) for v in info['options'])
        return f"{_short(instance)} is not one of {allowed}"
    return default


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
