"""One account's run in the fleet, piece by piece: its lock (one sync per account, freed when
its holder dies), its environment (an allow list: no other account's key), and its end (an
interrupted run stops Meltano, the tap and the target). Real PostgreSQL, real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from orchestrate.account_lock import AccountBusy, account_lock, host_concurrency, when_busy
from orchestrate.process_group import GroupedProcess
from orchestrate.run_guard import group_alive
from orchestrate.run_tenant import run_environment
from tests.pg import DAGSTER_BIN, ROOT, Cluster

HOLD = """
import sys, time
from orchestrate.account_lock import account_lock
class Log:
    def info(self, msg): print(msg, flush=True)
with account_lock(sys.argv[1], sys.argv[2], "tap-analytics run holder01", Log()):
    print("held", flush=True)
    time.sleep(600)
"""


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str) -> None:
        self.lines.append(msg)


def state_uri(cluster: Cluster) -> str:
    return (f"postgresql+psycopg://{cluster.user}@127.0.0.1:{cluster.port}/{cluster.database}"
            "?options=-csearch_path%3Dmeltano")


def hold(account: str, uri: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, account, uri], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout.readline().strip() == "held"
    return proc


def acquired_within(account: str, uri: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with account_lock(account, uri, "tap-analytics run probe", Lines(), busy="skip"):
                return True
        except AccountBusy:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)


@pytest.mark.postgres
def test_one_sync_per_account_and_a_killed_holder_frees_it_at_once(cluster: Cluster) -> None:
    uri = state_uri(cluster)
    holder = hold("acme", uri)
    try:
        busy = r"account acme is being synced by tap-analytics run holder01; this run ends"
        with (pytest.raises(AccountBusy, match=busy),
              account_lock("acme", uri, "tap-analytics run second", Lines(), busy="skip")):
            pytest.fail("two syncs of one account")
        with account_lock("globex", uri, "tap-analytics run other", Lines(), busy="skip"):
            pass  # another account is not held up

        waited, log, entered = [], Lines(), threading.Event()

        def second() -> None:
            with account_lock("acme", uri, "tap-analytics run waiter", log, poll=0.02):
                waited.append(holder.poll())  # the holder had ended when this one got in
                entered.set()

        thread = threading.Thread(target=second)
        thread.start()
        while not log.lines:  # it says it waits, then waits
            time.sleep(0.01)
        assert log.lines == ["account acme is being synced by tap-analytics run holder01; this "
                             "run waits for it (one sync per account at a time)"]
        assert not entered.is_set()
        holder.send_signal(signal.SIGKILL)
        thread.join(timeout=30)
        assert entered.is_set() and waited == [-signal.SIGKILL]
        assert acquired_within("acme", uri, 5)
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.postgres
def test_a_host_has_at_most_its_limit_of_syncs_whatever_launched_them(cluster: Cluster
                                                                     ) -> None:
    """Slots of an API host beside the account's lock: two accounts of one host with a
    limit of two hold both slots; a third account of that host waits (and says so) until
    one of them ends; an account of another host does not wait."""
    uri = state_uri(cluster)
    log = Lines()
    entered = threading.Event()
    with account_lock("a1", uri, "run 1", Lines(), host=("api.example.com", 2)), \
            account_lock("a2", uri, "run 2", Lines(), host=("api.example.com", 2)):
        with account_lock("b1", uri, "run b", Lines(), host=("other.example.com", 2),
                          timeout=2):
            pass

        def third() -> None:
            with account_lock("a3", uri, "run 3", log, poll=0.02,
                              host=("api.example.com", 2)):
                entered.set()

        thread = threading.Thread(target=third)
        thread.start()
        while not log.lines:
            time.sleep(0.01)
        assert log.lines == ["API host api.example.com has 2 syncs running "
                             "(TAP_ANALYTICS_FLEET_HOST_CONCURRENCY); this run waits for a slot"]
        assert not entered.wait(0.3)
    thread.join(timeout=30)
    assert entered.is_set()
    assert host_concurrency({}) == 4
    assert host_concurrency({"TAP_ANALYTICS_FLEET_CONCURRENCY": "6"}) == 6
    assert host_concurrency({"TAP_ANALYTICS_FLEET_HOST_CONCURRENCY": "1"}) == 1


def test_a_state_database_that_is_not_postgresql_is_refused() -> None:
    with (pytest.raises(ValueError, match="keeps its state in PostgreSQL"),
          account_lock("acme", "sqlite:///x.db", "run", Lines())):
        pass
    assert when_busy({}) == "wait"
    assert when_busy({"TAP_ANALYTICS_FLEET_WHEN_BUSY": "Skip"}) == "skip"
    with pytest.raises(ValueError, match="TAP_ANALYTICS_FLEET_WHEN_BUSY='later'"):
        when_busy({"TAP_ANALYTICS_FLEET_WHEN_BUSY": "later"})


def test_a_run_sees_an_allow_list_of_the_orchestrators_environment() -> None:
    environ = {"PATH": "/bin", "LC_ALL": "C.UTF-8", "ACME_KEY": "k-acme",
               "GLOBEX_SECRET": "k-globex", "DAGSTER_PG_PASSWORD": "dagster-db-secret",
               "TAP_ANALYTICS_FLEET_DAGSTER_DB": "postgresql://u:dagster-db-secret@h/d",
               "AWS_SECRET_ACCESS_KEY": "cloud", "TAP_ANALYTICS_PAGE_SIZE": "7",
               "TARGET_POSTGRES_HOST": "db", "MELTANO_STATE_ID": "someone-elses",
               "CORP_CA": "/ca.pem", "PROXY_USER": "p",
               "TAP_ANALYTICS_FLEET_PASS_ENV": "CORP_CA, PROXY_*"}
    env = run_environment({"TAP_ANALYTICS_API_KEY": "k-acme"}, "acme", environ, {"ACME_KEY"})
    assert {k for k in env if k in environ} == {
        "PATH", "LC_ALL", "ACME_KEY", "TARGET_POSTGRES_HOST", "CORP_CA", "PROXY_USER"}
    assert env["TAP_ANALYTICS_API_KEY"] == "k-acme"
    assert env["TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA"] == "acme"
    assert not {"k-globex", "dagster-db-secret", "cloud", "someone-elses"} & {
        v for value in env.values() for v in [value, *value.split(":")]}


def test_an_interrupted_run_stops_its_whole_group_at_once() -> None:
    """A step interrupted while it reads Meltano's output (Dagster's terminate raises in
    it) stops Meltano and what Meltano started, instead of waiting for them to finish."""
    script = "sleep 300 & echo started; wait"
    with (pytest.raises(KeyboardInterrupt),
          GroupedProcess(["bash", "-c", script], limit=600) as proc):
        assert proc.stdout.readline().strip() == "started"
        raise KeyboardInterrupt
    assert proc.returncode == -signal.SIGTERM
    assert not group_alive(proc.pid)  # the background sleep too


PROBE = """
import multiprocessing, sys
import probe_dep  # notes the pid of each process that imports it
from orchestrate import launcher
STORAGE = ["dagster._core.storage.event_log.sqlite", "dagster._core.storage.runs.sqlite",
           "alembic", "upath"]

