"""Declarative resource definitions, in the dlt `rest_api_source` shape of the seeds.

One parser reads both the built-in streams (declared in `streams.py`) and the
user-declared entries of the `resources` setting, so an endpoint is a few lines of
data, not a module.
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass, field

PAGINATOR_TYPES = ("offset", "cursor", "single_page")
DEFAULT_PRIMARY_KEY = ("id",)


class ResourceError(ValueError):
    """A resource declaration that cannot be used; the message names the entry."""


@dataclass(frozen=True)
class PaginatorSpec:
    type: str = "single_page"
    limit: int | None = None
    limit_param: str = "limit"
    offset_param: str = "offset"
    total_path: str = "total"
    cursor_param: str = "after"
    cursor_path: str = "paging.next.after"


@dataclass(frozen=True)
class ParentSpec:
    """The dlt `resolve` parameter: one child listing per record of `resource`."""

    resource: str
    field: str
    placeholder: str


@dataclass(frozen=True)
class Resource:
    name: str
    path: str
    data_selector: tuple[str, ...] | None  # None: the body itself is the list
    paginator: PaginatorSpec = field(default_factory=PaginatorSpec)
    primary_key: tuple[str, ...] = DEFAULT_PRIMARY_KEY
    replication_key: str | None = None
    incremental_param: str | None = None
    params: t.Mapping[str, t.Any] = field(default_factory=dict)
    parent: ParentSpec | None = None
    schema: t.Mapping[str, t.Any] | None = None

    @classmethod
    def from_dlt(cls, entry: t.Mapping[str, t.Any], where: str | None = None,
                 known: t.Iterable[str] = ()) -> Resource:
        """Build a resource from one dlt-shaped entry; errors name `where`. `known`: the
        resources declared before it, for a path placeholder without a resolve param."""
        where = where or f"resource {entry.get('name', '?')!r}"
        if not isinstance(entry, t.Mapping):
            raise ResourceError(f"{where}: must be an object")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ResourceError(f"{where}: 'name' must be a non-empty string")
        _check_supported(entry, where)
        endpoint = entry.get("endpoint", {})
        if isinstance(endpoint, str):
            endpoint = {"path": endpoint}
        if not isinstance(endpoint, t.Mapping):
            raise ResourceError(f"{where}: 'endpoint' must be an object or a path")
        _check_endpoint(endpoint, where)
        path = endpoint.get("path")
        if not isinstance(path, str) or not path.strip():
            raise ResourceError(f"{where}: 'endpoint.path' is missing")
        path = normalize_path(path)
        params, replication_key, incremental_param, parent = _split_params(
            endpoint.get("params", {}), where
        )
        if parent is None:
            parent = _implied_parent(path, known, where)
        if parent is not None and replication_key is not None:
            raise ResourceError(f"{where}: a child resource cannot be incremental")
        if parent is not None and f"{{{parent.placeholder}}}" not in path:
            raise ResourceError(
                f"{where}: path must contain {{{parent.placeholder}}} for its parent"
            )
        schema = entry.get("schema")
        if schema is not None and not isinstance(schema, t.Mapping):
            raise ResourceError(f"{where}: 'schema' must be a JSON schema object")
        return cls(
            name=name,
            path=path,
            data_selector=_selector(endpoint.get("data_selector", "data"), where),
            paginator=_paginator(endpoint.get("paginator"), where),
            primary_key=_primary_key(entry.get("primary_key", "id"), where),
            replication_key=replication_key,
            incremental_param=incremental_param,
            params=params,
            parent=parent,
            schema=schema,
        )

    def same_endpoint(self, other: Resource) -> bool:
        """Whether two declarations read the same listing the same way."""
        return (self.path, self.data_selector, self.parent) == (
            other.path, other.data_selector, other.parent)


# What of dlt's resource shape the tap takes; anything else is refused by name (silently
# ignoring, say, a `processing_steps` filter would load rows the user meant to drop).
RESOURCE_KEYS = {"name", "endpoint", "primary_key", "write_disposition", "schema"}
ENDPOINT_KEYS = {"path", "data_selector", "paginator", "params", "method"}
WHY = {"write_disposition": "Singer targets merge on the primary key; only 'merge' applies",
       "method": "the API's listings are GET",
       "table_name": "the stream's name is its table; rename it with a stream map",
       "columns": "declare fields in 'schema' (JSON Schema)",
       "auth": "authentication is one for the whole tap (auth_type and its settings)",
       "headers": "requests carry only the tap's own headers"}


def _refuse(where: str, key: str) -> t.NoReturn:
    why = WHY.get(key.rsplit(".", 1)[-1], "the tap does not implement it")
    raise ResourceError(f"{where}: {key!r} is not supported ({why})")


def _check_supported(entry: t.Mapping[str, t.Any], where: str) -> None:
    for key in entry:
        if key not in RESOURCE_KEYS:
            _refuse(where, key)
    disposition = entry.get("write_disposition", "merge")
    if isinstance(disposition, t.Mapping):
        disposition = disposition.get("disposition")
    if disposition != "merge":
        _refuse(where, "write_disposition")


def _check_endpoint(endpoint: t.Mapping[str, t.Any], where: str) -> None:
    for key in endpoint:
        if key not in ENDPOINT_KEYS:
            _refuse(where, f"endpoint.{key}")
    if str(endpoint.get("method", "GET")).upper() != "GET":
        _refuse(where, "endpoint.method")


def _implied_parent(path: str, known: t.Iterable[str], where: str) -> ParentSpec | None:
    """Seed 004's `{{stream_slice.segment_id}}` names no parent: `segment_id` is read as
    the `id` of the resource `segments` (or `segment`), which must be declared before."""
    placeholders = re.findall(r"{(\w+)}", path)
    if not placeholders:
        return None
    if len(placeholders) > 1:
        raise ResourceError(f"{where}: a path takes one parent placeholder, not "
                            f"{', '.join(placeholders)}")
    placeholder = placeholders[0]
    stem, _, field = placeholder.rpartition("_")
    names = set(known)
    for candidate in (f"{stem}s", stem):
        if stem and field and candidate in names:
            return ParentSpec(candidate, field, placeholder)
    raise ResourceError(
        f"{where}: path placeholder {{{placeholder}}} names no parent: add "
        f'"params": {{"{placeholder}": {{"type": "resolve", "resource": "<parent>", '
        f'"field": "<field>"}}}}')


def normalize_path(path: str) -> str:
    """Paths are relative to the API root; every endpoint lives under /v1.

    `{{stream_slice.x}}` (seed 004's template) becomes `{x}`.
    """
    path = path.strip().replace("{{stream_slice.", "{").replace("}}", "}")
    if not path.startswith("/"):
        path = "/" + path
    if not (path == "/v1" or path.startswith("/v1/")):
        path = "/v1" + path
    return path


def _selector(value: t.Any, where: str) -> tuple[str, ...] | None:
    if value in ([], "", "$", None):
        return None
    if not isinstance(value, str):
        raise ResourceError(f"{where}: 'endpoint.data_selector' must be a string or []")
    value = value.removeprefix("$.").removeprefix("$")
    return tuple(part for part in value.split(".") if part)


def _paginator(value: t.Any, where: str) -> PaginatorSpec:
    if value is None:
        return PaginatorSpec()
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, t.Mapping):
        raise ResourceError(f"{where}: 'endpoint.paginator' must be an object or a type name")
    kind = value.get("type")
    if kind not in PAGINATOR_TYPES:
        raise ResourceError(
            f"{where}: paginator type {kind!r} is not one of {', '.join(PAGINATOR_TYPES)}"
        )
    limit = value.get("limit")
    if limit is not None and (
        not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000
    ):
        raise ResourceError(f"{where}: paginator 'limit' must be an integer from 1 to 1000")
    known = {f for f in PaginatorSpec.__dataclass_fields__ if f not in ("type", "limit")}
    options = {}
    for key in known & set(value):
        if not isinstance(value[key], str) or not value[key]:
            raise ResourceError(f"{where}: paginator {key!r} must be a non-empty string")
        options[key] = value[key]
    return PaginatorSpec(type=kind, limit=limit, **options)


def _primary_key(value: t.Any, where: str) -> tuple[str, ...]:
    keys = (value,) if isinstance(value, str) else value
    if not isinstance(keys, (list, tuple)) or not keys or not all(
        isinstance(k, str) and k for k in keys
    ):
        raise ResourceError(f"{where}: 'primary_key' must be a string or a list of strings")
    return tuple(keys)


def _split_params(
    value: t.Any, where: str
) -> tuple[dict[str, t.Any], str | None, str | None, ParentSpec | None]:
    """Separate static query params from dlt's `incremental` and `resolve` params."""
    if not isinstance(value, t.Mapping):
        raise ResourceError(f"{where}: 'endpoint.params' must be an object")
    static: dict[str, t.Any] = {}
    replication_key = incremental_param = None
    parent = None
    for key, param in value.items():
        kind = param.get("type") if isinstance(param, t.Mapping) else None
        if kind == "incremental":
            replication_key = param.get("cursor_path", "updated_at")
            incremental_param = key
        elif kind == "resolve":
            if not param.get("resource") or not param.get("field"):
                raise ResourceError(f"{where}: param {key!r} needs 'resource' and 'field'")
            parent = ParentSpec(param["resource"], param["field"], key)
        elif isinstance(param, (str, int, float, bool)):
            static[key] = param
        else:
            raise ResourceError(f"{where}: param {key!r} has an unsupported value")
    return static, replication_key, incremental_param, parent


def with_defaults(entry: t.Any, defaults: t.Mapping[str, t.Any] | None) -> t.Any:
    """dlt's `resource_defaults` under one entry: the entry wins, objects merge key by key."""
    if not defaults or not isinstance(entry, t.Mapping):
        return entry
    merged = dict(defaults)
    for key, value in entry.items():
        base = merged.get(key)
        if isinstance(base, t.Mapping) and isinstance(value, t.Mapping):
            merged[key] = with_defaults(value, base)
        else:
            merged[key] = value
    return merged


def parse_resources(entries: t.Any, reserved: t.Iterable[str | Resource],
                    defaults: t.Any = None) -> list[Resource]:
    """Parse the `resources` setting (with `resource_defaults`); names must be unique.

    An entry named like a built-in stream (`reserved`) that declares the same endpoint is
    that stream (so a seed's resource list can be pasted as it is); any other use of a
    built-in name is refused.
    """
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ResourceError("setting 'resources' must be a list of resource objects")
    if defaults is not None and not isinstance(defaults, t.Mapping):
        raise ResourceError("setting 'resource_defaults' must be an object")
    builtin = {r if isinstance(r, str) else r.name: r for r in reserved}
    taken = set(builtin)
    parsed: list[Resource] = []
    for index, entry in enumerate(entries):
        where = f"setting 'resources'[{index}]"
        resource = Resource.from_dlt(with_defaults(entry, defaults), where, known=taken)
        same = builtin.get(resource.name)
        if isinstance(same, Resource) and same.same_endpoint(resource):
            builtin.pop(resource.name)  # the built-in stream itself, declared once more
            continue
        if resource.name in taken:
            detail = f" by a built-in stream ({same.path})" if isinstance(same, Resource) else ""
            raise ResourceError(f"{where}: name {resource.name!r} is already used{detail}")
        if resource.parent and resource.parent.resource not in taken:
            raise ResourceError(f"{where}: parent resource {resource.parent.resource!r} is "
                                "not declared before it")
        taken.add(resource.name)
        parsed.append(resource)
    return parsed
