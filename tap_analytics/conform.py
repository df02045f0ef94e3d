"""Every record valid against the schema in force, with nothing silently lost.

A `Conformer` checks each page of a stream against the stream's schema, the way a strict
target validates, and settles what does not fit by the `schema_contract` setting:

- a field the schema lacks is added to it (`evolve`), dropped (`discard_value`) or stops
  the run (`freeze`); its type is learned from the page that brought it;
- a value of another type is converted where the declared type holds it exactly
  (`"42"` for an integer, `12` or an object for a string, `"true"` for a boolean, JSON
  text for an object or array); otherwise, dlt-style, it moves to a variant field beside
  the original, typed by the value (`plan__v_text`, `plan__v_json`, ...), which is added to
  the schema (`evolve`), or is dropped (`discard_value`); `freeze` stops on any mismatch.

The schema only ever grows by nullable properties, so every record conformed against an
earlier version stays valid under a later one, and no target ever has to change a
column's type. Each change is told once per stream and field.
"""

from __future__ import annotations

import copy
import decimal
import math
import operator
import re
import threading
import typing as t
from dataclasses import dataclass

import msgspec
from jsonschema import Draft7Validator, FormatChecker
from singer_sdk.contrib.msgspec import decoder, encoder
from singer_sdk.exceptions import FatalAPIError
from singer_sdk.helpers._catalog import pop_deselected_record_properties

from tap_analytics.payload import is_blank
from tap_analytics.schema_inference import PROVISIONAL, infer_properties, json_kind
from tap_analytics.timestamps import UTC_ZONES, all_rfc3339, in_utc, is_rfc3339

if t.TYPE_CHECKING:
    import logging

    from singer_sdk.singerlib import SelectionMask

PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float, decimal.Decimal),
    "boolean": (bool,), "object": (dict,), "array": (list,), "null": (type(None),),
}
# A variant field per JSON type of the value, named as dlt names its variant columns.
VARIANTS = {"string": ("text", ["string", "null"]), "integer": ("bigint", ["integer", "null"]),
            "number": ("double", ["number", "null"]), "boolean": ("bool", ["boolean", "null"]),
            "object": ("json", ["object", "array", "null"]),
            "array": ("json", ["object", "array", "null"])}
_SIMPLE_KEYS = {"type", "format", "description", "title", "default", "examples"}
_INTEGER = re.compile(r"-?(0|[1-9]\d*)\Z")
_NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?\Z")


class SchemaContractError(FatalAPIError):
    """`schema_contract` is freeze and the API sent something the catalog does not allow."""


@dataclass(frozen=True)
class Rule:
    """What one property accepts, decided once per schema version."""

    kinds: tuple[str, ...]  # declared JSON types, null last
    types: frozenset[type]
    datetime: bool = False
    validator: t.Callable[[t.Any], bool] | None = None  # anything not expressible above
    slow: bool = False  # a value of an accepted Python type still needs a closer look

    def fits(self, value: t.Any) -> bool:
        if type(value) not in self.types:
            return False
        if self.datetime and type(value) is str and not is_rfc3339(value):
            return False
        return self.validator is None or self.validator(value)

    def column_fits(self, column: list[t.Any]) -> bool:
        """`fits` for a whole page's values of one field (of accepted Python types)."""
        if self.validator is not None:
            return all(map(self.fits, column))
        return all_rfc3339([v for v in column if type(v) is str])


def rule_for(prop: t.Mapping[str, t.Any]) -> Rule:
    declared = prop.get("type")
    kinds = (declared,) if isinstance(declared, str) else tuple(declared or ())
    types = frozenset(tp for kind in kinds or PYTHON_TYPES for tp in PYTHON_TYPES.get(kind, ()))
    validator = None
    if not set(prop) <= _SIMPLE_KEYS or prop.get("format") not in (None, "date-time"):
        validator = Draft7Validator(dict(prop), format_checker=FormatChecker()).is_valid
    datetime = prop.get("format") == "date-time"
    return Rule(tuple(sorted(kinds, key=lambda k: k == "null")), types, datetime=datetime,
                validator=validator, slow=datetime or validator is not None)


def json_text(value: t.Any) -> str:
    return encoder.encode(value).decode()


def coerce(value: t.Any, rule: Rule) -> tuple[bool, t.Any]:
    """The value in a declared type that holds it exactly, if there is one."""
    kind = type(value)
    for target in rule.kinds:
        converted: t.Any = None
        if target == "string" and not rule.datetime and kind is not str and value is not None:
            converted = json_text(value)
        elif target == "integer":
            if (kind is str and _INTEGER.match(value)) or _integral(value):
                converted = int(value)
        elif target == "number" and kind is str and _NUMBER.match(value):
            converted = decimal.Decimal(value)
        elif target == "boolean" and kind is str and value in ("true", "false"):
            converted = value == "true"
        elif target in ("object", "array") and kind is str and value[:1] in "{[":
            try:
                decoded = decoder.decode(value)
            except msgspec.DecodeError:
                decoded = None
            if json_kind(decoded) == target:
                converted = decoded
        if converted is not None and rule.fits(converted):
            return True, converted
    return False, None


