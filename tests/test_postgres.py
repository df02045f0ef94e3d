"""`meltano run tap-analytics target-postgres` (and the plain Singer pipe) into real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import typing as t
import uuid
from pathlib import Path

import pytest

from tap_analytics.streams import BUILTIN_STREAMS
from tests.helpers import OUTPUTS, FakeServer, config_for, start_server, tap_command
from tests.landed import missing_values
from tests.pg import MELTANO, ROOT, TARGET, Cluster
from tests.reliability import count
from tests.test_odd_api import served_as_written
from tests.test_targets import SEEDS, assert_all_kept

KEYS = {cls.resource.name: cls.resource.primary_key for cls in BUILTIN_STREAMS}
INCREMENTAL = ("conversations", "contacts", "conversation_parts", "companies", "peoples")

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]


@pytest.fixture
def schema(cluster: Cluster) -> str:
    return f"t_{uuid.uuid4().hex[:10]}"


def meltano_env(server: FakeServer, cluster: Cluster, schema: str, tmp_path: Path) -> dict:
    return {**os.environ, "MELTANO_ENVIRONMENT": "test",
            "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path}/meltano.db",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_CLI_DISABLE_VERSION_CHECK": "1",
            "TAP_ANALYTICS_BASE_URL": server.url, "TAP_ANALYTICS_API_KEY": server.api.api_key,
            "TAP_ANALYTICS_PAGE_SIZE": "50",
            "TARGET_POSTGRES_HOST": "127.0.0.1", "TARGET_POSTGRES_PORT": str(cluster.port),
            "TARGET_POSTGRES_USER": cluster.user, "TARGET_POSTGRES_PASSWORD": "unused-trust",
            "TARGET_POSTGRES_DATABASE": cluster.database,
            "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": schema}


def meltano_run(env: dict, *, ok: bool = True) -> None:
    proc = subprocess.run([str(MELTANO), "run", "tap-analytics", "target-postgres"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    OUTPUTS.extend([proc.stdout, proc.stderr])
    if not ok:
        assert proc.returncode != 0
        return
    assert proc.returncode == 0, "\n".join(
        line for line in proc.stderr.splitlines()
        if "target-postgres" in line or "rror" in line)[-4000:]


def table_keys(cluster: Cluster, schema: str, table: str) -> list:
    columns = ", ".join(f'"{k}"' for k in KEYS.get(table, ("id",)))  # declared: keyed by id
    with cluster.connect() as con:
        rows = con.execute(f'select {columns} from "{schema}"."{table}"').fetchall()
    return [row if len(row) > 1 else row[0] for row in rows]


def assert_tables_equal_server(cluster: Cluster, schema: str, server: FakeServer,
                               declared: t.Mapping[str, str] | None = None) -> None:
    """Every table (the built-in ones, and `declared` resources: table -> the fake's name
    for its data) holds the server's rows, each once; no other table."""
    declared = declared or {}
    with cluster.connect() as con:
        tables = {r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = %s",
            (schema,)).fetchall()}
    assert tables == set(KEYS) | set(declared)
    expected = server.ids()
    for table in [*KEYS, *declared]:
        keys = table_keys(cluster, schema, table)
        assert len(keys) == len(set(keys)), f"{table}: duplicate rows"
        assert set(keys) == expected[declared.get(table, table)], \
            f"{table}: rows differ from the server's"


