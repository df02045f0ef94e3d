"""An asset per table, partitioned by account, as a Dagster user materializes them: two
tables of one account with `dagster asset materialize` load those two exactly and nothing
else (no other table, no other bookmark), each with its row count, column schema, table
name, bookmark and checks; then the whole account loads every table exactly."""

from __future__ import annotations

import json
import os
import subprocess
import typing as t
from pathlib import Path

import pytest
import yaml

from tests.helpers import OUTPUTS, FakeServer, start_server
from tests.pg import DAGSTER_BIN, ROOT, Cluster
from tests.test_fleet import fleet, fleet_env, lines_by_tenant
from tests.test_postgres import INCREMENTAL, KEYS, assert_tables_equal_server, table_keys

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]
DAGSTER = DAGSTER_BIN / "dagster"
TWO = ("contacts", "conversations")
DECLARED = {"name": "resource_name", "primary_key": "id", "endpoint": {
    "path": "/v1/resource", "data_selector": "data", "paginator": {
        "type": "cursor", "limit": 100, "cursor_param": "after",
        "cursor_path": "paging.next.after"}}}
# what the instance holds: each table's latest materialization and its checks' results
EVENTS = """
import json, dagster as dg
out = {}
with dg.DagsterInstance.get() as instance:
    for run in instance.get_runs():
        for kind, field in ((dg.DagsterEventType.ASSET_MATERIALIZATION, None),
                            (dg.DagsterEventType.ASSET_CHECK_EVALUATION, None)):
            for record in instance.all_logs(run.run_id, of_type=kind):
                data = record.dagster_event.event_specific_data
                if kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
                    m = data.materialization
                    entry = out.setdefault(m.asset_key.to_user_string(), {"checks": {}})
                    entry["partition"] = m.partition
                    entry["metadata"] = {k: (v.value if not hasattr(v.value, "columns") else
                                             [c.name for c in v.value.columns])
                                         for k, v in m.metadata.items()}
                else:
                    entry = out.setdefault(data.asset_key.to_user_string(), {"checks": {}})
                    # the materialization it judged: this run's of that table and account
                    target = data.target_materialization_data
                    judged = target is not None and instance.fetch_materializations(
                        dg.AssetRecordsFilter(asset_key=data.asset_key,
                                              asset_partitions=[data.partition],
                                              storage_ids=[target.storage_id]), limit=1).records
                    entry["checks"][data.check_name] = [data.passed, {
                        k: v.value for k, v in data.metadata.items()},
                        bool(judged) and judged[0].run_id == run.run_id == target.run_id]
print(json.dumps(out, default=str))
"""


