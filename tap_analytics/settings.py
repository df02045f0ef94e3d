"""The tap's settings, declared once: `--about`, validation and the Meltano plugin come from here.

`SETTINGS` is the only declaration. `CONFIG_SCHEMA` (what `--about` prints), `parse_settings`
(the one check before any request) and `meltano_settings()` (the plugin definition and
`meltano.yml`) are all derived from it; a test holds the README table to it too.
"""

from __future__ import annotations

import datetime
import decimal
import math
import typing as t
from dataclasses import dataclass

from tap_analytics.redact import register_secret
from tap_analytics.resources import Resource, ResourceError, parse_resources

DEFAULT_BASE_URL = "https://api.example.com"
CONTRACT_MODES = ("evolve", "discard_value", "freeze")
CURSOR_MISSING_MODES = ("include", "exclude", "fail")


class ConfigError(ValueError):
    """A setting with a wrong value; the message names the setting, never a secret."""


@dataclass(frozen=True)
class Setting:
    """One setting. `kind` is Meltano's vocabulary (string, integer, decimal, boolean,
    options, date_iso8601, array, object)."""

    name: str
    kind: str
    description: str
    default: t.Any = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] = ()
    secret: bool = False
    url: bool = False

    @property
    def json_type(self) -> str:
        return {"integer": "integer", "decimal": "number", "boolean": "boolean",
                "array": "array", "object": "object"}.get(self.kind, "string")


SETTINGS: tuple[Setting, ...] = (
    Setting("base_url", "string", "API root, e.g. https://api.example.com (a trailing /v1 is "
            "fine).", default=DEFAULT_BASE_URL, url=True),
    Setting("auth_type", "options", "api_key, or oauth2 for OAuth2 client credentials.",
            default="api_key", choices=("api_key", "oauth2")),
    Setting("api_key", "string", "The API key, for auth_type api_key.", secret=True),
    Setting("api_key_location", "options", "Send the key in the query string or a header.",
            default="query", choices=("query", "header")),
    Setting("api_key_name", "string", "Query parameter or header name that carries the key.",
            default="api_key"),
    Setting("client_id", "string", "OAuth2 client id."),
    Setting("client_secret", "string", "OAuth2 client secret.", secret=True),
    Setting("token_url", "string", "OAuth2 token URL; default {base_url}/oauth/v1/token.",
            url=True),
    Setting("start_date", "date_iso8601", "Earliest updated_at to read on a first incremental "
            "run (ISO 8601; an offset is converted to UTC)."),
    Setting("lookback_seconds", "integer", "Each incremental listing starts this many "
            "seconds before its bookmark, so rows the API makes visible late are still read "
            "(re-read rows merge on the primary key); 0 = from the bookmark.", default=0,
            minimum=0, maximum=31_536_000),
    Setting("page_size", "integer", "Records per page (limit).", default=100, minimum=1,
            maximum=1000),
    Setting("max_retries", "integer", "Retries of a transient failure (attempts = retries + 1).",
            default=3, minimum=0, maximum=100),
    Setting("backoff_factor", "decimal", "Wait before retry n is factor * 2**(n-1) seconds; "
            "0 = no wait; Retry-After wins.", default=2, minimum=0, maximum=3600),
    Setting("request_timeout", "decimal", "Seconds to wait for a response before retrying.",
            default=300, minimum=0, exclusive_minimum=True),
    Setting("max_concurrency", "integer", "Requests in flight at once, across all streams "
            "and listings; 1 = one after another.", default=8, minimum=1, maximum=64),
    Setting("max_requests_per_second", "decimal", "Cap on requests per second across all "
            "streams and threads; unset = no cap.", minimum=0, exclusive_minimum=True),
    Setting("schema_contract", "options", "What a field or type the catalog does not know "
            "does: evolve (add it), discard_value (drop it) or freeze (stop).",
            default="evolve", choices=CONTRACT_MODES),
    Setting("emit_activate_version_messages", "boolean", "Full-table streams end with "
            "ACTIVATE_VERSION, so targets drop rows the API no longer lists.", default=True),
    Setting("discovery_sampling", "boolean", "--discover reads the first page of each "
            "listing to learn its fields; false: no request, the declared fields only (a sync "
            "learns the rest from the pages it reads anyway).", default=True),
    Setting("utc_timestamps", "boolean", "Date-time values go out in UTC (the same instant: "
            "'09:23:20+02:00' is written '07:23:20Z'), so a target that stores a timestamp "
            "without its offset keeps the instant; false: as the API sent them.",
            default=True),
    Setting("on_cursor_value_missing", "options", "A record of an incremental stream whose "
            "updated_at is null, missing or empty: include (write it with a null, the "
            "bookmark stays), exclude (drop it, counted) or fail (stop the run).",
            default="include", choices=CURSOR_MISSING_MODES),
    Setting("resources", "array", "Extra endpoints in the dlt rest_api resource shape."),
    Setting("resource_defaults", "object", "dlt's resource_defaults: merged into every entry "
            "of resources (the entry wins)."),
)
BY_NAME = {setting.name: setting for setting in SETTINGS}


