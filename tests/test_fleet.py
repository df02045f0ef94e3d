"""Many accounts through Dagster (`scripts/fleet.sh`): real Dagster (daemon, run queue,
pool), real Meltano with its state in PostgreSQL, real target-postgres, one fake API per
account with its own data and key.

Round one lands every good account in its own schema, and an account with a wrong key
fails alone, named, with the tap's line. Round two runs from an empty copy of the project
(no `.meltano/run`, no local database): only changes are fetched. No account's rows,
bookmarks, key or settings reach another (distinct data sizes per account; a setting in
the orchestrator's environment that would change every account if it leaked)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import typing as t
import uuid
from pathlib import Path

import pytest
import yaml

from bench.cpu import Busy
from tests import fleet_faults
from tests.helpers import OUTPUTS, FakeServer, installed_tap_root, project_copy, start_server
from tests.pg import DAGSTER_BIN, ROOT, Cluster, restart_cluster, start_cluster, stop_cluster
from tests.reliability import count
from tests.test_postgres import INCREMENTAL, assert_tables_equal_server

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]
DAGSTER = DAGSTER_BIN / "python"
GOOD = ("acme", "globex", "initech")
DAGSTER_DB = "TAP_ANALYTICS_FLEET_DAGSTER_DB"


@pytest.fixture
def fleet_servers() -> dict[str, FakeServer]:
    servers = {name: start_server(scale=40 + 30 * i, segments=2 + i, api_key=f"{name}-key-{i}7x")
               for i, name in enumerate([*GOOD, "revoked"])}
    yield servers
    for server in servers.values():
        server.server.shutdown()
        server.server.server_close()


def fleet(env: dict, *ids: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "fleet.sh"), *ids], env=env,
                          capture_output=True, text=True, timeout=900)
    OUTPUTS.extend([proc.stdout, proc.stderr])
    return proc


def fleet_env(tmp_path: Path, tenants: list[dict], warehouse: Cluster,
              **extra: str) -> dict[str, str]:
    """fleet.sh's environment: the tenants file (written here), a Dagster instance of the
    test's own, the warehouse, and `extra`; no MELTANO_DATABASE_URI (state in the warehouse)."""
    (tmp_path / "tenants.yml").write_text(yaml.safe_dump({"tenants": tenants}))
    env = {**os.environ, "TAP_ANALYTICS_TENANTS": str(tmp_path / "tenants.yml"),
           "DAGSTER_HOME": str(tmp_path / "dagster"),
           "TARGET_POSTGRES_HOST": "127.0.0.1", "TARGET_POSTGRES_PORT": str(warehouse.port),
           "TARGET_POSTGRES_USER": warehouse.user, "TARGET_POSTGRES_PASSWORD": "unused",
           "TARGET_POSTGRES_DATABASE": warehouse.database, **extra}
    env.pop("MELTANO_DATABASE_URI", None)
    return env


def lines_by_tenant(stdout: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in stdout.splitlines() if ": " in line)