def column_types(cluster: Cluster, schema: str, table: str) -> dict[str, str]:
    with cluster.connect() as con:
        return dict(con.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = %s and table_name = %s", (schema, table)).fetchall())


def test_meltano_run_into_postgres_merges_and_reads_only_changes(
        server: FakeServer, cluster: Cluster, schema: str, tmp_path: Path) -> None:
    env = meltano_env(server, cluster, schema, tmp_path)
    meltano_run(env)
    assert_tables_equal_server(cluster, schema, server)

    types = column_types(cluster, schema, "conversations")
    assert types["updated_at"].startswith("timestamp")
    assert types["message_count"] in ("bigint", "integer")
    assert types["is_read"] == "boolean"
    assert column_types(cluster, schema, "accounts")["id"] in ("bigint", "integer")
    assert column_types(cluster, schema, "companies")["monthly_spend"] in (
        "numeric", "double precision", "decimal")
    with cluster.connect() as con:
        pk = con.execute(
            "select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid "
            "and a.attnum = any(i.indkey) where i.indrelid = %s::regclass and i.indisprimary",
            (f'"{schema}"."segment_people"',)).fetchall()
    assert {r[0] for r in pk} == {"segment_id", "id"}

    meltano_run(env)  # a second run over unchanged data adds no duplicate rows
    assert_tables_equal_server(cluster, schema, server)

    changed = server.admin("mutate", {"updates": 5, "inserts": 4})
    server.admin("reset")
    meltano_run(env)
    assert_tables_equal_server(cluster, schema, server)
    with cluster.connect() as con:
        for name in INCREMENTAL:
            updated = changed[name]["updated"]
            rows = con.execute(f'select id, updated_at from "{schema}"."{name}" where id = any(%s)',
                               (updated,)).fetchall()
            assert len(rows) == len(updated)
            new_stamp = max(r[1] for r in rows)
            assert all(r[1] == new_stamp for r in rows), f"{name}: not updated in place"
        subjects = dict(con.execute(
            f'select id, subject from "{schema}".conversations where id = any(%s)',
            (changed["conversations"]["updated"],)).fetchall())
        assert all("(edit 1)" in s for s in subjects.values())
    log = server.requests()
    for name, path in (("conversations", "/v1/conversations"), ("peoples", "/v1/people/all")):
        requests = [r for r in log if r["path"] == path and "updated_since" in r["query"]]
        # Meltano discovers before each run: discovery samples one first page, unbounded
        sampled = [r for r in log if r["path"] == path and "updated_since" not in r["query"]]
        assert requests and len(sampled) <= 1, name
        served = sum(r["served"] for r in requests)
        changes = len(changed[name]["updated"]) + len(changed[name]["inserted"])
        assert changes <= served <= changes + 3, f"{name}: fetched {served} records"


def test_plain_singer_pipe_into_postgres(server: FakeServer, cluster: Cluster, schema: str,
                                         tmp_path: Path) -> None:
    tap_config = tmp_path / "tap.json"
    tap_config.write_text(json.dumps(config_for(server, page_size=40)))
    target_config = tmp_path / "target.json"
    target_config.write_text(json.dumps({
        "host": "127.0.0.1", "port": cluster.port, "user": cluster.user, "password": "unused",
        "database": cluster.database, "default_target_schema": schema,
        "load_method": "upsert", "add_record_metadata": True,
        "activate_version": True, "hard_delete": True}))

    def pipe(state: Path | None) -> dict:
        argv = [*tap_command(), "--config", str(tap_config)]
        if state is not None:
            argv += ["--state", str(state)]
        tap = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        target = subprocess.run([str(TARGET), "--config", str(target_config)], stdin=tap.stdout,
                                capture_output=True, text=True, timeout=600)
        tap.stdout.close()
        tap_err = tap.stderr.read().decode()
        tap.wait(timeout=60)
        OUTPUTS.extend([tap_err, target.stderr])
        assert tap.returncode == 0, tap_err[-2000:]
        assert target.returncode == 0, target.stderr[-2000:]
        lines = [line for line in target.stdout.splitlines() if line.strip()]
        return json.loads(lines[-1])

    state = pipe(None)
    assert_tables_equal_server(cluster, schema, server)
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(state))
    server.admin("mutate", {"updates": 3, "inserts": 2})
    state2 = pipe(state_file)
    assert_tables_equal_server(cluster, schema, server)
    for name in INCREMENTAL:
        before = state["bookmarks"][name]["replication_key_value"]
        assert state2["bookmarks"][name]["replication_key_value"] > before


def table_rows(cluster: Cluster, schema: str) -> dict[str, list[dict]]:
    out = {}
    with cluster.connect() as con:
        for table in KEYS:
            result = con.execute(f'select * from "{schema}"."{table}"')
            names = [d.name for d in result.description]
            out[table] = [dict(zip(names, row, strict=True)) for row in result.fetchall()]
    return out


