"""The JSON Schemas of the events that leave the engine (Kafka messages, Elasticsearch documents).

One file per event type, ``<type>.schema.json``, version ``x-schema-version`` (the events carry the
same number as ``schema_version``). They are the single source of truth for what a message holds:
``README.md`` documents them for people, :func:`validate` checks documents against them (tests
validate the real ``to_dict()`` output of every event type), and ``tradeconsole.infra.sinks.elastic`` derives the
explicit Elasticsearch mappings from them, so a field cannot be documented as a double and indexed
as a long.

The validator implements only the subset of JSON Schema these files use (``type``, ``const``,
``enum``, ``properties``, ``required``, ``additionalProperties``, ``minLength`` and
``format: date-time``); it is small on purpose because ``jsonschema`` is not a dependency.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

__all__ = [
    "SCHEMA_DIR",
    "SchemaError",
    "event_types",
    "family_of_type",
    "load_schema",
    "schemas_for_family",
    "validate",
]

SCHEMA_DIR = Path(__file__).resolve().parent

# UTC ISO-8601 as the events write it; offsets other than Z are valid date-times too.
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


class SchemaError(ValueError):
    """A schema file is missing or inconsistent (a bug in this package, not in the data)."""


@cache
def load_schema(event_type: str) -> dict[str, Any]:
    """The schema for one event type, e.g. ``load_schema("candle")``."""
    path = SCHEMA_DIR / f"{event_type}.schema.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SchemaError(f"no schema for event type {event_type!r} ({path})") from None


@cache
def event_types() -> tuple[str, ...]:
    """Every event type that has a schema, sorted."""
    return tuple(sorted(p.name.removesuffix(".schema.json") for p in SCHEMA_DIR.glob("*.schema.json")))


def family_of_type(event_type: str) -> str:
    """The family (topic / index) an event type belongs to, as declared by ``x-family``."""
    return load_schema(event_type)["x-family"]


def schemas_for_family(family: str) -> list[dict[str, Any]]:
    """All schemas whose events share the family ``family`` (``status`` has three)."""
    found = [load_schema(t) for t in event_types() if family_of_type(t) == family]
    if not found:
        raise SchemaError(f"no event type belongs to family {family!r}")
    return found


def validate(doc: Any, schema: dict[str, Any] | None = None) -> list[str]:
    """Errors of ``doc`` against ``schema`` (default: the schema named by ``doc["type"]``).

    Returns an empty list when the document is valid; each error names the JSON path.
    """
    if schema is None:
        if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
            return ["$: not an event object with a 'type'"]
        try:
            schema = load_schema(doc["type"])
        except SchemaError as e:
            return [f"$.type: {e}"]
    errors: list[str] = []
    _check(doc, schema, "$", errors)
    return errors


def _type_ok(value: Any, name: str) -> bool:
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, _JSON_TYPES[name])


def _check(value: Any, schema: dict[str, Any] | bool, path: str, errors: list[str]) -> None:
    if schema is True:
        return
    if schema is False:
        errors.append(f"{path}: not allowed")
        return
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: expected {schema['const']!r}, got {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not one of {schema['enum']!r}")
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_type_ok(value, n) for n in names):
            errors.append(f"{path}: expected {'/'.join(names)}, got {type(value).__name__}")
            return
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{path}: shorter than {schema['minLength']}")
        if schema.get("format") == "date-time" and not _DATE_TIME.match(value):
            errors.append(f"{path}: {value!r} is not an ISO-8601 date-time")
    if isinstance(value, dict):
        props: dict[str, Any] = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                errors.append(f"{path}.{name}: required")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            sub = props.get(name, extra)
            _check(item, sub, f"{path}.{name}", errors)