def test_fleet_lands_every_account_alone_twice(fleet_servers: dict[str, FakeServer],
                                               cluster: Cluster, tmp_path: Path) -> None:
    tenants = [{"id": name, "schema": f"fleet_{name}", "settings": {
        "base_url": server.url, "api_key": f"${{{name.upper()}_KEY}}", "page_size": 50,
        "backoff_factor": 0}} for name, server in fleet_servers.items()]
    env = fleet_env(tmp_path, tenants, cluster, TAP_ANALYTICS_FLEET_RETRY_DELAY="0.1",
                    # would change every account if the orchestrator's environment leaked
                    TAP_ANALYTICS_PAGE_SIZE="7", TAP_ANALYTICS_API_KEY="acme-key-07x",
                    **{f"{name.upper()}_KEY": s.api.api_key
                       for name, s in fleet_servers.items() if name != "revoked"},
                    REVOKED_KEY="revoked-by-the-api")

    first = fleet(env)
    assert first.returncode == 1, first.stderr[-3000:]
    outcome = lines_by_tenant(first.stdout)
    for name in GOOD:
        assert outcome[name].startswith("landed: "), (name, first.stderr[-3000:])
        assert_tables_equal_server(cluster, f"fleet_{name}", fleet_servers[name])
    assert outcome["revoked"].startswith("failed: ") and "answered 401" in outcome["revoked"]
    for server in fleet_servers.values():
        assert all(r["query"].get("limit") != "7" for r in server.requests())

    for server in fleet_servers.values():
        server.admin("mutate", {"updates": 4, "inserts": 2})
        server.admin("reset")
    catalog = tmp_path / "catalog.json"  # shipped with the image: no discovery per run
    catalog.write_text(subprocess.run([str(ROOT / ".venv" / "bin" / "tap-analytics"),
                                       "--discover"], capture_output=True, text=True,
                                      check=True).stdout)
    copy = project_copy(tmp_path / "project")
    second = fleet({**env, "TAP_ANALYTICS_MELTANO_PROJECT": str(copy),
                    "TAP_ANALYTICS_FLEET_CATALOG": str(catalog)}, *GOOD)
    assert second.returncode == 0, second.stderr[-3000:]
    assert installed_tap_root() == ROOT, "a run in the copy reinstalled the shared tap"
    for name in GOOD:
        server = fleet_servers[name]
        assert_tables_equal_server(cluster, f"fleet_{name}", server)
        for path in ("/v1/conversations", "/v1/contacts"):
            synced = [r for r in server.requests() if r["path"] == path
                      and "updated_since" in r["query"]]
            served = sum(r["served"] for r in synced)
            assert synced and served <= 6 + 6, f"{name} {path}: fetched {served} records"
            unbounded = [r for r in server.requests() if r["path"] == path
                         and "updated_since" not in r["query"]]
            assert not unbounded, f"{name} {path}: discovery sampled the API"
    with cluster.connect() as con:
        states = dict(con.execute("select state_id, completed_state from meltano.state"
                                  ).fetchall())
    for name in GOOD:
        state = states[f"dev:tap-analytics-to-target-postgres:{name}"]
        state = json.loads(state) if isinstance(state, str) else state
        records = fleet_servers[name].api.data.tables
        for stream in INCREMENTAL:
            mark = state["singer_state"]["bookmarks"][stream]["replication_key_value"]
            assert mark == max(r["updated_at"] for r in records[stream]), (name, stream)
    assert_no_key_stored(cluster, tmp_path / "dagster",
                         [s.api.api_key for s in fleet_servers.values()] + ["revoked-by-the-api"])


def assert_no_key_stored(cluster: Cluster, dagster_home: Path, keys: list[str]) -> None:
    """No account's key in what outlives the runs: Dagster's instance (event logs, run
    storage, compute logs) and Meltano's tables in PostgreSQL (state, runs)."""
    files = [p for p in dagster_home.rglob("*") if p.is_file()]
    assert files, "the Dagster instance kept nothing to look at"
    leaks = [f"{p.relative_to(dagster_home)}" for p in files
             if any(key.encode() in p.read_bytes() for key in keys)]
    with cluster.connect() as con:
        tables = [r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'meltano'"
        ).fetchall()]
        for table in tables:
            text = "\n".join(r[0] for r in con.execute(
                f'select t::text from meltano."{table}" t').fetchall())
            leaks += [f"meltano.{table}" for key in keys if key in text]
    assert tables and not leaks, f"an API key is stored in {leaks}"


@pytest.fixture
def warehouse() -> t.Iterator[Cluster]:
    """A PostgreSQL of this test's own, restarted mid-sync (the session's one keeps
    Dagster's storage)."""
    pg = start_cluster()
    yield pg
    stop_cluster(pg)


