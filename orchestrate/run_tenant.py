"""One account's `meltano run tap-analytics target-postgres`, run by the asset's step in
Dagster's run worker itself (no process between them: a small account's run is mostly
start-up, and every process started costs it).

`sync` holds the account's lock (`orchestrate.account_lock`: one sync per account, whatever
launched it) for the whole run; builds the run's environment from an allow list (what
Meltano, the tap and the target need), the tenant's own settings and variables, its schema
and its state id (no other account's key, no `TAP_ANALYTICS_*` setting of the
orchestrator's); writes every line of the run to the compute log and its warnings and
errors to Dagster's run log; and returns rows per table on success, or the line that
explains a failure, with whether a retry can help.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import typing as t
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg

from orchestrate.account_lock import (
    AccountBusy,
    LockWatch,
    account_lock,
    host_concurrency,
    lock_check,
    when_busy,
)
from orchestrate.process_group import STOP_GRACE, Guard, meltano_process
from orchestrate.reasons import FailureReason
from orchestrate.run_report import TableFacts, Tally, bookmarks, table_facts
from orchestrate.tenants import (
    PREFIX,
    ROOT,
    Tenant,
    TenantError,
    resource_entries,
    tenant_by_id,
)

STATE_SCHEMA = "meltano"
DEFAULT_MAX_RUNTIME = 4 * 3600  # seconds: a run that hangs gives its slot back
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Not worth a retry: the account's own key, access or configuration is wrong.
FINAL = (" answered 401 ", " answered 403 ", " answered 404 ", "Invalid configuration",
         "needs the environment variable", "redirect to another host")
# What of the orchestrator's environment a run's Meltano, tap and target inherit: nothing
# else (the orchestrator holds every account's key, its own database's password...)
PASSED = {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR",
          "TERM", "NO_COLOR", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE", "HTTP_PROXY",
          "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "SSL_CERT_FILE",
          "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"}
PASSED_PREFIXES = ("LC_", "MELTANO_", "TARGET_POSTGRES_")
PASS_ENV = "TAP_ANALYTICS_FLEET_PASS_ENV"  # more names to pass, comma-separated (NAME or NAME*)
SET_HERE = {"MELTANO_STATE_ID", "MELTANO_DATABASE_URI", "MELTANO_SYS_DIR_ROOT",
            "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA"}


def meltano_command() -> str:
    given = os.environ.get("TAP_ANALYTICS_MELTANO")
    if given:
        return given
    local = ROOT / ".venv-meltano" / "bin" / "meltano"
    return str(local) if local.exists() else "meltano"


def project_dir() -> Path:
    return Path(os.environ.get("TAP_ANALYTICS_MELTANO_PROJECT") or ROOT)


def warehouse(environ: t.Mapping[str, str]) -> dict[str, t.Any]:
    """The target's connection, from target-postgres' own environment variables."""
    return {"host": environ.get("TARGET_POSTGRES_HOST", "localhost"),
            "port": int(environ.get("TARGET_POSTGRES_PORT", "5432")),
            "user": environ.get("TARGET_POSTGRES_USER"),
            "password": environ.get("TARGET_POSTGRES_PASSWORD"),
            "dbname": environ.get("TARGET_POSTGRES_DATABASE")}


def state_database_uri(environ: t.Mapping[str, str]) -> tuple[str, bool]:
    """Meltano's system database: the user's `MELTANO_DATABASE_URI`, else the schema
    `meltano` of the warehouse database (True: ours to create)."""
    given = environ.get("MELTANO_DATABASE_URI")
    if given:
        return given, False
    w = warehouse(environ)
    auth = quote(w["user"] or "", safe="")
    if w["password"]:
        auth += ":" + quote(w["password"], safe="")
    uri = (f"postgresql+psycopg://{auth}@{w['host']}:{w['port']}/{w['dbname']}"
           f"?options=-csearch_path%3D{STATE_SCHEMA}")
    return uri, True


def passed(name: str, environ: t.Mapping[str, str]) -> bool:
    """Whether a variable of the orchestrator's environment reaches the run's processes."""
    if name in SET_HERE:
        return False
    if name in PASSED or name.startswith(PASSED_PREFIXES):
        return True
    extra = [p.strip() for p in (environ.get(PASS_ENV) or "").split(",") if p.strip()]
    return any(name == p or (p.endswith("*") and name.startswith(p[:-1])) for p in extra)


def run_environment(tenant_env: dict[str, str], schema: str, environ: t.Mapping[str, str],
                    own: t.Collection[str] = ()) -> dict[str, str]:
    """The run's environment: the allow-listed part of the orchestrator's, the variables the
    tenant refers to (`own`), its settings, schema and state database."""
    env = {k: v for k, v in environ.items() if passed(k, environ) or k in own}
    env.update(tenant_env)
    env["TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA"] = schema
    catalog = environ.get("TAP_ANALYTICS_FLEET_CATALOG")
    if catalog:  # a shipped catalog: Meltano starts no discovery (no process, no request)
        env["TAP_ANALYTICS__CATALOG"] = catalog
    env["MELTANO_DATABASE_URI"] = state_database_uri(environ)[0]
    # runs side by side share the installed plugins: none may reinstall one under another
    # (Meltano 4.4 ignores this setting in `meltano run`; `_run` passes --no-install too)
    env["MELTANO_AUTO_INSTALL"] = "false"
    env.setdefault("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false")
    env.setdefault("MELTANO_CLI_DISABLE_VERSION_CHECK", "1")
    return env


def prepare_state_database(env: dict[str, str], environ: t.Mapping[str, str]) -> None:
    """Create the `meltano` schema and migrate it once, under a lock: runs starting side by
    side on an empty database would otherwise race through Meltano's migrations."""
    if not state_database_uri(environ)[1]:
        return
    with psycopg.connect(**warehouse(environ), autocommit=True) as con:
        con.execute("select pg_advisory_lock(hashtext('tap-analytics-meltano-state'))")
        try:
            con.execute(f"create schema if not exists {STATE_SCHEMA}")
            migrated = con.execute(
                "select 1 from information_schema.tables where table_schema = %s and "
                "table_name = 'alembic_version'", (STATE_SCHEMA,)).fetchone()
            if not migrated:
                subprocess.run([meltano_command(), "upgrade", "database"], env=env,
                               cwd=project_dir(), check=True, capture_output=True)
        finally:
            con.execute("select pg_advisory_unlock(hashtext('tap-analytics-meltano-state'))")


