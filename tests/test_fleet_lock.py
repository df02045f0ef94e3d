"""Nothing of a dead run loads beside the next sync of its account, with real processes:
the run worker alone is SIGKILLed mid-sync and a second sync of the account starts at once
from another Dagster instance; and a sync whose lock's session is ended stops."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from orchestrate.run_guard import proc_stat
from tests import fleet_faults
from tests.helpers import OUTPUTS, start_server
from tests.pg import ROOT, Cluster
from tests.test_fleet import fleet, fleet_env
from tests.test_fleet_assets import DAGSTER, account
from tests.test_postgres import assert_tables_equal_server

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]


def alive(pid: int) -> bool:
    fields = proc_stat(pid)
    return fields is not None and fields[0] != "Z"


def wait_for(until, what: str, *procs: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert all(p.poll() is None for p in procs), what
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def materialize_all(env: dict, ident: str, log: Path) -> subprocess.Popen:
    """`dagster asset materialize` of every table of the account, its output in `log`."""
    with open(log, "w") as out:
        return subprocess.Popen([str(DAGSTER), "asset", "materialize", "-m", "orchestrate",
                                 "--select", "*", "--partition", ident], env=env, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)


def output(proc: subprocess.Popen, log: Path, timeout: float = 300) -> str:
    proc.wait(timeout=timeout)
    text = log.read_text()
    OUTPUTS.append(text)
    return text


def test_a_killed_run_worker_leaves_no_loader_beside_the_next_sync(
        cluster: Cluster, tmp_path: Path) -> None:
    server = start_server(scale=300, segments=3, latency_ms=150)
    try:
        env = account(server, cluster, tmp_path, "orphan", max_concurrency=1)
        env.update(TAP_ANALYTICS_FLEET_RUN_RETRIES="0", TAP_ANALYTICS_FLEET_RETRIES="0")
        other = {**env, "DAGSTER_HOME": str(tmp_path / "dagster-2")}
        assert fleet(other, "--register").returncode == 0
        with open(tmp_path / "first.log", "w") as log:
            first = subprocess.Popen(["bash", str(ROOT / "scripts" / "fleet.sh"), "orphan"],
                                     env=env, stdout=log, stderr=subprocess.STDOUT)
        schema = "assets_orphan"
        wait_for(lambda: fleet_faults.of_account(schema, "target")
                 and len(server.requests()) > 12, "the first sync never got going", first)
        plugins = fleet_faults.of_account(schema, "tap") + fleet_faults.of_account(
            schema, "target")
        table = fleet_faults.processes()
        worker = table[fleet_faults.of_account(schema, "meltano")[0]][2]
        # the tap and the target busy (stopped here, so that they outlive Meltano by more
        # than a moment whatever the machine's speed), then the run worker alone killed,
        # as the OOM killer would
        for pid in plugins:
            os.kill(pid, signal.SIGSTOP)
        os.kill(worker, signal.SIGKILL)
        second = materialize_all(other, "orphan", tmp_path / "second.log")
        overlap, seen = [], False
        deadline = time.monotonic() + 300
        while second.poll() is None and time.monotonic() < deadline:
            newer = [p for p in fleet_faults.of_account(schema, "tap") if p not in plugins]
            if newer and not seen:
                seen = True
                overlap = [p for p in plugins if alive(p)]
                for pid in plugins:  # what is left of the dead run loads on
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGCONT)
                server.admin("config", {"latency_ms": 0})
            time.sleep(0.02)
        out = output(second, tmp_path / "second.log")
        first.kill()
        first.wait()
        OUTPUTS.append((tmp_path / "first.log").read_text())
        assert second.returncode == 0, out[-3000:]
        assert seen, "the second sync's tap was never seen"
        assert not overlap, f"the dead run's tap or target ran beside the next sync: {overlap}"
        assert not any(alive(p) for p in plugins)
        assert_tables_equal_server(cluster, schema, server)
    finally:
        server.server.shutdown()
        server.server.server_close()


def test_a_sync_whose_lock_is_lost_stops(cluster: Cluster, tmp_path: Path) -> None:
    server = start_server(scale=300, segments=3, latency_ms=100)
    try:
        env = account(server, cluster, tmp_path, "lost", max_concurrency=1)
        env.update(TAP_ANALYTICS_FLEET_RETRIES="0", TAP_ANALYTICS_FLEET_LOCK_CHECK="0.5")
        proc = materialize_all(env, "lost", tmp_path / "lost.log")
        schema = "assets_lost"
        wait_for(lambda: fleet_faults.of_account(schema, "target")
                 and len(server.requests()) > 8, "the sync never got going", proc)
        plugins = fleet_faults.of_account(schema, "tap") + fleet_faults.of_account(
            schema, "target")
        with cluster.connect() as con:
            ended = con.execute(  # the session holding the account's lock and host slot
                "select pg_terminate_backend(pid) from pg_stat_activity where "
                "application_name like 'tap-analytics %' and pid in (select pid from "
                "pg_locks where locktype = 'advisory' and granted)").fetchall()
        assert ended == [(True,)], ended
        out = output(proc, tmp_path / "lost.log", timeout=120)
        assert proc.returncode != 0
        assert "the account's lock was lost" in out, out[-3000:]
        assert not any(alive(p) for p in plugins), "the sync went on without its lock"
    finally:
        server.server.shutdown()
        server.server.server_close()


def test_the_host_limit_holds_for_runs_without_its_tag(cluster: Cluster, tmp_path: Path
                                                       ) -> None:
    """Two accounts of one API host started at once with `dagster asset materialize` (a
    run of the asset job: no host tag for the run queue to limit): with a limit of one per
    host, never both syncing at once; the second says it waits for a slot; both land."""
    servers = [start_server(scale=80, segments=2, latency_ms=40, api_key=f"slot-key-{i}3p")
               for i in range(2)]
    try:
        tenants = [{"id": f"slot_{i}", "settings": {
            "base_url": s.url, "api_key": f"${{SLOT_KEY_{i}}}", "page_size": 20,
            "max_concurrency": 1, "backoff_factor": 0}} for i, s in enumerate(servers)]
        env = fleet_env(tmp_path, tenants, cluster, TAP_ANALYTICS_FLEET_HOST_CONCURRENCY="1",
                        **{f"SLOT_KEY_{i}": s.api.api_key for i, s in enumerate(servers)})
        assert fleet(env, "--register").returncode == 0
        procs = [materialize_all(env, f"slot_{i}", tmp_path / f"slot_{i}.log")
                 for i in range(2)]
        most = 0
        while any(p.poll() is None for p in procs):
            most = max(most, sum(bool(fleet_faults.of_account(f"slot_{i}", "tap"))
                                 for i in range(2)))
            time.sleep(0.02)
        outs = [output(p, tmp_path / f"slot_{i}.log") for i, p in enumerate(procs)]
        assert all(p.returncode == 0 for p in procs), [o[-2000:] for o in outs]
        assert most == 1, "two syncs of one API host at once"
        assert any("API host 127.0.0.1 has 1 syncs running" in o for o in outs)
        for i, server in enumerate(servers):
            assert_tables_equal_server(cluster, f"slot_{i}", server)
    finally:
        for server in servers:
            server.server.shutdown()
            server.server.server_close()
