"""A tap wired to a requests-mock base URL, for unit tests."""

from __future__ import annotations

import typing as t
from urllib.parse import parse_qs, urlparse

from tap_analytics.tap import TapAnalytics

BASE = "https://api.test"


def declared_catalog(config: dict) -> dict:
    """The catalog discovery gives before credentials: declared fields, no request made."""
    keyless = {k: v for k, v in config.items() if k not in ("api_key", "client_secret")}
    return TapAnalytics(config=keyless, validate_config=False, setup_mapper=False).catalog_dict


def make_tap(**config: t.Any) -> TapAnalytics:
    """A tap with the declared catalog, so that only the requests a test expects are made."""
    settings = {"base_url": BASE, "api_key": "unit-key-000", "backoff_factor": 0,
                "emit_activate_version_messages": False, **config}
    return TapAnalytics(config=settings, catalog=declared_catalog(settings), setup_mapper=False)


def stream_of(tap: TapAnalytics, name: str) -> t.Any:
    return tap.streams[name]


def read_stream(tap: TapAnalytics, name: str) -> list[dict]:
    """Every record of one stream; then the tap's page pool is stopped, so that no page
    fetched ahead (past a listing's end) reaches the next test's mock."""
    try:
        return list(stream_of(tap, name).get_records(None))
    finally:
        tap.page_pool.shutdown(wait=True)


def query(request: t.Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(request.url).query).items()}