@contextlib.contextmanager
def private_system_dir(project: Path) -> t.Iterator[Path]:
    """A `.meltano` of the run's own: `meltano run` writes each plugin's config (the key
    included) and catalog to `.meltano/run/<plugin>/`, one path for every run of the
    project, so two accounts side by side would read each other's. It shares only the
    installed plugins, and is removed with the secrets in it when the run ends."""
    shared = project / ".meltano"
    private = Path(tempfile.mkdtemp(prefix="tap-analytics-run-"))
    try:
        for kind in ("extractors", "loaders", "utilities", "mappers"):
            if (shared / kind).exists():
                (private / kind).symlink_to((shared / kind).resolve())
        yield private
    finally:
        shutil.rmtree(private, ignore_errors=True)


def refuse_shared_settings(project: Path) -> None:
    """Meltano reads the project's `.env` into every run: a tap setting there would reach
    every account that leaves it out (another account's key, say)."""
    dotenv = project / ".env"
    if not dotenv.exists():
        return
    for line in dotenv.read_text().splitlines():
        name = line.split("=", 1)[0].strip().removeprefix("export ").strip()
        if name.startswith(PREFIX) and "=" in line and not line.lstrip().startswith("#"):
            raise TenantError(f"the project's .env sets {name}: every account would "
                              "inherit it; move it into the tenants file")


class Log(t.Protocol):
    def warning(self, msg: str) -> None: ...
    def error(self, msg: str) -> None: ...
    def info(self, msg: str) -> None: ...


def forward(log: Log, line: str) -> None:
    """Warnings and errors of every part into Dagster's run log (an event each: the rest,
    progress, metrics and the target's SQL, stay in the compute log, or each line would cost
    every run an event write)."""
    head = line[:80].lower()
    if "error" in head:
        log.error(line)
    elif "warn" in head and "Force option is enabled" not in line:
        log.warning(line)


@dataclass(frozen=True)
class Outcome:
    schema: str = ""
    failed: str | None = None  # the line that explains, when the run failed
    retry: bool = False  # whether another try can help
    tally: Tally | None = None  # rows written, and how each stream ended
    tables: dict[str, TableFacts] = field(default_factory=dict)  # the schema's tables
    bookmarks: dict[str, str] = field(default_factory=dict)


def declare_only(env: dict[str, str], streams: t.Collection[str]) -> None:
    """A subset's run declares only the resources it selects (and the declared parents they
    read from): a declared resource the shipped catalog does not list is synced whenever
    declared (the tap's fallback), so Meltano's select filter cannot leave it out."""
    name = PREFIX + "RESOURCES"
    entries = resource_entries(env.get(name))
    if not entries:
        return
    by_name = {entry.get("name"): entry for entry in entries}
    keep: set[str] = set()
    todo = [stream for stream in streams if stream in by_name]
    while todo:
        stream = todo.pop()
        if stream not in keep:
            keep.add(stream)
            endpoint = by_name[stream].get("endpoint")
            params = endpoint.get("params") or {} if isinstance(endpoint, dict) else {}
            todo += [p["resource"] for p in params.values() if isinstance(p, dict)
                     and p.get("type") == "resolve" and p.get("resource") in by_name]
    env[name] = json.dumps([entry for entry in entries if entry.get("name") in keep])