def _json_schema_of(setting: Setting) -> dict:
    prop: dict[str, t.Any] = {"type": [setting.json_type, "null"],
                              "description": setting.description}
    if setting.default is not None:
        prop["default"] = setting.default
    if setting.choices:
        prop["enum"] = list(setting.choices)
    if setting.minimum is not None:
        key = "exclusiveMinimum" if setting.exclusive_minimum else "minimum"
        prop[key] = setting.minimum
    if setting.maximum is not None:
        prop["maximum"] = setting.maximum
    if setting.kind == "date_iso8601":
        prop["format"] = "date-time"
    if setting.kind == "array":
        prop["items"] = {"type": "object", "additionalProperties": True}
    if setting.secret:
        prop |= {"secret": True, "writeOnly": True}
    return prop


CONFIG_SCHEMA: dict = {
    "type": "object",
    "properties": {s.name: _json_schema_of(s) for s in SETTINGS},
}


def meltano_settings() -> list[dict]:
    """The settings as a Meltano plugin definition lists them."""
    out = []
    for setting in SETTINGS:
        # Meltano 4.4.1 turns a decimal setting from the environment into a Decimal it then
        # cannot write (TypeError: not JSON serializable); as text it passes, and the tap
        # reads numbers from text. Every account of the fleet is configured that way.
        kind = "string" if setting.kind == "decimal" else setting.kind
        entry: dict[str, t.Any] = {"name": setting.name, "kind": kind}
        if setting.default is not None:
            entry["value"] = setting.default
        if setting.secret:
            entry["sensitive"] = True
        if setting.choices:
            entry["options"] = [{"label": c, "value": c} for c in setting.choices]
        entry["description"] = setting.description
        out.append(entry)
    return out


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
    lookback_seconds: int
    page_size: int
    max_retries: int
    backoff_factor: float
    request_timeout: float
    max_concurrency: int
    max_requests_per_second: float | None
    schema_contract: str
    emit_activate_version_messages: bool
    discovery_sampling: bool
    utc_timestamps: bool
    on_cursor_value_missing: str
    resources: tuple[Resource, ...]

    @property
    def url_base(self) -> str:
        return api_root(self.base_url)

    @property
    def has_credentials(self) -> bool:
        if self.auth_type == "oauth2":
            return bool(self.client_id and self.client_secret)
        return bool(self.api_key)


def api_root(base_url: str) -> str:
    """Base URL without a trailing /v1: every resource path carries /v1 itself."""
    return base_url.rstrip("/").removesuffix("/v1")


def _fail(name: str, requirement: str) -> t.NoReturn:
    raise ConfigError(f"setting '{name}' {requirement}")