@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed={s}" for s in SEEDS])
def test_meltano_run_under_drift_keeps_every_value(seed: int, cluster: Cluster, schema: str,
                                                   tmp_path: Path) -> None:
    """Undocumented fields and changing types from a seed: two `meltano run`s (the API
    changes between them) land every record and keep every value, typed columns intact.
    For the first seed the target validates every record (the shipped `meltano.yml` turns
    that off, as the tap already checks each one against the SCHEMA in force): none is
    rejected; the other seeds run the shipped configuration. The last seed's target session
    is in a time zone 5:45 ahead of UTC: every date-time must still land as its instant."""
    server = start_server(scale=150, segments=4, drift_seed=seed)
    try:
        env = meltano_env(server, cluster, schema, tmp_path)
        if seed == SEEDS[0]:
            env["TARGET_POSTGRES_VALIDATE_RECORDS"] = "true"
        if seed == SEEDS[-1]:
            env["PGTZ"] = "Asia/Kathmandu"  # libpq's session TimeZone
        meltano_run(env)
        assert_all_kept(server, table_rows(cluster, schema), "target-postgres run 1")
        server.admin("mutate", {"updates": 6, "inserts": 5})
        meltano_run(env)
        assert_all_kept(server, table_rows(cluster, schema), "target-postgres run 2")
    finally:
        server.server.shutdown()
        server.server.server_close()


def test_meltano_run_with_a_capped_api_and_blank_cursors_keeps_every_value(
        cluster: Cluster, schema: str, tmp_path: Path) -> None:
    """Pages capped below `limit` (the cap changing mid-listing) and records without an
    `updated_at`: two `meltano run`s land every record and value, none twice."""
    server = start_server(scale=200, segments=4, page_caps=(23, 11), cap_every=2,
                          missing_cursor_seed=7)
    try:
        env = meltano_env(server, cluster, schema, tmp_path)
        for run in (1, 2):
            meltano_run(env)
            assert_tables_equal_server(cluster, schema, server)
            problems = missing_values(served_as_written(server), table_rows(cluster, schema),
                                      KEYS)
            assert not problems, f"run {run}: {len(problems)}, first: {problems[:3]}"
            server.admin("mutate", {"updates": 6, "inserts": 5})
    finally:
        server.server.shutdown()
        server.server.server_close()


def test_deletions_on_the_api_reach_postgres(server: FakeServer, cluster: Cluster, schema: str,
                                             tmp_path: Path) -> None:
    """Full-table streams end with ACTIVATE_VERSION (as shipped in meltano.yml): rows the API
    no longer lists are deleted; a run that fails leaves every table as full as it was."""
    env = meltano_env(server, cluster, schema, tmp_path)
    meltano_run(env)
    assert_tables_equal_server(cluster, schema, server)
    members = sorted(server.ids()["segment_people"])
    server.admin("delete", {"stream": "accounts", "ids": [3, 7]})
    server.admin("delete", {"stream": "teams", "ids": ["team_00004"]})
    server.admin("delete", {"stream": "segments", "ids": ["segment_00001"]})
    server.admin("delete", {"stream": "segment_people", "ids": [list(members[-1])]})

    # teams fails on its first page (no discovery request comes first: the shipped
    # catalog): its old rows, the deleted one too, all stay
    teams = set(table_keys(cluster, schema, "teams"))
    server.faults({"path": "/v1/teams", "kind": "403", "times": -1})
    meltano_run(env, ok=False)
    assert set(table_keys(cluster, schema, "teams")) == teams

    server.faults()
    meltano_run(env)
    assert_tables_equal_server(cluster, schema, server)
    assert 3 not in table_keys(cluster, schema, "accounts")
    assert "team_00004" not in table_keys(cluster, schema, "teams")
    people = set(table_keys(cluster, schema, "segment_people"))
    assert tuple(members[-1]) not in people
    assert not any(sid == "segment_00001" for sid, _ in people)


def served_by_path(log: list[dict]) -> dict[str, tuple[int, int]]:
    """(requests, records served) per path of the fake API's log."""
    out: dict[str, tuple[int, int]] = {}
    for entry in log:
        count, served = out.get(entry["path"], (0, 0))
        out[entry["path"]] = (count + 1, served + entry["served"])
    return out


