"""The cold path, as a Kubernetes deployment runs it: Dagster's daemon beside a code server
(`dagster code-server start`, what the Helm chart's user deployment runs), the run queue
and limits of fleet.sh's instance, and Dagster's own `DefaultRunLauncher`, which starts a
fresh `dagster api execute_run` process per run (the command a Kubernetes run pod runs).
A backfill of two accounts from Dagster's CLI lands both exactly, with each table's
materialization and check, as `fleet.sh` does."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import OUTPUTS, FakeServer
from tests.pg import DAGSTER_BIN, ROOT, Cluster
from tests.test_fleet import fleet, fleet_env
from tests.test_postgres import KEYS, assert_tables_equal_server

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]
DAGSTER = str(DAGSTER_BIN / "dagster")
IDS = ("cold_a", "cold_b")
FLEET_TAG = "tap_analytics/fleet"
# waits (polling the instance) until the backfill's runs have finished, then prints them
# and each (table, account)'s row count and check
FINISHED = """
import json, sys, time, dagster as dg
tag, count, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
done = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
with dg.DagsterInstance.get() as instance:
    while True:
        runs = instance.get_runs(dg.RunsFilter(tags={tag: "cold"}))
        if len(runs) >= count and all(r.status in done for r in runs):
            break
        if time.monotonic() > deadline:
            sys.exit(f"runs not finished: {[(r.run_id, r.status.value) for r in runs]}")
        time.sleep(0.5)
    tables = {}
    for run in runs:
        for kind in (dg.DagsterEventType.ASSET_MATERIALIZATION,
                     dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            for record in instance.all_logs(run.run_id, of_type=kind):
                data = record.dagster_event.event_specific_data
                if kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
                    m = data.materialization
                    entry = tables.setdefault(f"{m.asset_key.to_user_string()} {m.partition}", {})
                    entry["rows"] = m.metadata["dagster/partition_row_count"].value
                else:
                    entry = tables.setdefault(
                        f"{data.asset_key.to_user_string()} {data.partition}", {})
                    entry["exact"] = data.passed
    materialized = {name.split(" ")[0]: sorted(instance.get_materialized_partitions(
        dg.AssetKey.from_user_string(name.split(" ")[0]))) for name in tables}
    print(json.dumps({"launcher": type(instance.run_launcher).__name__,
                      "materialized": materialized,
                      "runs": sorted((r.tags["dagster/partition"], r.status.value) for r in runs),
                      "tables": tables}))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def default_launcher(home: Path) -> None:
    """fleet.sh's instance (queue, pool, limits, monitoring, retries) with Dagster's default
    launcher in place of the warm one, kept as the user's own (no fleet.sh mark)."""
    path = home / "dagster.yaml"
    config = yaml.safe_load(path.read_text())
    config.pop("run_launcher")
    path.write_text(yaml.safe_dump(config))


def until_serving(port: int, env: dict, server: subprocess.Popen) -> None:
    while subprocess.run([DAGSTER, "api", "grpc-health-check", "-h", "127.0.0.1", "-p",
                          str(port)], env=env, capture_output=True).returncode != 0:
        assert server.poll() is None, server.communicate()
        time.sleep(0.2)


def test_a_daemon_beside_a_code_server_lands_every_account(
        server: FakeServer, cluster: Cluster, tmp_path: Path) -> None:
    tenants = [{"id": ident, "schema": f"assets_{ident}", "settings": {
        "base_url": server.url, "api_key": "${ACME_KEY}", "page_size": 25,
        "backoff_factor": 0}} for ident in IDS]
    env = fleet_env(tmp_path, tenants, cluster, ACME_KEY=server.api.api_key)
    registered = fleet(env, "--register")
    assert registered.returncode == 0, registered.stderr[-2000:]
    default_launcher(Path(env["DAGSTER_HOME"]))
    port = free_port()
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": {
        "host": "127.0.0.1", "port": port, "location_name": "orchestrate"}}]}))
    started: list[subprocess.Popen] = []
    log = tmp_path / "servers.log"  # a file: a pipe nobody reads would stop them when full
    logs = log.open("w")
    try:
        code = subprocess.Popen([DAGSTER, "code-server", "start", "-m", "orchestrate", "-h",
                                 "127.0.0.1", "-p", str(port), "--location-name", "orchestrate"],
                                env=env, cwd=ROOT, stdout=logs, stderr=subprocess.STDOUT)
        started.append(code)
        until_serving(port, env, code)
        daemon = subprocess.Popen([str(DAGSTER_BIN / "dagster-daemon"), "run", "-w",
                                   str(workspace)], env=env, cwd=tmp_path,
                                  stdout=logs, stderr=subprocess.STDOUT)
        started.append(daemon)
        backfill = subprocess.run(
            [DAGSTER, "job", "backfill", "-w", str(workspace), "-l", "orchestrate", "-j",
             "sync_tenants", "--partitions", ",".join(IDS), "--noprompt",
             "--tags", json.dumps({FLEET_TAG: "cold"})],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        OUTPUTS.extend([backfill.stdout, backfill.stderr])
        assert backfill.returncode == 0, backfill.stderr[-3000:]
        waited = subprocess.run([str(DAGSTER_BIN / "python"), "-c", FINISHED,
                                 FLEET_TAG, str(len(IDS)), "600"],
                                env=env, cwd=tmp_path, capture_output=True, text=True,
                                timeout=700)
        assert waited.returncode == 0, waited.stderr[-3000:]
        report = json.loads(waited.stdout)
    finally:
        for proc in started:
            proc.terminate()
        for proc in started:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        logs.close()
        OUTPUTS.append(log.read_text())
    assert report["launcher"] == "DefaultRunLauncher"
    assert report["runs"] == [[ident, "SUCCESS"] for ident in IDS], report["runs"]
    expected = server.ids()
    for ident in IDS:
        assert_tables_equal_server(cluster, f"assets_{ident}", server)
        for name in KEYS:
            entry = report["tables"][f"tap_analytics/{name} {ident}"]
            assert entry == {"rows": len(expected[name]), "exact": True}, (name, ident, entry)
    # Dagster's own partition status (what the UI shows) counts both accounts of every table
    assert report["materialized"] == {f"tap_analytics/{name}": list(IDS) for name in KEYS}


def stop_group(proc: subprocess.Popen, log: Path) -> None:
    """Stop a process started in a session of its own (`dagster dev` and what it started),
    and keep its log with the test's outputs."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    OUTPUTS.append(log.read_text())


HEARTBEATS = """
import dagster as dg
with dg.DagsterInstance.get() as instance:
    print(" ".join(sorted({h.daemon_id for h in instance.get_daemon_heartbeats().values()})))
"""


def test_fleet_sh_beside_dagster_dev_starts_no_second_daemon(
        server: FakeServer, cluster: Cluster, tmp_path: Path) -> None:
    """`scripts/dagster_dev.sh` (dagster dev: UI, daemon, code server) on fleet.sh's
    instance, then fleet.sh on that instance: fleet.sh says it starts no daemon, its run is
    launched by dagster dev's (Dagster's own launcher, a `dagster api execute_run` process)
    and lands; one daemon sends heartbeats throughout."""
    tenants = [{"id": "beside", "schema": "assets_beside", "settings": {
        "base_url": server.url, "api_key": "${ACME_KEY}", "page_size": 25,
        "backoff_factor": 0}}]
    env = fleet_env(tmp_path, tenants, cluster, ACME_KEY=server.api.api_key)
    log = tmp_path / "dev.log"
    with log.open("w") as out:
        dev = subprocess.Popen(["bash", str(ROOT / "scripts" / "dagster_dev.sh"), "-p",
                                str(free_port()), "-h", "127.0.0.1"], env=env, cwd=tmp_path,
                               stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ids: set[str] = set()
        deadline = time.monotonic() + 180
        while not ids:  # dagster dev's daemon is up once it sends heartbeats
            assert dev.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
            if "Serving dagster-webserver" not in log.read_text():
                continue  # the instance's storage is made by then: not opened beside it
            beats = subprocess.run([str(DAGSTER_BIN / "python"), "-c", HEARTBEATS], env=env,
                                   cwd=tmp_path, capture_output=True, text=True, timeout=120)
            ids = set(beats.stdout.split())
        done = fleet(env, "beside")
        assert done.returncode == 0, (done.stdout, done.stderr[-3000:])
        assert "another daemon runs on this instance" in done.stderr
        assert done.stdout.startswith("beside: landed: ")
        beats = subprocess.run([str(DAGSTER_BIN / "python"), "-c", HEARTBEATS], env=env,
                               cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert set(beats.stdout.split()) == ids, "a second daemon sent heartbeats"
        assert_tables_equal_server(cluster, "assets_beside", server)
    finally:
        stop_group(dev, log)