def _string(setting: Setting, value: t.Any) -> str:
    if not isinstance(value, str):
        _fail(setting.name, "must be a string")
    if setting.choices and value not in setting.choices:
        _fail(setting.name, f"must be one of {', '.join(setting.choices)}")
    if setting.url and not value.startswith(("http://", "https://")):
        _fail(setting.name, "must start with http:// or https://")
    if setting.kind == "date_iso8601":
        try:
            datetime.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            _fail(setting.name, "must be an ISO 8601 date-time, e.g. 2026-01-01T00:00:00Z")
    return value


def _number(setting: Setting, value: t.Any) -> int | float:
    """A number as JSON files (Decimal), Meltano (int/float) or the environment (text) give it."""
    integer = setting.kind == "integer"
    wanted = "an integer" if integer else "a number"
    if isinstance(value, str):
        try:
            value = decimal.Decimal(value.strip())
        except decimal.InvalidOperation:
            _fail(setting.name, f"must be {wanted}")
    if isinstance(value, bool) or not isinstance(value, (int, float, decimal.Decimal)):
        _fail(setting.name, f"must be {wanted}")
    if not math.isfinite(value):
        _fail(setting.name, f"must be {wanted}")
    if integer:
        if value != int(value):
            _fail(setting.name, "must be an integer")
        value = int(value)
    else:
        value = float(value)
    low, high = setting.minimum, setting.maximum
    too_low = low is not None and (value <= low if setting.exclusive_minimum else value < low)
    if too_low or (high is not None and value > high):
        if low is not None and high is not None:
            span = f"from {low:g} to {high:g}"
        elif setting.exclusive_minimum:
            span = f"greater than {low:g}"
        else:
            span = f"at least {low:g}"
        _fail(setting.name, f"must be {span}")
    return value


def _boolean(setting: Setting, value: t.Any) -> bool:
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    if not isinstance(value, bool):
        _fail(setting.name, "must be true or false")
    return value


def setting_value(config: t.Mapping[str, t.Any], name: str) -> t.Any:
    """The checked value of one setting, or its default when unset."""
    setting = BY_NAME[name]
    value = config.get(name)
    if value is None or value == "":
        return setting.default
    if setting.kind in ("integer", "decimal"):
        return _number(setting, value)
    if setting.kind == "boolean":
        return _boolean(setting, value)
    if setting.kind in ("array", "object"):
        return value  # checked by their own parsers
    return _string(setting, value)


def parse_settings(config: t.Mapping[str, t.Any], reserved: t.Iterable[str | Resource], *,
                   require_credentials: bool = True) -> Settings:
    """Check every setting; raise ConfigError naming the first bad one.

    Discovery passes `require_credentials=False`: the declared catalog needs no key.
    """
    for secret in (s.name for s in SETTINGS if s.secret):
        register_secret(config.get(secret))
    if config.get("batch_config"):
        _fail("batch_config", "is not supported: the tap writes RECORD messages (its SCHEMA "
              "and table versions travel with them; Singer BATCH files would lose both)")
    values = {s.name: setting_value(config, s.name) for s in SETTINGS
              if s.name not in ("resources", "resource_defaults")}
    if require_credentials:
        if values["auth_type"] == "api_key" and not values["api_key"]:
            _fail("api_key", "is required when auth_type is api_key")
        if values["auth_type"] == "oauth2":
            for name in ("client_id", "client_secret"):
                if not values[name]:
                    _fail(name, "is required when auth_type is oauth2")
    values["token_url"] = values["token_url"] or f"{api_root(values['base_url'])}/oauth/v1/token"
    try:
        resources = parse_resources(config.get("resources"), reserved,
                                    config.get("resource_defaults"))
    except ResourceError as exc:
        raise ConfigError(str(exc)) from None
    return Settings(resources=tuple(resources), **values)


def normalized_config(config: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The config with numbers and booleans as JSON types, for the SDK's own schema check."""
    out = dict(config)
    for setting in SETTINGS:
        if setting.kind in ("integer", "decimal", "boolean") and out.get(setting.name) is not None:
            out[setting.name] = setting_value(config, setting.name)
    return out
