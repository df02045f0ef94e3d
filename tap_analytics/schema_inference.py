"""JSON schema properties learned from sample records: the API, not this project, decides them."""

from __future__ import annotations

import decimal
import typing as t
from collections import Counter

from tap_analytics.timestamps import is_rfc3339

PROVISIONAL = "x-provisional"  # a key field typed before any record of it was seen
# On a tie the kind that holds the others as text wins, so no sample is forced aside.
_TIE_ORDER = ("string", "number", "integer", "object", "array", "boolean")


def json_kind(value: t.Any) -> str | None:
    """The JSON type of a decoded value; None for null."""
    kind = type(value)
    if value is None:
        return None
    if kind is bool:
        return "boolean"
    if kind is int:
        return "integer"
    if kind is float or kind is decimal.Decimal:
        return "number"
    if kind is dict:
        return "object"
    if kind is list:
        return "array"
    return "string"


def infer_property(values: t.Iterable[t.Any]) -> dict:
    """One nullable property typed by the kind most values have.

    Integers and numbers together are numbers; strings are date-times when every one is
    RFC 3339. Objects and arrays are left open (no sub-schema), so their contents may
    change without breaking a load. A field seen only as null is a string.
    """
    values = [v for v in values if v is not None]
    kinds = Counter(json_kind(v) for v in values)
    if kinds["integer"] and kinds["number"]:
        kinds["number"] += kinds.pop("integer")
    if not kinds:
        return {"type": ["string", "null"]}
    best = max(kinds.values())
    kind = next(k for k in _TIE_ORDER if kinds.get(k) == best)
    prop: dict[str, t.Any] = {"type": [kind, "null"]}
    strings = [v for v in values if type(v) is str]
    if kind == "string" and strings and all(is_rfc3339(v) for v in strings):
        prop["format"] = "date-time"
    return prop


def infer_properties(records: t.Sequence[dict], only: t.Iterable[str] | None = None
                     ) -> dict[str, dict]:
    """Properties for every field of `records` (or just those in `only`), in first-seen order."""
    wanted = None if only is None else set(only)
    order: dict[str, None] = {}
    for record in records:
        for key in record:
            if wanted is None or key in wanted:
                order.setdefault(key)
    return {key: infer_property(r.get(key) for r in records) for key in order}


def merge_schema(declared: dict, learned: dict[str, dict]) -> dict:
    """Declared properties, then learned ones the declaration does not name."""
    schema = {**declared, "properties": dict(declared.get("properties", {}))}
    for key, prop in learned.items():
        schema["properties"].setdefault(key, prop)
    return schema