def _integral(value: t.Any) -> bool:
    """A float or decimal with no fractional part (5.0 is the integer 5 in another form)."""
    if type(value) not in (float, decimal.Decimal):
        return False
    return math.isfinite(value) and value == int(value)


class Conformer:
    """One stream's schema in force, and the checks that keep its records within it."""

    def __init__(self, stream: str, schema: dict, *, fixed: t.Iterable[str], contract: str,
                 mask: SelectionMask, logger: logging.Logger, learning: bool = False,
                 memory: dict | None = None, utc: bool = False,
                 cursor: tuple[str, str] | None = None) -> None:
        """`learning`: no catalog was given, so the first page's fields are expected news.
        `memory`: the type each field was first given, kept in the state across runs.
        `utc`: date-time values are written in UTC (the `utc_timestamps` setting).
        `cursor`: the bookmark field (one of `fixed`) and what a record without a value in
        it does (`on_cursor_value_missing`: include, exclude or fail)."""
        self.stream = stream
        self.schema = copy.deepcopy(schema)
        self.schema.setdefault("properties", {})
        self.version = 0
        self._memory = memory if memory is not None else {}
        self._remember(set(fixed))
        self._fixed = set(fixed)
        self._contract = contract
        self._mask = mask
        self._logger = logger
        self._told: set[tuple[str, str]] = set()
        self._learning = learning
        self._utc = utc
        self._lock = threading.Lock()
        self._deselected = any(not selected for crumb, selected in mask.items() if crumb)
        self._selected = mask[()]  # a parent read only for its children writes nothing
        self._rules = {name: rule_for(prop) for name, prop in self.schema["properties"].items()}
        # key fields typed before any record was seen: the first page says what they are
        self._provisional = {name for name, prop in self.schema["properties"].items()
                             if prop.get(PROVISIONAL)}
        self._cursor, self._on_missing = cursor or (None, "fail")
        self.missing_cursor = 0  # records without a bookmark value, this run
        self._required = set(self._fixed)  # on every record
        if self._cursor is not None and self._on_missing != "fail":
            self._required.discard(self._cursor)
            self._allow_null(self._cursor)

    def conform_page(self, records: list[dict]) -> list[dict]:
        """Check and settle one page in place; the schema may grow (version goes up)."""
        if not self._selected:
            return records
        with self._lock:
            if self._cursor is not None and records:
                records = self._settle_missing_cursor(records)
            if self._provisional and records:
                self._learn_provisional(records)
            if self._deselected:
                for record in records:
                    pop_deselected_record_properties(record, self.schema, self._mask)
            rules = self._rules
            # Column by column: one set of the Python types a field has on this page, and a
            # closer look only where that set or the field's rule asks for one.
            present = set().union(*records)
            unknown = present.difference(rules)
            misfits: list[tuple[dict, str]] = []
            if records and not self._required <= present:
                self._no_key(min(self._required - present))
            for key in present.intersection(rules):
                rule = rules[key]
                try:  # most fields are on every record: a C-speed column
                    column = list(map(operator.itemgetter(key), records))
                except KeyError:
                    if key in self._required:
                        self._no_key(key)
                    column = [r[key] for r in records if key in r]
                if set(map(type, column)) <= rule.types and (not rule.slow
                                                              or rule.column_fits(column)):
                    continue
                misfits += [(r, key) for r in records if key in r and not rule.fits(r[key])]
            if unknown:
                misfits += self._new_fields(unknown, records)
            for record, key in misfits:
                self._settle(record, key)
            if self._utc:
                self._write_in_utc(records, present)
            self._learning = False
        return records

    def _write_in_utc(self, records: list[dict], present: set[str]) -> None:
        """Every date-time value in UTC; a value already there (most) is left as it is."""
        rules = self._rules
        for key in present:
            rule = rules.get(key)
            if rule is None or not rule.datetime:
                continue
            for record in records:
                value = record.get(key)
                if type(value) is str and not value.endswith(UTC_ZONES):  # most are
                    record[key] = in_utc(value)

    def _learn_provisional(self, records: list[dict]) -> None:
        learned = infer_properties(records, only=self._provisional)
        for name in sorted(self._provisional):
            prop = learned.get(name)
            if prop is not None:
                keep_null = name == self._cursor and self._cursor not in self._required
                prop["type"] = [k for k in prop["type"] if k != "null" or keep_null]
                self._add(name, prop)
                self._logger.info("Stream '%s': key field '%s' is %s (learned from its first "
                                  "page).", self.stream, name, _describe(prop))
        self._provisional.clear()

    def _settle_missing_cursor(self, records: list[dict]) -> list[dict]:
        """Records whose bookmark value is null, missing or empty, by `on_cursor_value_missing`:
        written with a null (the bookmark stays), dropped, or the run stops."""
        cursor = self._cursor
        values = [r.get(cursor) for r in records]
        if None not in values and "" not in values:
            return records
        missing = sum(map(is_blank, values))
        if self._on_missing == "fail":
            msg = (f"{self.stream}: a record has no value in '{cursor}' (the bookmark field: "
                   "null, missing or empty) and on_cursor_value_missing is fail")
            raise FatalAPIError(msg)
        self.missing_cursor += missing
        if self._on_missing == "exclude":
            return [r for r, v in zip(records, values, strict=True) if not is_blank(v)]
        for record, value in zip(records, values, strict=True):
            if is_blank(value):
                record[cursor] = None
        return records

    def _allow_null(self, name: str) -> None:
        """A field that may be null from now on (the schema only grows)."""
        prop = self.schema["properties"].get(name)
        required = self.schema.get("required")
        if required and name in required:
            self.schema["required"] = [n for n in required if n != name]
            self.version += 1
        if prop is None or prop.get(PROVISIONAL):
            return
        kinds = prop.get("type")
        kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
        if kinds and "null" not in kinds:
            self._add(name, {**prop, "type": [*kinds, "null"]})

    def _no_key(self, key: str) -> t.NoReturn:
        msg = f"{self.stream}: a record has no '{key}' (a key or bookmark field)"
        raise FatalAPIError(msg)

    def snapshot(self) -> tuple[int, dict]:
        with self._lock:
            return self.version, copy.deepcopy(self.schema)

    # --- what does not fit ------------------------------------------------------------

    def _new_fields(self, names: set[str], records: list[dict]) -> list[tuple[dict, str]]:
        ordered = [n for n in dict.fromkeys(k for r in records for k in r) if n in names]
        if self._contract == "freeze":
            name = ordered[0]
            value = next(r[name] for r in records if name in r)
            self._stop(name, "no such field in the catalog", json_kind(value) or "null")
        if self._contract == "discard_value":
            for record in records:
                for name in names.intersection(record):
                    del record[name]
            for name in ordered:
                self._tell(name, "new", "is not in the catalog; its values are dropped "
                                        "(schema_contract discard_value)")
            return []
        learned = infer_properties(records, only=names)
        for name in ordered:
            self._add(name, learned[name])
            if not self._learning:
                self._tell(name, "new", f"is new; added to the schema as "
                                        f"{_describe(learned[name])}")
        if self._learning:
            self._logger.info("Stream '%s': learned %d fields from its first page: %s.",
                              self.stream, len(ordered), ", ".join(ordered))
        rules = self._rules
        return [(r, n) for r in records for n in ordered
                if n in r and not rules[n].fits(r[n])]

    def _settle(self, record: dict, key: str) -> None:
        rule = self._rules[key]
        value = record[key]
        received = json_kind(value) or "null"
        expected = "/".join(rule.kinds) or "any"
        if self._contract == "freeze":
            self._stop(key, expected, received)
        ok, converted = coerce(value, rule)
        if ok:
            record[key] = converted
            self._tell(key, f"coerce:{received}",
                       f"is {expected} in the schema; {received} values are converted to it")
            return
        if key in self._fixed:
            msg = (f"{self.stream}: field '{key}' (a key or bookmark field) must be {expected}, "
                   f"the API sent {received}")
            raise FatalAPIError(msg)
        del record[key]
        if self._contract == "discard_value":
            self._tell(key, f"drop:{received}", f"is {expected} in the schema; {received} "
                       "values are dropped (schema_contract discard_value)")
            return
        if value is None:
            return  # a null where the schema forbids one: the field is absent instead
        suffix, types = VARIANTS[received]
        variant = f"{key}__v_{suffix}"
        if variant not in self._rules:
            self._add(variant, {"type": types})
        record[variant] = value
        self._tell(key, f"variant:{received}", f"is {expected} in the schema; {received} "
                   f"values go to the new field '{variant}'")

    # --- schema changes ---------------------------------------------------------------

    def _add(self, name: str, prop: dict) -> None:
        self.schema["properties"][name] = prop
        self._rules = {**self._rules, name: rule_for(prop)}
        self._memory[name] = prop
        self.version += 1

    def _remember(self, fixed: set[str]) -> None:
        """A field keeps the type it was first given, whatever a later discovery infers from
        a different first page: a column's type never changes in the target. Fields the
        memory lacks join it as the schema in force has them."""
        properties = self.schema["properties"]
        for name, prop in self._memory.items():
            if name not in fixed and properties.get(name) != prop:
                properties[name] = copy.deepcopy(prop)
                self.version = 1
        for name, prop in properties.items():
            if name not in self._memory and not prop.get(PROVISIONAL):
                self._memory[name] = copy.deepcopy(prop)

    def _tell(self, field: str, change: str, what: str) -> None:
        if (field, change) not in self._told:
            self._told.add((field, change))
            self._logger.warning("Stream '%s': field '%s' %s.", self.stream, field, what)

    def _stop(self, field: str, expected: str, received: str) -> t.NoReturn:
        msg = (f"{self.stream}: field '{field}' expected {expected}, received {received} "
               "(schema_contract is freeze)")
        raise SchemaContractError(msg)


def _describe(prop: dict) -> str:
    kinds = [k for k in prop.get("type", []) if k != "null"]
    text = "/".join(kinds) or "any"
    return f"{text} ({prop['format']})" if "format" in prop else text
