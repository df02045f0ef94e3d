"""The tables a sync writes, one per stream, as the assets of the code location see them.

The built-in streams come from the shipped catalog (`catalog/tap-analytics.json`, written
by `python -m scripts.plugin_definition` from the tap's own stream table), so the code
location imports no tap; the user-declared resources from the tenants file (each account's
`resources` setting). A `TableTranslator` names each table's asset key, group and owners,
as Dagster's ELT integrations' translators do.
"""

from __future__ import annotations

import functools
import json
import os
import typing as t
from dataclasses import dataclass
from pathlib import Path

from orchestrate.tenants import ROOT, Tenant, resource_entries

CATALOG = ROOT / "catalog" / "tap-analytics.json"


@dataclass(frozen=True)
class Table:
    name: str  # the stream's name, the table's name in each account's schema
    key: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]  # (name, JSON Schema type) of the declared fields
    declared: bool = False  # a user-declared resource: not every account has it


@functools.cache
def _catalog_tables(path: Path) -> tuple[Table, ...]:
    streams = json.loads(path.read_text())["streams"]
    return tuple(sorted((_table(s) for s in streams), key=lambda table: table.name))


def _table(stream: t.Mapping[str, t.Any]) -> Table:
    top = next((m["metadata"] for m in stream.get("metadata", []) if not m["breadcrumb"]), {})
    key = tuple(stream.get("key_properties") or top.get("table-key-properties") or ())
    columns = tuple((name, column_type(spec))
                    for name, spec in stream["schema"].get("properties", {}).items())
    return Table(stream["tap_stream_id"], key, columns)


def column_type(spec: t.Mapping[str, t.Any]) -> str:
    """`string`, `integer`, `timestamp`...: the JSON Schema type without `null`."""
    kinds = spec.get("type", "string")
    kinds = [k for k in ([kinds] if isinstance(kinds, str) else kinds) if k != "null"]
    kind = kinds[0] if len(kinds) == 1 else "variant"
    return "timestamp" if spec.get("format") == "date-time" else kind


def declared_resources(tenants: t.Iterable[Tenant]) -> list[Table]:
    """The resources some account declares (its `resources` setting)."""
    found: dict[str, Table] = {}
    for tenant in tenants:
        for entry in resource_entries(tenant.settings.get("resources")):
            name, key = entry.get("name"), entry.get("primary_key") or "id"
            if isinstance(name, str) and name not in found:
                found[name] = Table(name, (key,) if isinstance(key, str) else tuple(key), (),
                                    declared=True)
    return list(found.values())


def tables(tenants: t.Iterable[Tenant], catalog: Path = CATALOG) -> list[Table]:
    builtin = _catalog_tables(catalog)
    names = {table.name for table in builtin}
    return [*builtin, *(r for r in declared_resources(tenants) if r.name not in names)]


class TableTranslator:
    """How a table becomes an asset: subclass it to name keys, groups and owners. The key's
    last part stays the stream's name (the job selects streams by it). The defaults read
    `TAP_ANALYTICS_FLEET_KEY_PREFIX` (`tap_analytics`; `/` separates parts),
    `TAP_ANALYTICS_FLEET_GROUP` (`tap_analytics`) and `TAP_ANALYTICS_FLEET_OWNERS`
    (comma-separated: `team:data`, `someone@example.com`)."""

    def __init__(self, environ: t.Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    def key_prefix(self, table: Table) -> list[str]:
        prefix = self.environ.get("TAP_ANALYTICS_FLEET_KEY_PREFIX") or "tap_analytics"
        return [part for part in prefix.split("/") if part]

    def group(self, table: Table) -> str:
        return self.environ.get("TAP_ANALYTICS_FLEET_GROUP") or "tap_analytics"

    def owners(self, table: Table) -> list[str]:
        owners = self.environ.get("TAP_ANALYTICS_FLEET_OWNERS") or ""
        return [owner.strip() for owner in owners.split(",") if owner.strip()]