def when_busy(server: FakeServer, requests: int, proc: subprocess.Popen,
              timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(server.requests()) < requests:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the account's run never got going"
        time.sleep(0.05)


def test_unclean_ends_never_lock_an_account_out(cluster: Cluster, warehouse: Cluster,
                                                tmp_path: Path) -> None:
    """SIGKILL of the tap, the target, Meltano, or every process of one account's run; a
    PostgreSQL restart mid-sync; an API that stalls; two fleet.sh on one account: each
    account lands within the fleet's own retries (no 5-minute lock-out), exact, and the
    stalled one is stopped at the maximum run time with that reason."""
    faults = ("tap", "target", "meltano", "whole")
    servers = {f: start_server(scale=150 + 40 * i, segments=2 + i, latency_ms=40,
                               api_key=f"{f}-key-{i}9q") for i, f in enumerate(faults)}
    servers["stall"] = start_server(scale=60, segments=2, latency_ms=120_000,
                                    api_key="stall-key-5z")
    database = f"dagster_{uuid.uuid4().hex[:8]}"
    with cluster.connect() as con:
        con.execute(f"create database {database}")
    tenants = [{"id": name, "schema": f"unclean_{name}", "settings": {
        "base_url": s.url, "api_key": f"${{{name.upper()}_KEY}}", "page_size": 25,
        "max_concurrency": 1,
        "backoff_factor": 0, "request_timeout": 300}} for name, s in servers.items()]
    env = fleet_env(tmp_path, tenants, warehouse,
                    TAP_ANALYTICS_FLEET_DAGSTER_DB=f"postgresql://{cluster.user}@127.0.0.1:"
                                                   f"{cluster.port}/{database}",
                    TAP_ANALYTICS_FLEET_CONCURRENCY="5", TAP_ANALYTICS_FLEET_RETRIES="3",
                    TAP_ANALYTICS_FLEET_RETRY_DELAY="1", TAP_ANALYTICS_FLEET_MAX_RUNTIME="50",
                    TAP_ANALYTICS_FLEET_TIMEOUT="400",
                    **{f"{name.upper()}_KEY": s.api.api_key for name, s in servers.items()})
    try:
        # round 1: one kill per account, mid-sync, all at about the same time
        started = time.monotonic()
        proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "fleet.sh")], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        killed = {}
        for fault in faults:
            when_busy(servers[fault], 12, proc)
            pids = (fleet_faults.whole_run(f"unclean_{fault}") if fault == "whole"
                    else fleet_faults.of_account(f"unclean_{fault}", fault))
            fleet_faults.kill(pids)
            killed[fault] = pids
        out, err = proc.communicate(timeout=600)
        OUTPUTS.extend([out, err])
        assert all(killed.values()), killed
        outcome = lines_by_tenant(out)
        for fault in faults:
            assert outcome[fault].startswith("landed: "), (fault, outcome, err[-3000:])
            assert_tables_equal_server(warehouse, f"unclean_{fault}", servers[fault])
        assert outcome["stall"] == ("failed: stopped after 50 s, the maximum run time "
                                    "(TAP_ANALYTICS_FLEET_MAX_RUNTIME)"), outcome
        assert time.monotonic() - started < 300, "an account waited out Meltano's lock"

        # round 2: PostgreSQL (warehouse and Meltano's state) restarts mid-sync
        for fault in faults:
            servers[fault].admin("mutate", {"updates": 6, "inserts": 3})
            servers[fault].admin("reset")
        proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "fleet.sh"), *faults],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        when_busy(servers["whole"], 3, proc)
        restart_cluster(warehouse)
        assert proc.poll() is None, "the fleet ended before the restart"
        out, err = proc.communicate(timeout=600)
        OUTPUTS.extend([out, err])
        assert proc.returncode == 0, (out, err[-3000:])
        for fault in faults:
            assert_tables_equal_server(warehouse, f"unclean_{fault}", servers[fault])

        # round 3: a second fleet.sh for an account still syncing waits for it
        server = servers["tap"]
        server.admin("mutate", {"updates": 4, "inserts": 2})
        first = subprocess.Popen(["bash", str(ROOT / "scripts" / "fleet.sh"), "tap"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while not fleet_faults.of_account("unclean_tap", "tap"):
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        second = subprocess.Popen(["bash", str(ROOT / "scripts" / "fleet.sh"), "tap"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        most = 0
        while first.poll() is None or second.poll() is None:
            most = max(most, len(fleet_faults.of_account("unclean_tap", "tap")))
            time.sleep(0.05)
        texts = [first.communicate(), second.communicate()]
        OUTPUTS.extend(text for pair in texts for text in pair)
        assert first.returncode == 0 and second.returncode == 0, texts
        assert most == 1, f"{most} syncs of one account at once"
        assert "tap is already syncing" in texts[1][1]
        assert_tables_equal_server(warehouse, "unclean_tap", server)
    finally:
        for server in servers.values():
            server.server.shutdown()
            server.server.server_close()


def test_accounts_of_one_api_host_share_its_limit(cluster: Cluster, tmp_path: Path) -> None:
    """Five accounts on two API hosts (three on 127.0.0.1, two on localhost), four at once
    in all but one per host (`TAP_ANALYTICS_FLEET_HOST_CONCURRENCY=1`): never two syncs of
    one host at once, the two hosts side by side, every account landed.

    The APIs hold every request until a sync of each host is seen at once (or a deadline),
    so the overlap does not hang on how fast a busy machine starts runs."""
    hosts = ["127.0.0.1"] * 3 + ["localhost"] * 2
    servers = [start_server(scale=60, segments=2, api_key=f"host-key-{i}4w")
               for i in range(len(hosts))]
    gate = threading.Event()
    for server in servers:
        server.api.gate = gate
    tenants = [{"id": f"host_{i}", "settings": {
        "base_url": s.url.replace("127.0.0.1", host), "api_key": f"${{HOST_KEY_{i}}}",
        "page_size": 20, "backoff_factor": 0, "request_timeout": 300}}
        for i, (s, host) in enumerate(zip(servers, hosts, strict=True))]
    env = fleet_env(tmp_path, tenants, cluster, TAP_ANALYTICS_FLEET_CONCURRENCY="4",
                    TAP_ANALYTICS_FLEET_HOST_CONCURRENCY="1",
                    **{f"HOST_KEY_{i}": s.api.api_key for i, s in enumerate(servers)})
    try:
        proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "fleet.sh")], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        most: dict[str, int] = {}
        together = 0
        deadline = time.monotonic() + 300
        while proc.poll() is None:
            syncing = [hosts[i] for i in range(len(hosts))
                       if fleet_faults.of_account(f"host_{i}", "tap")]
            for host in set(syncing):
                most[host] = max(most.get(host, 0), syncing.count(host))
            together = max(together, len(set(syncing)))
            if together == 2 or time.monotonic() > deadline:
                gate.set()
            time.sleep(0.05)
        gate.set()
        out, err = proc.communicate()
        OUTPUTS.extend([out, err])
        assert proc.returncode == 0, (out, err[-3000:])
        assert most == {"127.0.0.1": 1, "localhost": 1}, most
        assert together == 2, "the two hosts' accounts never ran side by side"
        for i, server in enumerate(servers):
            assert_tables_equal_server(cluster, f"host_{i}", server)
    finally:
        gate.set()
        for server in servers:
            server.server.shutdown()
            server.server.server_close()


def keys_held(pids: list[int], keys: dict[str, str]) -> dict[int, set[str]]:
    """Which accounts' keys each process's environment or command line holds."""
    table = fleet_faults.processes()
    held = {}
    for pid in pids:
        cmdline, environ, _ = table.get(pid, ("", {}, 0))
        text = cmdline + "\0" + "\0".join(environ.values())
        held[pid] = {account for account, key in keys.items() if key in text}
    return held


@pytest.mark.parametrize("storage", ["two-instances", "shared-postgres"])
def test_two_orchestrators_never_sync_one_account_twice(storage: str, cluster: Cluster,
                                                        tmp_path: Path) -> None:
    """A second fleet.sh for accounts a first one is syncing, with a Dagster instance of its
    own (`DAGSTER_HOME`), with SQLite storage each or one Dagster storage in PostgreSQL:
    its runs wait for the accounts' locks (and say so), never two taps of one account at
    once, both land, every table exact, and no process of one account's run (run worker,
    Meltano, tap, target) holds another account's key."""
    servers = {name: start_server(scale=90 + 20 * i, segments=2, latency_ms=1000,
                                  api_key=f"{name}-key-{i}6v")
               for i, name in enumerate(["north", "south"])}
    keys = {name: s.api.api_key for name, s in servers.items()}
    tenants = [{"id": name, "schema": f"twice_{name}", "settings": {
        "base_url": s.url, "api_key": f"${{{name.upper()}_KEY}}", "page_size": 20,
        "backoff_factor": 0, "request_timeout": 300}} for name, s in servers.items()]
    extra = {f"{name.upper()}_KEY": key for name, key in keys.items()}
    if storage == "shared-postgres":
        database = f"dagster_{uuid.uuid4().hex[:8]}"
        with cluster.connect() as con:
            con.execute(f"create database {database}")
        extra[DAGSTER_DB] = f"postgresql://{cluster.user}@127.0.0.1:{cluster.port}/{database}"
    envs = [fleet_env(tmp_path, tenants, cluster, **extra) for _ in range(2)]
    envs[1]["DAGSTER_HOME"] = str(tmp_path / "dagster-2")
    # where the second fleet says it waits: its runs' log (each waits for the account's
    # lock), or with one Dagster storage its own line (its runs wait in the shared queue)
    second_log, waits = ((tmp_path / "dagster-2" / "daemon.log",
                          "account {} is being synced by tap-analytics run")
                         if storage == "two-instances" else
                         (tmp_path / "fleet-2.err", "fleet: {} is already syncing"))
    procs: list[subprocess.Popen] = []
    most = {name: 0 for name in servers}
    mixed: dict[int, set[str]] = {}
    checked: set[int] = set()

    def sample() -> None:
        for name in servers:
            most[name] = max(most[name], len(fleet_faults.of_account(f"twice_{name}", "tap")))
        table = fleet_faults.processes()
        # the runs' processes: the fork server of run workers and all below it (not the
        # orchestrator itself, nor fleet.sh's set-up, which have the user's environment)
        forkservers = [pid for p in procs for pid in fleet_faults.descendants(p.pid, table)
                       if "multiprocessing.forkserver" in table.get(pid, ("",))[0]
                       and "multiprocessing.forkserver" not in table.get(
                           table[pid][2], ("",))[0]]
        runs = [pid for top in forkservers for pid in fleet_faults.descendants(top, table)]
        checked.update(runs)
        mixed.update({pid: held for pid, held in keys_held(runs, keys).items()
                      if len(held) > 1})

    def poll(until: t.Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 300
        while not until():
            assert all(p.poll() is None for p in procs), what
            assert time.monotonic() < deadline, what
            sample()
            time.sleep(0.05)

    def start(i: int) -> None:
        with open(tmp_path / f"fleet-{i + 1}.out", "w") as out, \
                open(tmp_path / f"fleet-{i + 1}.err", "w") as err:
            procs.append(subprocess.Popen(["bash", str(ROOT / "scripts" / "fleet.sh")],
                                          env=envs[i], stdout=out, stderr=err))

    try:
        start(0)
        poll(lambda: all(fleet_faults.of_account(f"twice_{n}", "tap") for n in servers),
             "the first fleet's taps never started")
        start(1)
        poll(lambda: second_log.exists() and all(
            waits.format(n) in second_log.read_text() for n in servers),
            "the second fleet never waited for the first")
        for server in servers.values():
            server.admin("config", {"latency_ms": 0})
        while any(p.poll() is None for p in procs):
            sample()
            time.sleep(0.05)
        texts = [((tmp_path / f"fleet-{i}.out").read_text(),
                  (tmp_path / f"fleet-{i}.err").read_text()) for i in (1, 2)]
        OUTPUTS.extend(text for pair in texts for text in pair)
        assert all(p.returncode == 0 for p in procs), texts
        assert most == {name: 1 for name in servers}, f"syncs of one account at once: {most}"
        assert not mixed, f"processes holding several accounts' keys: {mixed}"
        assert len(checked) > 4, "no run's processes were looked at"
        for name, server in servers.items():
            assert_tables_equal_server(cluster, f"twice_{name}", server)
    finally:
        for proc in procs:
            proc.kill()
        for server in servers.values():
            server.server.shutdown()
            server.server.server_close()


MANY = {"small": 10, "full": 64}[os.environ.get("TEST_SCALE", "small")]


def test_many_accounts_land_exactly_with_dagster_storage_in_postgresql(
        cluster: Cluster, tmp_path: Path) -> None:
    """`MANY` accounts (TEST_SCALE), each its own fake API and key, through one fleet.sh with
    Dagster's storage in PostgreSQL: every account lands, every table equal to its API;
    wall and CPU per account are printed in the run's reliability counts."""
    servers = [start_server(scale=25, segments=1, api_key=f"many-key-{i}3k")
               for i in range(MANY)]
    database = f"dagster_{uuid.uuid4().hex[:8]}"
    with cluster.connect() as con:
        con.execute(f"create database {database}")
    tenants = [{"id": f"many_{i}", "settings": {
        "base_url": s.url, "api_key": f"${{MANY_KEY_{i}}}", "page_size": 50,
        "backoff_factor": 0}} for i, s in enumerate(servers)]
    env = fleet_env(tmp_path, tenants, cluster, TAP_ANALYTICS_FLEET_CONCURRENCY="4",
                    **{DAGSTER_DB: f"postgresql://{cluster.user}@127.0.0.1:{cluster.port}/"
                                   f"{database}"},
                    **{f"MANY_KEY_{i}": s.api.api_key for i, s in enumerate(servers)})
    try:
        fleet(env, "--register")  # set-up and partitions outside the measured run
        started = time.monotonic()
        with Busy() as busy:
            proc = fleet(env)
        wall = time.monotonic() - started
        assert proc.returncode == 0, proc.stderr[-3000:]
        outcome = lines_by_tenant(proc.stdout)
        assert sorted(outcome) == sorted(t_["id"] for t_ in tenants)
        assert all(line.startswith("landed: ") for line in outcome.values()), outcome
        for i, server in enumerate(servers):
            assert_tables_equal_server(cluster, f"many_{i}", server)
        count(f"fleet of {MANY} accounts: wall per account (ms)", round(1000 * wall / MANY))
        count(f"fleet of {MANY} accounts: CPU per account (ms)", round(1000 * busy.seconds / MANY))
    finally:
        for server in servers:
            server.server.shutdown()
            server.server.server_close()


TERMINATE = """
import sys
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
with DagsterInstance.get() as instance:
    runs = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED],
                                        tags={"dagster/partition": sys.argv[1]}))
    print(instance.run_launcher.terminate(runs[0].run_id))
"""


def test_a_terminated_run_stops_its_meltano_tap_and_target_at_once(cluster: Cluster,
                                                                     tmp_path: Path) -> None:
    """Terminating a run (what the UI's Terminate does, through the instance's run launcher)
    stops its Meltano, tap and target within seconds, not at the sync's end; the run ends
    canceled and fleet.sh says so."""
    server = start_server(scale=200, segments=2, latency_ms=1000, api_key="stop-key-8r")
    env = fleet_env(tmp_path, [{"id": "stopped", "settings": {
        "base_url": server.url, "api_key": "${STOP_KEY}", "request_timeout": 300}}],
        cluster, STOP_KEY=server.api.api_key)
    try:
        proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "fleet.sh")], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        parts = ("meltano", "tap", "target")
        deadline = time.monotonic() + 300
        while not all(fleet_faults.of_account("stopped", part) for part in parts):
            assert proc.poll() is None and time.monotonic() < deadline, "the run never started"
            time.sleep(0.05)
        terminated = subprocess.run([str(DAGSTER), "-c", TERMINATE, "stopped"], env=env,
                                    cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert terminated.stdout.strip() == "True", terminated.stderr[-2000:]
        stopped_by = time.monotonic() + 30
        while any(fleet_faults.of_account("stopped", part) for part in parts):
            assert time.monotonic() < stopped_by, "the account's processes outlived its run"
            time.sleep(0.05)
        out, err = proc.communicate(timeout=300)
        OUTPUTS.extend([out, err])
        # ended by its worker, not 60 s later by Dagster's monitoring of a canceling run
        assert time.monotonic() - stopped_by + 30 < 55, "the run was not ended by its worker"
        assert proc.returncode == 1 and lines_by_tenant(out)["stopped"] == "failed: run canceled"
    finally:
        server.server.shutdown()
        server.server.server_close()
