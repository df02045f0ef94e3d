"""Stream schemas: the fields API.md fixes, merged with those the live API shows.

The schema files under `schemas/` hold only what the contract fixes (keys, bookmark
fields, the few named fields). Everything else is learned from the first page of each
listing (for a child, the first parent's listing) and merged in, declared fields
winning. Without credentials, or when the API cannot be reached, the declared fields
stand alone and the sync adds the rest as they arrive (see `conform.py`).
"""

from __future__ import annotations

import json
import typing as t
from concurrent.futures import ThreadPoolExecutor
from importlib import resources as package_files

import requests
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

from tap_analytics.redact import redact
from tap_analytics.schema_inference import PROVISIONAL, infer_properties, merge_schema

if t.TYPE_CHECKING:
    from tap_analytics.client import AnalyticsStream
    from tap_analytics.resources import Resource



def declared_schema(resource: Resource, builtin: bool) -> dict:
    """What is known without asking the API."""
    if builtin:
        text = package_files.files("tap_analytics").joinpath(
            "schemas", f"{resource.name}.json").read_text()
        return json.loads(text)
    schema = json.loads(json.dumps(resource.schema)) if resource.schema is not None else {
        "type": "object", "properties": {}}
    properties = schema.setdefault("properties", {})
    fixed = [*resource.primary_key, *([resource.replication_key] if resource.replication_key
                                      else [])]
    for name in fixed:
        properties.setdefault(name, {"type": "string", PROVISIONAL: True})
    # the bookmark field may be null (on_cursor_value_missing): only the key is required
    schema.setdefault("required", [n for n in resource.primary_key if n in properties])
    return schema


class _Unreachable(Exception):
    """The API cannot be asked at all (no connection, or the credentials are refused)."""


def sample_schemas(tap: t.Any, streams: list[AnalyticsStream]) -> None:
    """Merge what the first page of each listing shows into each stream's schema."""
    logger = tap.logger
    if not tap.settings.has_credentials:
        logger.warning("Discovery did not sample the API (no credentials configured): the "
                       "catalog lists the declared fields only; a sync adds the others.")
        return
    by_name = {s.name: s for s in streams}
    parents = [s for s in streams if s.resource.parent is None]
    children = [s for s in streams if s.resource.parent is not None]
    first_pages: dict[str, list[dict]] = {}
    workers = max(1, min(tap.settings.max_concurrency, len(parents)))
    with ThreadPoolExecutor(workers, thread_name_prefix="discover") as pool:
        try:
            for name, page in pool.map(lambda s: (s.name, _first_page(s, None)), parents):
                first_pages[name] = page
            contexts = []
            for child in children:
                spec = child.resource.parent
                parent_page = first_pages.get(spec.resource) or []
                first = next((r for r in parent_page if spec.field in r), None)
                if first is not None:
                    contexts.append((child, {spec.placeholder: first[spec.field]}))
            for name, page in pool.map(lambda c: (c[0].name, _first_page(*c)), contexts):
                first_pages[name] = page
        except _Unreachable as exc:
            logger.warning("Discovery could not sample the API (%s): the catalog lists the "
                           "declared fields only; a sync adds the others.", exc)
            return
    learned = 0
    for name, page in first_pages.items():
        stream = by_name[name]
        if page is None:
            continue
        fields = infer_properties(page)
        declared = stream.schema["properties"]
        for key, prop in declared.items():
            if prop.pop(PROVISIONAL, False) and key in fields:
                nullable = key == stream.replication_key
                declared[key] = {**fields[key], "type": [k for k in fields[key]["type"]
                                                         if k != "null" or nullable]}
        learned += sum(1 for key in fields if key not in declared)
        stream.discovered_schema = merge_schema(stream.schema, fields)
    logger.info("Discovery sampled the first page of %d listings and learned %d fields "
                "beyond the declared ones.", len(first_pages), learned)


def _first_page(stream: AnalyticsStream, context: dict | None) -> list[dict] | None:
    try:
        for page in stream.request_pages(context, conform=False):
            return page
        return []
    except (requests.ConnectionError, requests.Timeout, RetriableAPIError) as exc:
        raise _Unreachable(str(exc).splitlines()[0]) from None
    except FatalAPIError as exc:
        if " answered 401 " in str(exc):
            raise _Unreachable(str(exc)) from None
        reason = str(exc)
    except Exception as exc:  # discovery is best effort: one stream's oddity is not fatal
        reason = f"{type(exc).__name__}: {exc}"
    stream.logger.warning("Discovery could not sample '%s' (%s): its declared fields only.",
                          stream.name, redact(reason.splitlines()[0] if reason else ""))
    return None
