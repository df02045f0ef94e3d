"""Did every value the API served land? Compared the way a data engineer would read them.

A value counts as kept when what landed is the same value in any JSON form: `"42"` and
`42`, an object and its JSON text, a timestamp in any offset and the same instant, a
value moved to a dlt-style variant column (`plan__v_text` beside `plan`). Text from a CSV
file is read as JSON where it parses, and as a Python literal where target-csv wrote one.
"""

from __future__ import annotations

import ast
import datetime
import decimal
import json
import re
import typing as t

from tap_analytics.timestamps import parse_instant

VARIANT = "__v_"
_DECIMAL = re.compile(r"Decimal\('([^']*)'\)")


def norm(value: t.Any) -> t.Any:
    """One canonical form per value: instants, Decimals, dicts and lists of them."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float, decimal.Decimal)):
        return decimal.Decimal(str(value)).normalize()
    if isinstance(value, datetime.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
        return moment.astimezone(datetime.timezone.utc)
    if isinstance(value, dict):
        return {k: norm(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [norm(v) for v in value]
    if isinstance(value, str):
        text = value.strip()
        instant = parse_instant(text.replace(" ", "T", 1)) if len(text) >= 19 else None
        if instant is not None:
            return instant
        if text in ("True", "False"):  # a CSV cell of a boolean
            return text == "True"
        for parse in (json.loads, _python_literal):
            try:
                parsed = parse(text)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if not isinstance(parsed, str) and (parse is json.loads or isinstance(
                    parsed, (dict, list))):
                return norm(parsed)
        return value
    return value


def _python_literal(text: str) -> t.Any:
    """target-csv writes nested values as Python reprs, numbers as Decimal('...')."""
    return ast.literal_eval(_DECIMAL.sub(r"\1", text))


def landed_values(row: t.Mapping[str, t.Any], field: str) -> list[t.Any]:
    """The field's own column, then its variant columns."""
    values = [row.get(field)]
    values += [v for k, v in row.items() if k.startswith(field + VARIANT)]
    return values


def is_kept(original: t.Any, row: t.Mapping[str, t.Any], field: str) -> bool:
    want = norm(original)
    found = [norm(v) for v in landed_values(row, field)]
    if want is None:
        return all(v in (None, "") for v in found)  # CSV writes null as an empty cell
    return want in found


def missing_values(served: t.Mapping[str, list[dict]], landed: t.Mapping[str, list[dict]],
                   keys: t.Mapping[str, t.Sequence[str]]) -> list[str]:
    """What did not land: missing records, and values not kept, one line each."""
    problems = []
    for stream, records in served.items():
        key = keys[stream]
        rows = {tuple(str(r[k]) for k in key): r for r in landed.get(stream, [])}
        for record in records:
            ident = tuple(str(record[k]) for k in key)
            row = rows.get(ident)
            if row is None:
                problems.append(f"{stream} {ident}: record missing")
                continue
            for field, value in record.items():
                if not is_kept(value, row, field):
                    problems.append(f"{stream} {ident} {field}: served {value!r}, landed "
                                    f"{landed_values(row, field)!r}")
    return problems