def dagster_events(env: dict) -> dict:
    proc = subprocess.run([str(DAGSTER_BIN / "python"), "-c", EVENTS],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def tables_of(cluster: Cluster, schema: str) -> set[str]:
    with cluster.connect() as con:
        return {r[0] for r in con.execute("select table_name from information_schema.tables "
                                          "where table_schema = %s", (schema,)).fetchall()}


def bookmarked(cluster: Cluster, account: str) -> set[str]:
    with cluster.connect() as con:
        row = con.execute("select completed_state from meltano.state where state_id like %s",
                          (f"%:{account}",)).fetchone()
    state = row[0] if isinstance(row[0], dict) else json.loads(row[0])
    return set(state["singer_state"]["bookmarks"])


def account(server: FakeServer, cluster: Cluster, tmp_path: Path, ident: str,
            **settings: t.Any) -> dict[str, str]:
    """fleet.sh's environment for one account, registered as a partition. Its id names its
    state in the shared cluster: one per test."""
    tenants = [{"id": ident, "schema": f"assets_{ident}", "settings": {
        "base_url": server.url, "api_key": "${ACME_KEY}", "page_size": 25,
        "backoff_factor": 0, **settings}}]
    env = fleet_env(tmp_path, tenants, cluster, ACME_KEY=server.api.api_key)
    registered = fleet(env, "--register")
    assert registered.returncode == 0, registered.stderr[-2000:]
    return env


def materialize(env: dict[str, str], ident: str, tables: t.Iterable[str]
                ) -> subprocess.CompletedProcess:
    selection = ",".join(f"tap_analytics/{name}" for name in tables)
    proc = subprocess.run([str(DAGSTER), "asset", "materialize", "-m", "orchestrate",
                           "--select", selection, "--partition", ident], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    OUTPUTS.extend([proc.stdout, proc.stderr])
    return proc


def test_two_tables_of_one_account_load_alone_then_every_table(
        server: FakeServer, cluster: Cluster, tmp_path: Path) -> None:
    """With a declared resource too: it stays out of the subset, and lands with the rest
    (the shipped catalog does not list it)."""
    env = account(server, cluster, tmp_path, "subset", resources=[DECLARED])
    proc = materialize(env, "subset", TWO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert tables_of(cluster, "assets_subset") == set(TWO)
    expected = server.ids()
    for name in TWO:
        assert set(table_keys(cluster, "assets_subset", name)) == expected[name], name
    assert bookmarked(cluster, "subset") == set(TWO)

    events = dagster_events(env)
    assert set(events) == {f"tap_analytics/{name}" for name in TWO}
    for name in TWO:
        entry = events[f"tap_analytics/{name}"]
        metadata = entry["metadata"]
        assert entry["partition"] == "subset"
        assert metadata["dagster/partition_row_count"] == len(expected[name]), name
        assert metadata["rows_read"] == metadata["rows_written"] == len(expected[name]), name
        assert metadata["dagster/table_name"] == f"assets_subset.{name}"
        assert {"id", "updated_at"} <= set(metadata["dagster/column_schema"])
        assert metadata["bookmark"] == max(r["updated_at"]
                                           for r in server.api.data.tables[name])
        passed, facts, judged_this_run = entry["checks"]["exact"]
        assert passed is True, entry["checks"]
        assert judged_this_run is True, entry["checks"]
        assert facts["primary_key"] == "id"
        assert facts["read"] == facts["announced"] == len(expected[name])

    every = fleet(env, "subset")
    assert every.returncode == 0, every.stderr[-3000:]
    assert lines_by_tenant(every.stdout)["subset"].startswith("landed: ")
    assert_tables_equal_server(cluster, "assets_subset", server, {"resource_name": "resource"})
    assert bookmarked(cluster, "subset") >= set(TWO) | {"companies", "peoples"}
    events = dagster_events(env)
    assert set(events) == {f"tap_analytics/{name}" for name in [*KEYS, "resource_name"]}
    declared = events["tap_analytics/resource_name"]
    assert declared["metadata"]["dagster/partition_row_count"] == len(expected["resource"])
    assert declared["checks"]["exact"][0] is True, declared["checks"]
    assert all(entry["checks"]["exact"][2] for entry in events.values()), events


def test_a_failed_table_does_not_hide_the_tables_that_landed(
        server: FakeServer, cluster: Cluster, tmp_path: Path) -> None:
    """One stream at a time (`max_concurrency` 1), in the catalog's order: agents_overview
    and contacts land, conversations is refused (403), teams never starts. The run fails
    with the refused stream's line; the two that landed are materialized with their
    checks, the others are not."""
    env = account(server, cluster, tmp_path, "refused", max_concurrency=1)
    server.faults({"path": "/v1/conversations", "kind": "403", "times": -1})
    proc = materialize(env, "refused", ("agents_overview", "contacts", "conversations", "teams"))
    assert proc.returncode != 0
    assert "conversations: GET /v1/conversations answered 403" in proc.stdout + proc.stderr
    events = dagster_events(env)
    landed = {"agents_overview", "contacts"}
    assert set(events) == {f"tap_analytics/{name}" for name in landed}, events
    expected = server.ids()
    for name in landed:
        entry = events[f"tap_analytics/{name}"]
        assert entry["metadata"]["dagster/partition_row_count"] == len(expected[name])
        assert entry["checks"]["exact"][0] is True
        assert set(table_keys(cluster, "assets_refused", name)) == expected[name]
    assert tables_of(cluster, "assets_refused") == landed


INSTANCE = """
import dagster as dg
with dg.DagsterInstance.get() as instance:
    config = instance.get_concurrency_config()
    print(type(instance.run_coordinator).__name__, type(instance.run_launcher).__name__,
          instance.run_monitoring_enabled)
    print(config.pool_config.default_pool_limit, config.pool_config.pool_granularity.value)
    print(sorted((l["key"], l["limit"]) for l in config.run_queue_config.tag_concurrency_limits))
"""


def test_dagster_dev_gets_the_instance_fleet_sh_uses(tmp_path: Path) -> None:
    """`scripts/dagster_dev.sh` runs `dagster dev` on the instance it writes first: the run
    queue with the pool, one run per account and the limit per API host, run monitoring,
    Dagster's own run launcher unless the user opts in to the warm one; it holds the
    instance's daemon lock, so that a fleet.sh beside it starts no second daemon. A bare
    `dagster dev` gets a temporary instance with none of them."""
    script = (ROOT / "scripts" / "dagster_dev.sh").read_text()
    assert "orchestrate.fleet --instance" in script and "dagster dev -m orchestrate" in script
    assert 'exec 9>>"$DAGSTER_HOME/daemon.lock"' in script and "flock" in script
    python = str(DAGSTER_BIN / "python")
    for launcher, name in (("", "DefaultRunLauncher"), ("warm", "WarmRunLauncher")):
        env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"),
               "TAP_ANALYTICS_FLEET_CONCURRENCY": "3",
               "TAP_ANALYTICS_FLEET_HOST_CONCURRENCY": "2",
               "TAP_ANALYTICS_FLEET_LAUNCHER": launcher}
        home = subprocess.run([python, "-m", "orchestrate.fleet", "--instance"], env=env,
                              cwd=ROOT, capture_output=True, text=True, timeout=120,
                              check=True).stdout
        assert home.strip() == str(tmp_path / "home")
        proc = subprocess.run([python, "-c", INSTANCE], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.splitlines() == [
            f"AccountRunCoordinator {name} True", "3 run",
            str(sorted([("dagster/partition", 1), ("tap_analytics/api_host", 2)]))]


# each table alone: the child without its parent (an incremental subset is
# test_two_tables_of_one_account_load_alone_then_every_table's); every table at
# TEST_SCALE=full
ALONE = {"small": ("segment_people",),
         "full": tuple(KEYS)}[os.environ.get("TEST_SCALE", "small")]


def change_everything(server: FakeServer) -> None:
    """Changes on every table of the API: incremental updates and inserts, a record of each
    other listing changed, one deleted and one added, a segment's people gone."""
    server.admin("mutate", {"updates": 3, "inserts": 2})
    for name in KEYS:
        if name not in INCREMENTAL and name != "segment_people":
            server.admin("change", {"stream": name, "updates": 1, "deletes": 1, "inserts": 1})
    server.admin("delete_segment", {"id": sorted(server.api.data.members)[0]})


def snapshot(cluster: Cluster, schema: str, account_id: str) -> tuple[dict, dict]:
    """Every table's keys, and the account's saved state of every stream."""
    tables = {name: sorted(map(str, table_keys(cluster, schema, name))) for name in KEYS}
    with cluster.connect() as con:
        row = con.execute("select completed_state from meltano.state where state_id like %s",
                          (f"%:{account_id}",)).fetchone()
    state = row[0] if isinstance(row[0], dict) else json.loads(row[0])
    return tables, state["singer_state"]["bookmarks"]


def test_each_table_alone_loads_exactly_and_leaves_the_others_as_they_were(
        server: FakeServer, cluster: Cluster, tmp_path: Path) -> None:
    """All tables, then each table alone from the asset graph's CLI (the API changing every
    table between), then all again: the table asked for is exact, every other table and
    bookmark is as it was, and the whole account is exact at the end."""
    env = account(server, cluster, tmp_path, "alone")
    every = fleet(env, "alone")
    assert every.returncode == 0, every.stderr[-3000:]
    assert_tables_equal_server(cluster, "assets_alone", server)
    for name in ALONE:
        change_everything(server)
        tables, marks = snapshot(cluster, "assets_alone", "alone")
        proc = materialize(env, "alone", [name])
        assert proc.returncode == 0, (name, proc.stderr[-3000:])
        keys = table_keys(cluster, "assets_alone", name)
        assert len(keys) == len(set(keys)) and set(keys) == server.ids()[name], name
        after_tables, after_marks = snapshot(cluster, "assets_alone", "alone")
        for other in KEYS:
            if other != name:
                assert after_tables[other] == tables[other], f"{name} alone changed {other}"
                assert after_marks.get(other) == marks.get(other), \
                    f"{name} alone moved the bookmark of {other}"
        assert set(dagster_events(env)) >= {f"tap_analytics/{name}"}
    change_everything(server)
    every = fleet(env, "alone")
    assert every.returncode == 0, every.stderr[-3000:]
    assert_tables_equal_server(cluster, "assets_alone", server)


def test_a_target_that_raises_is_the_runs_reason(cluster: Cluster, tmp_path: Path) -> None:
    """target-postgres raises (its soft delete binds a parameter named `version`, a column
    of `schemas` here) while the tap still writes a large listing: Meltano then prints its
    own tracebacks of the broken pipe, hundreds of lines after the target's; the account's
    reason is the target's exception."""
    server = start_server(scale=15000, segments=2)
    try:
        for record in server.api.data.tables["schemas"]:
            record["version"] = 3
        server.api.data.generation += 1
        env = account(server, cluster, tmp_path, "raises", page_size=100)
        env.update(TARGET_POSTGRES_HARD_DELETE="false", TAP_ANALYTICS_FLEET_RETRIES="0",
                   TAP_ANALYTICS_FLEET_RUN_RETRIES="0")
        proc = fleet(env, "raises")
        assert proc.returncode == 1
        reason = lines_by_tenant(proc.stdout)["raises"]
        assert reason.startswith("failed: sqlalchemy.exc.CompileError: bindparam() name "
                                 "'version' is reserved"), reason
    finally:
        server.server.shutdown()
        server.server.server_close()


# the sensor `stale_accounts` evaluated as Dagster's daemon does, twice (the second time
# with the first's cursor); the daemon stores what it returns as each partition's result
STALE = """
import json, sys, dagster as dg
from orchestrate.definitions import defs, stale_accounts
out = []
with dg.DagsterInstance.get() as instance:
    instance.add_dynamic_partitions("tenants", ["never"])
    cursor = None
    for _ in range(2):
        result = stale_accounts(dg.build_sensor_context(instance=instance, cursor=cursor,
                                                        definitions=defs))
        cursor = result.cursor
        out.append({e.partition: [e.passed, e.description] for e in result.asset_events})
print(json.dumps(out))
"""


def test_a_stale_account_fails_its_own_check_while_a_fresh_one_passes(
        server: FakeServer, cluster: Cluster, tmp_path: Path) -> None:
    """Two accounts synced, one of them last 30 hours ago (its run's end moved back in
    Meltano's runs), and one never synced: one query judges all three against 24 h; the
    next tick, with nothing changed, reports nothing; `fleet.sh --stale` says the same."""
    env = account(server, cluster, tmp_path, "fresh")
    tenants = yaml.safe_load(Path(env["TAP_ANALYTICS_TENANTS"]).read_text())
    tenants["tenants"].append({**tenants["tenants"][0], "id": "old", "schema": "assets_old"})
    Path(env["TAP_ANALYTICS_TENANTS"]).write_text(yaml.safe_dump(tenants))
    done = fleet(env, "fresh", "old")
    assert done.returncode == 0, done.stderr[-3000:]
    with cluster.connect() as con:
        moved = con.execute("update meltano.runs set ended_at = ended_at - interval '30 hours' "
                            "where job_name like '%:old' and state = 'SUCCESS'").rowcount
    assert moved >= 1
    proc = subprocess.run([str(DAGSTER_BIN / "python"), "-c", STALE], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, second = json.loads(proc.stdout)
    assert {k: v[0] for k, v in first.items()} == {"fresh": True, "old": False, "never": False}
    assert "more than 24 h" in first["old"][1] and "never synced" in first["never"][1]
    assert second == {}, "a tick with nothing changed reported again"
    stale = fleet(env, "--stale")
    assert stale.returncode == 1
    lines = lines_by_tenant(stale.stdout)
    assert lines["fresh"].startswith("fresh: ") and lines["old"].startswith("stale: ")
