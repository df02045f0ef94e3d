"""The tap's settings: declared once for --about and Meltano, checked once before any request."""

from __future__ import annotations

import datetime
import typing as t
from dataclasses import dataclass

from singer_sdk import typing as th

from tap_analytics.redact import register_secret
from tap_analytics.resources import Resource, ResourceError, parse_resources

DEFAULT_BASE_URL = "https://api.example.com"
AUTH_TYPES = ("api_key", "oauth2")
KEY_LOCATIONS = ("query", "header")


class ConfigError(ValueError):
    """A setting with a wrong value; the message names the setting, never a secret."""


CONFIG_SCHEMA = th.PropertiesList(
    th.Property("base_url", th.StringType, default=DEFAULT_BASE_URL,
                description="API root, e.g. https://api.example.com (a trailing /v1 is fine)."),
    th.Property("auth_type", th.StringType, default="api_key", allowed_values=list(AUTH_TYPES),
                description="api_key or oauth2 (client credentials)."),
    th.Property("api_key", th.StringType, secret=True,
                description="API key, for auth_type api_key."),
    th.Property("api_key_location", th.StringType, default="query",
                allowed_values=list(KEY_LOCATIONS),
                description="Send the key in the query string or in a header."),
    th.Property("api_key_name", th.StringType, default="api_key",
                description="Query parameter or header name that carries the key."),
    th.Property("client_id", th.StringType, description="OAuth2 client id."),
    th.Property("client_secret", th.StringType, secret=True,
                description="OAuth2 client secret."),
    th.Property("token_url", th.StringType,
                description="OAuth2 token URL; default {base_url}/oauth/v1/token."),
    th.Property("start_date", th.DateTimeType,
                description="Earliest updated_at to read on a first incremental run."),
    th.Property("page_size", th.IntegerType, default=100,
                description="Records per page (limit), 1 to 1000."),
    th.Property("max_retries", th.IntegerType, default=3,
                description="Retries of a transient failure (attempts = retries + 1)."),
    th.Property("backoff_factor", th.NumberType, default=2,
                description="Wait before retry n is factor * 2**(n-1) seconds; 0 = no wait."),
    th.Property("request_timeout", th.NumberType, default=300,
                description="Seconds to wait for a response before retrying."),
    th.Property("max_concurrency", th.IntegerType, default=8,
                description="Child listings (segment_people) fetched at once; 1 = sequential."),
    th.Property("max_requests_per_second", th.NumberType,
                description="Cap on requests per second across all streams and threads."),
    th.Property("resources", th.ArrayType(th.ObjectType(additional_properties=True)),
                description="Extra endpoints in the dlt rest_api resource shape."),
).to_dict()


@dataclass(frozen=True)
class Settings:
    base_url: str
    auth_type: str
    api_key: str | None
    api_key_location: str
    api_key_name: str
    client_id: str | None
    client_secret: str | None
    token_url: str
    start_date: str | None
    page_size: int
    max_retries: int
    backoff_factor: float
    request_timeout: float
    max_concurrency: int
    max_requests_per_second: float | None
    resources: tuple[Resource, ...]

    @property
    def url_base(self) -> str:
        return api_root(self.base_url)


def api_root(base_url: str) -> str:
    """Base URL without a trailing /v1: every resource path carries /v1 itself."""
    return base_url.rstrip("/").removesuffix("/v1")


def _fail(name: str, requirement: str) -> t.NoReturn:
    raise ConfigError(f"setting '{name}' {requirement}")


def _string(config: t.Mapping, name: str, default: str | None = None,
            choices: t.Sequence[str] | None = None) -> str | None:
    value = config.get(name)
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        _fail(name, "must be a string")
    if choices and value not in choices:
        _fail(name, f"must be one of {', '.join(choices)}")
    return value


def _number(config: t.Mapping, name: str, default: float | None, *, low: float,
            high: float | None = None, integer: bool = False,
            low_open: bool = False) -> t.Any:
    value = config.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, str):  # environment variables arrive as text
        try:
            value = int(value) if integer else float(value)
        except ValueError:
            _fail(name, f"must be {'an integer' if integer else 'a number'}")
    kind = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        _fail(name, f"must be {'an integer' if integer else 'a number'}")
    too_low = value <= low if low_open else value < low
    if too_low or (high is not None and value > high):
        bound = f"greater than {low:g}" if low_open else f"at least {low:g}"
        span = f"from {low:g} to {high:g}" if high is not None else bound
        _fail(name, f"must be {span}")
    return value


def parse_settings(config: t.Mapping[str, t.Any], reserved_names: t.Iterable[str]) -> Settings:
    """Check every setting; raise ConfigError naming the first bad one."""
    for secret in ("api_key", "client_secret"):
        register_secret(config.get(secret))
    base_url = _string(config, "base_url", DEFAULT_BASE_URL) or DEFAULT_BASE_URL
    if not base_url.startswith(("http://", "https://")):
        _fail("base_url", "must start with http:// or https://")
    auth_type = _string(config, "auth_type", "api_key", AUTH_TYPES) or "api_key"
    api_key = _string(config, "api_key")
    client_id = _string(config, "client_id")
    client_secret = _string(config, "client_secret")
    if auth_type == "api_key" and not api_key:
        _fail("api_key", "is required when auth_type is api_key")
    if auth_type == "oauth2" and not (client_id and client_secret):
        _fail("client_id" if not client_id else "client_secret",
              "is required when auth_type is oauth2")
    token_url = _string(config, "token_url") or f"{api_root(base_url)}/oauth/v1/token"
    if not token_url.startswith(("http://", "https://")):
        _fail("token_url", "must start with http:// or https://")
    start_date = _string(config, "start_date")
    if start_date is not None:
        try:
            datetime.datetime.fromisoformat(start_date.replace("Z", "+00:00"))
        except ValueError:
            _fail("start_date", "must be an ISO 8601 date-time, e.g. 2026-01-01T00:00:00Z")
    try:
        resources = parse_resources(config.get("resources"), reserved_names)
    except ResourceError as exc:
        raise ConfigError(str(exc)) from None
    rate = _number(config, "max_requests_per_second", None, low=0, low_open=True)
    return Settings(
        base_url=base_url,
        auth_type=auth_type,
        api_key=api_key,
        api_key_location=_string(config, "api_key_location", "query", KEY_LOCATIONS) or "query",
        api_key_name=_string(config, "api_key_name", "api_key") or "api_key",
        client_id=client_id,
        client_secret=client_secret,
        token_url=token_url,
        start_date=start_date,
        page_size=_number(config, "page_size", 100, low=1, high=1000, integer=True),
        max_retries=_number(config, "max_retries", 3, low=0, high=100, integer=True),
        backoff_factor=float(_number(config, "backoff_factor", 2, low=0, high=3600)),
        request_timeout=float(_number(config, "request_timeout", 300, low=0, low_open=True)),
        max_concurrency=_number(config, "max_concurrency", 8, low=1, high=64, integer=True),
        max_requests_per_second=float(rate) if rate is not None else None,
        resources=tuple(resources),
    )