def test_an_incremental_meltano_run_without_sampling_pays_only_for_what_it_syncs(
        cluster: Cluster, schema: str, tmp_path: Path) -> None:
    """A fresh `meltano run` rediscovers; with `discovery_sampling` false that costs no
    request, so an incremental run reads only its changes (and the records at its
    bookmarks). Measured at the fake API, with sampling on and off."""
    server = start_server(scale=400, segments=4)
    try:
        env = meltano_env(server, cluster, schema, tmp_path)
        meltano_run(env)
        costs = {}
        # Meltano discovers when the catalog extra is empty; the shipped one: no discovery
        for how, extra in (("true", {"TAP_ANALYTICS__CATALOG": ""}),
                           ("false", {"TAP_ANALYTICS__CATALOG": ""}), ("shipped", {})):
            changed = server.admin("mutate", {"updates": 7, "inserts": 0})
            server.admin("reset")
            meltano_run({**env, **extra, "TAP_ANALYTICS_DISCOVERY_SAMPLING":
                         "false" if how == "false" else "true"})
            costs[how] = served_by_path(server.requests())
            assert_tables_equal_server(cluster, schema, server)
        on, off = costs["true"], costs["false"]
        assert costs["shipped"].keys() == off.keys()
        assert all(costs["shipped"][p][0] == off[p][0] for p in off), "shipped: no discovery"
        for name, path in (("conversations", "/v1/conversations"),
                           ("peoples", "/v1/people/all"), ("contacts", "/v1/contacts")):
            changes = len(changed[name]["updated"])
            # the records at the bookmark come back too: the last round's 7, dated alike
            assert changes <= off[path][1] <= 2 * changes, (name, off[path])
            assert off[path][0] == 1, (name, off[path])  # one request: the changes
            assert on[path][1] >= 50 + changes, (name, on[path])  # a first page more
        # sampling asks one first page per listing, the first segment's people included
        assert sum(n for n, _ in on.values()) - sum(n for n, _ in off.values()) == 15
        # a short page is not trusted to end a listing (APIs cap pages): the listings that
        # state no total cost one request more, which serves the record the changes ended on
        shipped = costs["shipped"]
        for path in ("/v1/conversation_parts", "/v1/companies"):
            assert shipped[path][0] == 2, (path, shipped[path])
        probes = sum(shipped[p][0] - 1 for p in ("/v1/conversation_parts", "/v1/companies"))
        count("probe requests in an incremental meltano run (of "
              f"{sum(n for n, _ in shipped.values())} requests)", probes)
    finally:
        server.server.shutdown()
        server.server.server_close()


def test_a_version_field_stops_target_postgres_defaults_and_the_tap_promptly(
        server: FakeServer, cluster: Cluster, schema: str, tmp_path: Path) -> None:
    """target-postgres 0.8.1 soft-deletes (its default) after ACTIVATE_VERSION with a
    parameter named `version`, which SQLAlchemy refuses when a column has that name: the
    pipe fails, and both sides say why within seconds (README: troubleshooting)."""
    big = start_server(scale=3000, segments=6)
    try:
        for record in big.api.data.tables["schemas"]:
            record["version"] = 3  # a schema's version: a field a real API may well have
        big.api.data.generation += 1
        tap_config = tmp_path / "tap.json"
        tap_config.write_text(json.dumps(config_for(big)))
        target_config = tmp_path / "target.json"
        target_config.write_text(json.dumps({  # the target's own defaults otherwise
            "host": "127.0.0.1", "port": cluster.port, "user": cluster.user,
            "password": "unused", "database": cluster.database,
            "default_target_schema": schema}))
        tap_err = tmp_path / "tap.err"
        with tap_err.open("wb") as err:
            tap = subprocess.Popen([*tap_command(), "--config", str(tap_config)],
                                   stdout=subprocess.PIPE, stderr=err)
        target = subprocess.run([str(TARGET), "--config", str(target_config)],
                                stdin=tap.stdout, capture_output=True, text=True, timeout=300)
        tap.stdout.close()
        tap.wait(timeout=30)  # promptly: it hung for ever before
        tap_text = tap_err.read_text()
        OUTPUTS.extend([tap_text, target.stderr])
        assert target.returncode != 0
        assert "bindparam() name 'version' is reserved" in target.stderr
        assert tap.returncode == 1, tap_text[-2000:]
        assert "the reader of the tap's output (the target) went away" in \
            tap_text.strip().splitlines()[-1]
    finally:
        big.server.shutdown()
        big.server.server_close()