def sync(tenant_id: str, tenants_path: Path, log: Log, run_name: str = "",
         streams: t.Collection[str] | None = None) -> Outcome:
    """One account's sync: every stream, or only `streams` (the others' tables and
    bookmarks are left as they are)."""
    try:
        tenant = tenant_by_id(tenant_id, tenants_path)
        if tenant is None:
            raise TenantError(f"tenant {tenant_id!r} is no longer in the tenants file")
        env = run_environment(tenant.environment(os.environ), tenant.schema, os.environ,
                              tenant.references())
        refuse_shared_settings(project_dir())
        if streams is not None:  # applied by Meltano to the shipped catalog too
            env["TAP_ANALYTICS__SELECT_FILTER"] = json.dumps(sorted(streams))
            declare_only(env, streams)
        busy = when_busy(os.environ)
        check = lock_check(os.environ)
        host = (tenant.api_host(env), host_concurrency(os.environ))
    except (TenantError, ValueError) as exc:
        return Outcome(failed=str(exc))
    prepare_state_database(env, os.environ)
    holder = f"tap-analytics {run_name or 'sync'} (pid {os.getpid()} on {socket.gethostname()})"
    limit = max_runtime(os.environ)
    try:
        with account_lock(tenant.id, env["MELTANO_DATABASE_URI"], holder, log, busy=busy,
                          timeout=limit, host=host) as state:
            return _run(tenant, env, log, limit, state, check)
    except (AccountBusy, ValueError) as exc:
        return Outcome(tenant.schema, failed=str(exc))
    except psycopg.OperationalError as exc:  # the state database is down: worth a retry
        return Outcome(tenant.schema, retry=True, failed="the state database cannot be "
                       f"reached for the account's lock ({str(exc).strip().splitlines()[-1]})")


def _run(tenant: Tenant, env: dict[str, str], log: Log, limit: float,
         state: psycopg.Connection, check: float) -> Outcome:
    # --force, under the account's lock: a job Meltano still marks running is one whose run
    # died (killed, or its database restarted) and must not lock the account out until its
    # heartbeat is 5 minutes old
    # --no-install: Meltano 4.4's `run` installs whatever MELTANO_AUTO_INSTALL says, and the
    # editable tap's pip_url names the project's path, so a project at another path than the
    # one it was installed from would reinstall the shared tap under every other run
    command = [meltano_command(), "run", "--no-install", "--force", "--state-id-suffix",
               tenant.id, "tap-analytics", "target-postgres"]
    log.info(f"{' '.join(command[1:])} (schema {tenant.schema})")
    reasons = FailureReason()  # fed every line: the cause may be hundreds of lines back
    tally = Tally()
    guard = None
    with private_system_dir(project_dir()) as system_dir:
        env["MELTANO_SYS_DIR_ROOT"] = str(system_dir)
        try:
            with meltano_process(command, cwd=str(project_dir()), env=env,
                                 limit=limit) as proc:
                # nothing of this run outlives the lock, even when this worker is killed
                guard = Guard(proc.pid, state.fileno())
                with LockWatch(state, tenant.id, lambda: proc.stop_group(grace=STOP_GRACE),
                               check) as watch:
                    for raw in proc.stdout:
                        line = ANSI.sub("", raw.rstrip("\n"))
                        sys.stderr.write(line + "\n")  # the compute log keeps everything
                        reasons.feed(line)
                        tally.feed(line)
                        forward(log, line)
        finally:
            if guard is not None:
                guard.stop()
    if watch.lost is not None:
        return Outcome(tenant.schema, failed=watch.lost, retry=True, tally=tally)
    if proc.timed_out:
        return Outcome(tenant.schema, failed=f"stopped after {limit:g} s, the maximum run time "
                       "(TAP_ANALYTICS_FLEET_MAX_RUNTIME)")
    failed = retry = None
    if proc.returncode != 0:
        failed = reasons.reason()
        retry = not any(f in failed for f in FINAL)
    tables: dict[str, TableFacts] = {}
    marks: dict[str, str] = {}
    try:  # what the run left: its report lacks it when a database went away meanwhile
        with psycopg.connect(**warehouse(os.environ), autocommit=True) as con:
            tables = table_facts(con, tenant.schema, [name for name, count in
                                                      tally.written.items() if count])
        marks = bookmarks(state, tenant.id)
    except psycopg.Error as exc:
        log.warning(f"the tables' row counts or bookmarks could not be read: {exc}".strip())
    return Outcome(tenant.schema, failed, bool(retry), tally, tables, marks)


def max_runtime(environ: t.Mapping[str, str]) -> float:
    value = environ.get("TAP_ANALYTICS_FLEET_MAX_RUNTIME") or DEFAULT_MAX_RUNTIME
    return float(value)