def target(queue):
    queue.put([name for name in STORAGE if name not in sys.modules])

if __name__ == "__main__":
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(launcher.preload(sys.modules["__main__"]))
    queue = context.Queue()
    for _ in range(2):
        worker = context.Process(target=target, args=(queue,))
        worker.start()
        print(queue.get(timeout=60), worker.pid, flush=True)
        worker.join()
"""


def test_run_workers_start_with_what_they_import_already_loaded(tmp_path: Path) -> None:
    """A run worker forked by `orchestrate.launcher` finds its instance's storage modules
    loaded by the fork server, and does not import the launching program's imports again
    (multiprocessing runs the main module again in each worker)."""
    (tmp_path / "probe_main.py").write_text(PROBE)
    (tmp_path / "probe_dep.py").write_text(
        f"import os\nwith open({str(tmp_path / 'imported')!r}, 'a') as f:\n"
        "    f.write(f'{os.getpid()}\\n')\n")
    proc = subprocess.run([str(DAGSTER_BIN / "python"), "-m", "probe_main"], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": f"{tmp_path}:{ROOT}"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    workers = [line.rsplit(" ", 1) for line in proc.stdout.splitlines()]
    assert [missing for missing, _ in workers] == ["[]", "[]"], proc.stdout
    importers = (tmp_path / "imported").read_text().split()
    assert len(importers) == 2, importers  # the program and the fork server, no worker
    assert not {pid for _, pid in workers} & set(importers)


PRELOADED = """
import types
from orchestrate.launcher import PRELOAD, preload
def main(name):
    return types.SimpleNamespace(__spec__=types.SimpleNamespace(name=name) if name else None)
for name in ("orchestrate.fleet", "dagster._daemon.__main__", None):
    print(preload(main(name))[len(PRELOAD):])
"""


def test_a_package_main_is_never_imported_by_the_fork_server() -> None:
    """`dagster dev` starts the daemon as `python -m dagster._daemon`: importing its
    `__main__` runs a daemon, so the fork server must not preload it (multiprocessing does
    not run it again in workers either). A script's main is loaded by path (`__main__`)."""
    proc = subprocess.run([str(DAGSTER_BIN / "python"), "-c", PRELOADED], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [
        "['__main__', 'orchestrate.fleet']", "['__main__']", "['__main__']"]
