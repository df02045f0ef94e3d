"""A Dagster run launcher for one machine whose run workers start warm.

Dagster's `DefaultRunLauncher` asks the code server to spawn a fresh Python for every run:
that process imports Dagster, its storage and this code location again (about 1.4 s of CPU,
more than a small account's whole sync). This launcher keeps one process that imported them
once (multiprocessing's forkserver, preloaded) and forks each run's worker from it. The
worker then runs exactly what `dagster api execute_run` runs (the command Dagster's Docker
and Kubernetes launchers start), so a run is still one process of its own: killed, it takes
no other run with it; its pid is in its tag, which `terminate` and Dagster's run
monitoring use.

No account's key is in the fork server: it starts with the allow-listed part of the
daemon's environment (`worker_environment`), and each run's worker receives its own
account's variables (the `${VAR}` its tenant names) from the launcher, and no other's.

    run_launcher:
      module: orchestrate.launcher
      class: WarmRunLauncher
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import signal
import socket
import sys
import threading
import typing as t

from dagster import DagsterRun
from dagster._core.launcher import RunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, LaunchRunContext, WorkerStatus
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClass, ConfigurableClassData, serialize_value

from orchestrate import warm_meltano
from orchestrate.run_guard import proc_stat
from orchestrate.run_tenant import passed
from orchestrate.tenants import TenantError, tenant_by_id

PID_TAG = "tap_analytics/worker_pid"
WORKER_TAG = "tap_analytics/worker"  # "<host> <start time>" of the worker PID_TAG names
HOST = socket.gethostname()
# what every run worker imports: loaded once, in the fork server (a name that does not
# import is skipped). The storage its instance opens is imported lazily by Dagster, with
# alembic and upath: about 0.25 s of CPU per run when each worker imports it again.
# meltano.cli when Meltano is installed here: see orchestrate.warm_meltano.
PRELOAD = ["dagster", "dagster._cli.api", "dagster._core.storage.sqlite_storage",
           "dagster._core.storage.event_log.sqlite", "dagster._core.storage.runs.sqlite",
           "dagster._core.storage.schedules.sqlite", "dagster._core.storage.migration.utils",
           "dagster_postgres", "upath", "orchestrate.definitions", "orchestrate.run_tenant",
           "meltano.cli"]


def preload(main: t.Any) -> list[str]:
    """PRELOAD and the launching program's own module: multiprocessing runs it again in
    every worker (as `__mp_main__`), importing what it imports (`fleet.sh`'s imports
    Dagster's daemon: ~0.25 s of CPU per run) unless the fork server has them already.
    A package's `__main__` (`python -m dagster._daemon`, as `dagster dev` starts the
    daemon) is neither run again in workers nor imported here: importing it runs it."""
    spec = getattr(main, "__spec__", None)
    name = spec.name if spec is not None else "__main__"
    return [*PRELOAD, "__main__", *([] if name.rpartition(".")[2] == "__main__" else [name])]


# what a run worker needs of the daemon's environment beyond what its Meltano gets
WORKER_PREFIXES = ("DAGSTER_", "TAP_ANALYTICS_FLEET_")
WORKER_NAMES = {"TAP_ANALYTICS_TENANTS", "TAP_ANALYTICS_MELTANO", "TAP_ANALYTICS_MELTANO_PROJECT",
                "MELTANO_DATABASE_URI", "PYTHONPATH"}
_ENVIRON = threading.Lock()


def worker_environment(environ: t.Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items()
            if passed(k, environ) or k.startswith(WORKER_PREFIXES) or k in WORKER_NAMES}


def own_variables(run: DagsterRun, environ: t.Mapping[str, str]) -> dict[str, str]:
    """The variables the run's tenant names (its key among them), and no other's."""
    try:
        tenant = tenant_by_id(run.tags.get("dagster/partition", ""))
    except TenantError:
        return {}  # the run says why when it reads the tenants file itself
    return {name: environ[name] for name in tenant.references() if name in environ} \
        if tenant else {}


def execute(serialized_args: str, own: dict[str, str]) -> None:
    """The run worker's body: `dagster api execute_run`, in a forked, already warm process."""
    from dagster._cli.api import execute_run_command

    os.environ.update(own)
    warm_meltano.prefork()  # while this process is still one thread
    # `terminate` sends SIGTERM: an interrupt, as Dagster's own run workers take it (the
    # step stops its Meltano, the run ends canceled), not the process's sudden death
    signal.signal(signal.SIGTERM, signal.getsignal(signal.SIGINT))
    execute_run_command.main([serialized_args], prog_name="dagster api execute_run")


class WarmRunLauncher(RunLauncher, ConfigurableClass):
    def __init__(self, inst_data: ConfigurableClassData | None = None) -> None:
        self._inst_data = inst_data
        self._context: t.Any = None
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict:
        return {}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData,
                          config_value: t.Mapping[str, t.Any]) -> WarmRunLauncher:
        return cls(inst_data=inst_data)

    def _forkserver(self) -> t.Any:
        if self._context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(preload(sys.modules["__main__"]))
            # the fork server inherits the environment of the moment it starts: this one
            # holds no key (the swap is short; nothing else this process does reads a key)
            with _ENVIRON:
                saved = dict(os.environ)
                os.environ.clear()
                os.environ.update(worker_environment(saved))
                try:
                    multiprocessing.forkserver.ensure_running()
                finally:
                    os.environ.clear()
                    os.environ.update(saved)
            self._context = context
        return self._context

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        args = ExecuteRunArgs(job_origin=run.job_code_origin, run_id=run.run_id,
                              instance_ref=self._instance.get_ref())
        process = self._forkserver().Process(
            target=execute, args=(serialize_value(args), own_variables(run, os.environ)),
            name=f"dagster-run-{run.run_id[:8]}")
        process.start()
        self._instance.add_run_tags(run.run_id, {
            PID_TAG: str(process.pid), WORKER_TAG: f"{HOST} {started_at(process.pid)}"})
        multiprocessing.active_children()  # reaps the runs that have ended

    def _worker(self, run: DagsterRun | None) -> tuple[int, str, str] | None:
        """(pid, host, start time) of the run's worker, as its tags recorded them."""
        if run is None or not run.tags.get(PID_TAG):
            return None
        host, _, start = run.tags.get(WORKER_TAG, f"{HOST} ").partition(" ")
        return int(run.tags[PID_TAG]), host, start

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        worker = self._worker(run)
        if worker is None or worker[1] != HOST or not alive(worker[0], worker[2]):
            return False
        self._instance.report_run_canceling(run)
        os.kill(worker[0], signal.SIGTERM)
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        """For Dagster's run monitoring: a worker whose process is gone (killed, or the
        machine restarted) is FAILED, and Dagster marks its run failed and retries it."""
        worker = self._worker(run)
        if worker is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "no worker pid recorded")
        pid, host, start = worker
        if host != HOST:  # the daemon of that machine watches it
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"worker on {host}")
        if alive(pid, start):
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker (pid {pid}) is gone")


def started_at(pid: int) -> str:
    """The process's start time (clock ticks since boot): a pid reused after a restart
    is another process."""
    fields = proc_stat(pid)
    return fields[19] if fields else ""


def alive(pid: int, start: str = "") -> bool:
    """Whether the process runs (a zombie, dead but not yet reaped, does not), and is the
    one started at `start` when given."""
    fields = proc_stat(pid)
    return bool(fields) and fields[0] != "Z" and (not start or fields[19] == start)
