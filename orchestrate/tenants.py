"""The accounts (tenants) of the fleet, declared in one YAML file (`TAP_ANALYTICS_TENANTS`).

    tenants:
      - id: acme              # [a-z0-9_]+, unique; the warehouse schema unless `schema` is set
        secret: tap-analytics-acme  # Kubernetes: the Secret whose variables its run pod gets
        settings:             # any tap-analytics setting; "${VAR}" is read at run time
          base_url: https://api.example.com
          api_key: ${ACME_API_KEY}

The settings a tenant may use, and which are secrets, come from the tap's own plugin
definition (`plugins/extractors/tap-analytics.yml`, generated from its settings), so the
orchestrator needs no import of the tap. A secret written inline is refused: the file is
configuration that lives in Git; its keys live in the environment (or a secret store that
fills it).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import typing as t
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = Path(__file__).resolve().parent / "tenants.example.yml"
PLUGIN = ROOT / "plugins" / "extractors" / "tap-analytics.yml"
NAME = re.compile(r"[a-z0-9_]+\Z")
SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z")  # a Kubernetes object name
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
PREFIX = "TAP_ANALYTICS_"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser where installed


def resource_entries(value: t.Any) -> list[dict]:
    """The entries of a `resources` setting (a list, or its JSON); none when it cannot be
    read (the tap refuses it with its own line when the account runs)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


class TenantError(ValueError):
    """A tenants file or entry that cannot be used; the message is one line, no secret."""


@dataclass(frozen=True)
class Tenant:
    id: str
    schema: str
    settings: t.Mapping[str, t.Any]
    secret: str | None = None  # the Kubernetes Secret of this account's variables

    def environment(self, environ: t.Mapping[str, str]) -> dict[str, str]:
        """The tap's settings as Meltano reads them from the environment, with every
        `${VAR}` filled in from `environ` (the run's, at run time)."""
        out = {}
        for name, value in self.settings.items():
            text = value if isinstance(value, str) else json.dumps(value)
            out[PREFIX + name.upper()] = _expand(text, environ, self.id, name)
        return out

    def references(self) -> set[str]:
        """The environment variables its settings name (`${VAR}`)."""
        return {m.group(1) for value in self.settings.values()
                for m in REFERENCE.finditer(value if isinstance(value, str) else json.dumps(value))}

    def api_host(self, environ: t.Mapping[str, str]) -> str:
        """The host of the account's `base_url` (the plugin's default when unset): accounts
        of one host share its rate limit. A `${VAR}` not set here counts as its own text."""
        url = str(self.settings.get("base_url") or plugin_defaults().get("base_url") or "")
        with contextlib.suppress(TenantError):
            url = _expand(url, environ, self.id, "base_url")
        return (urlsplit(url).hostname or url).lower()


def tenants_file() -> Path:
    return Path(os.environ.get("TAP_ANALYTICS_TENANTS") or EXAMPLE)


@functools.cache
def _plugin_definition() -> dict:
    return yaml.safe_load(PLUGIN.read_text())


def plugin_settings() -> dict[str, bool]:
    """Each setting of the tap, and whether it is a secret."""
    return {s["name"]: bool(s.get("sensitive")) for s in _plugin_definition()["settings"]}


def plugin_defaults() -> dict[str, t.Any]:
    return {s["name"]: s["value"] for s in _plugin_definition()["settings"] if "value" in s}


def load_tenants(path: Path | None = None) -> list[Tenant]:
    """The tenants of the file, parsed again only when it changed (modification time, size
    or inode): a schedule tick asks for every account's tags, once per account."""
    return list(_parsed(*_version(path or tenants_file())))


def tenant_by_id(ident: str, path: Path | None = None) -> Tenant | None:
    return _index(*_version(path or tenants_file())).get(ident)


def _version(path: Path) -> tuple[str, int, int, int]:
    try:
        stat = path.stat()
    except OSError as exc:
        raise TenantError(f"tenants file {path}: cannot be read ({exc.strerror})") from None
    return str(path), stat.st_mtime_ns, stat.st_size, stat.st_ino


@functools.lru_cache(maxsize=4)
def _index(path: str, *version: int) -> dict[str, Tenant]:
    return {t_.id: t_ for t_ in _parsed(path, *version)}


@functools.lru_cache(maxsize=4)
def _parsed(name: str, *_version: int) -> tuple[Tenant, ...]:
    path = Path(name)
    try:
        document = yaml.load(path.read_text(), Loader=_LOADER)
    except OSError as exc:
        raise TenantError(f"tenants file {path}: cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise TenantError(f"tenants file {path}: not YAML ({str(exc).splitlines()[0]})") from None
    entries = (document or {}).get("tenants") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise TenantError(f"tenants file {path}: needs a list under 'tenants'")
    known = plugin_settings()
    tenants: list[Tenant] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        tenant = _tenant(entry, f"tenants file {path}: tenants[{index}]", known)
        if tenant.id in seen:
            raise TenantError(f"tenants file {path}: tenant id {tenant.id!r} appears twice")
        seen.add(tenant.id)
        tenants.append(tenant)
    schemas: set[str] = set()
    for tenant in tenants:
        if tenant.schema in schemas:
            raise TenantError(f"tenants file {path}: schema {tenant.schema!r} is used by two "
                              "tenants")
        schemas.add(tenant.schema)
    return tuple(tenants)


def _tenant(entry: t.Any, where: str, known: dict[str, bool]) -> Tenant:
    if not isinstance(entry, dict):
        raise TenantError(f"{where}: must be a mapping with 'id' and 'settings'")
    ident = entry.get("id")
    if not isinstance(ident, str) or not NAME.match(ident):
        raise TenantError(f"{where}: 'id' must match [a-z0-9_]+")
    where = f"{where} ({ident})"
    unknown = set(entry) - {"id", "schema", "secret", "settings"}
    if unknown:
        raise TenantError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    schema = entry.get("schema", ident)
    if not isinstance(schema, str) or not NAME.match(schema):
        raise TenantError(f"{where}: 'schema' must match [a-z0-9_]+")
    secret = entry.get("secret")
    if secret is not None and not (isinstance(secret, str) and SECRET_NAME.match(secret)):
        raise TenantError(f"{where}: 'secret' must be the name of a Kubernetes Secret "
                          "([a-z0-9.-], at most 253)")
    settings = entry.get("settings") or {}
    if not isinstance(settings, dict):
        raise TenantError(f"{where}: 'settings' must be a mapping")
    for name, value in settings.items():
        if name not in known:
            raise TenantError(f"{where}: {name!r} is not a tap-analytics setting")
        if known[name] and value not in (None, "") and not (
                isinstance(value, str) and REFERENCE.fullmatch(value.strip())):
            raise TenantError(f"{where}: setting {name!r} is a secret written inline; write "
                              f"it as ${{VAR}} and set VAR in the environment")
    return Tenant(ident, schema, settings, secret)


def _expand(text: str, environ: t.Mapping[str, str], tenant: str, setting: str) -> str:
    def value(match: re.Match) -> str:
        name = match.group(1)
        if name not in environ:
            raise TenantError(f"tenant {tenant!r}: setting {setting!r} needs the environment "
                              f"variable {name}, which is not set")
        return environ[name]

    return REFERENCE.sub(value, text)
