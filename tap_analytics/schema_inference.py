"""A JSON schema inferred from sample records, for resources declared without one."""

from __future__ import annotations

import datetime
import decimal
import typing as t

_TYPE_ORDER = ("boolean", "integer", "number", "string", "object", "array")


def _json_type(value: t.Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, (float, decimal.Decimal)):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string"


def _is_datetime(value: t.Any) -> bool:
    if not isinstance(value, str) or len(value) < 19 or value[4] != "-" or "T" not in value:
        return False
    try:
        datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def infer_schema(records: t.Sequence[dict], required: t.Iterable[str] = ()) -> dict:
    """Types seen per field; every field nullable except the `required` keys."""
    seen: dict[str, set[str]] = {}
    datetimes: dict[str, bool] = {}
    for record in records:
        for key, value in record.items():
            kinds = seen.setdefault(key, set())
            kind = _json_type(value)
            if kind:
                kinds.add(kind)
            if isinstance(value, str):
                datetimes[key] = datetimes.get(key, True) and _is_datetime(value)
    required = [k for k in required]
    properties: dict[str, dict] = {}
    for key, kinds in seen.items():
        if {"integer", "number"} <= kinds:
            kinds.discard("integer")
        if len(kinds) > 1:
            kinds = {"string"} if kinds <= {"string", "integer", "number", "boolean"} else set()
        prop: dict[str, t.Any] = {}
        if kinds:
            kind = next(iter(kinds))
            prop["type"] = kind if key in required else [kind, "null"]
            if kind == "string" and datetimes.get(key):
                prop["format"] = "date-time"
        properties[key] = prop  # {} accepts anything where the sample disagrees
    for key in required:
        properties.setdefault(key, {"type": "string"})
    return {"type": "object", "properties": properties,
            "required": [k for k in required if k in properties]}
