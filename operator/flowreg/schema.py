"""The FlowRegistry schema, read from the CRD file, and offline validation against it.

``crds/flowregistry.yaml`` is the one schema: this module loads its ``openAPIV3Schema`` and
checks objects the way the apiserver does for everything a structural schema states (types,
required fields, patterns, bounds, enums, ``x-kubernetes-list-type: map`` key uniqueness,
fields the schema does not declare) and applies its defaults. Undeclared fields are errors, as
with ``kubectl apply``'s strict field validation: the apiserver would drop them, so a file that
kept them would not mean, or checksum, the same offline and in a cluster. CEL rules in
``x-kubernetes-validations`` compare with the old object (transition rules) and have no meaning
offline, so they are left to the apiserver.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

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
    packaged = resources.files("flowreg").joinpath("crds/flowregistry.yaml")
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "crds" / "flowregistry.yaml"


@functools.lru_cache(maxsize=1)
def crd() -> dict[str, Any]:
    """The CustomResourceDefinition as a dict."""
    with crd_path().open(encoding="utf-8") as fh:
        loaded = yaml.safe_load(fh)
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


@functools.lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(json.dumps(object_schema()))
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema)


@dataclass(frozen=True)
class SchemaError:
    """One schema violation: the JSON path of the offending value and the message."""

    path: Path_
    message: str


def validate(obj: Any) -> list[SchemaError]:
    """Every schema violation in ``obj`` (a whole FlowRegistry object), in document order."""
    errors = [
        SchemaError(tuple(err.absolute_path), _message(err))
        for err in _validator().iter_errors(obj)
    ]
    errors.extend(_list_map_duplicates(object_schema(), obj, ()))
    errors.extend(_unknown_fields(object_schema(), obj, ()))
    return sorted(errors, key=lambda e: [str(p).zfill(8) for p in e.path])


def apply_defaults(obj: Any, schema: dict[str, Any] | None = None) -> Any:
    """Fill in the schema's ``default`` values where a field is absent, in place; returns obj."""
    schema = object_schema() if schema is None else schema
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


def _message(err: jsonschema.ValidationError) -> str:
    if err.validator == "required":
        return err.message.replace("is a required property", "is required")
    if err.validator == "type":
        return f"expected {err.validator_value}, got {_type_name(err.instance)}"
    if err.validator == "maxLength":
        return f"too long: {len(err.instance)} characters, at most {err.validator_value} allowed"
    if err.validator == "maxItems":
        return f"too many items: {len(err.instance)}, at most {err.validator_value} allowed"
    if err.validator == "minLength":
        return f"too short: at least {err.validator_value} character(s) required"
    if err.validator == "minItems":
        return f"too few items: at least {err.validator_value} required"
    if err.validator == "pattern":
        return f"{_short(err.instance)} does not match {err.validator_value!r}"
    if err.validator == "enum":
        allowed = ", ".join(json.dumps(v) for v in err.validator_value)
        return f"{_short(err.instance)} is not one of {allowed}"
    return err.message


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


def _unknown_fields(schema: dict[str, Any], obj: Any, path: Path_) -> Iterator[SchemaError]:
    """Fields of ``obj`` that ``schema`` does not declare, where it declares any."""
    if isinstance(obj, dict):
        declared = schema.get("properties")
        if declared is None or schema.get("x-kubernetes-preserve-unknown-fields"):
            return
        for key, value in obj.items():
            sub = declared.get(key)
            if sub is None:
                yield SchemaError((*path, key), f'unknown field "{key}" (not in the schema)')
            else:
                yield from _unknown_fields(sub, value, (*path, key))
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(obj):
            yield from _unknown_fields(schema["items"], item, (*path, index))


def _list_map_duplicates(schema: dict[str, Any], obj: Any, path: Path_) -> Iterator[SchemaError]:
    """Duplicate keys in ``x-kubernetes-list-type: map`` lists, as the apiserver reports them."""
    if isinstance(obj, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in obj:
                yield from _list_map_duplicates(sub, obj[key], (*path, key))
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen: dict[str, int] = {}
        for index, item in enumerate(obj):
            if schema.get("x-kubernetes-list-type") == "map" and isinstance(item, dict):
                ident = {k: item.get(k) for k in keys}
                token = json.dumps(ident, sort_keys=True, default=str)
                if token in seen:
                    yield SchemaError(
                        (*path, index),
                        f"Duplicate value: {token} (first at index {seen[token]})",
                    )
                else:
                    seen[token] = index
            yield from _list_map_duplicates(schema["items"], item, (*path, index))
