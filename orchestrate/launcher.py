"""A Dagster run launcher for one machine whose run workers start warm.

Dagster's `DefaultRunLauncher` asks the code server to spawn a fresh Python for every run:
that process imports Dagster, its storage and this code location again (about 1.4 s of CPU,
more than a small account's whole sync). This launcher keeps one process that imported them
once (multiprocessing's forkserver, preloaded) and forks each run's worker from it. The
worker then runs exactly what `dagster api execute_run` runs (the command Dagster's Docker
and Kubernetes launchers start), so a run is still one process of its own: killed, it takes
no other run with it; its pid is in its engine event ("Started process for run (pid: N)")
and its tag, which `terminate` and Dagster's run monitoring use.

    run_launcher:
      module: orchestrate.launcher
      class: WarmRunLauncher
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import typing as t
from pathlib import Path

from dagster import DagsterRun
from dagster._core.launcher import RunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, LaunchRunContext, WorkerStatus
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClass, ConfigurableClassData, serialize_value

from orchestrate import warm_meltano

PID_TAG = "tap_analytics/worker_pid"
# what every run worker imports: loaded once, in the fork server
# (meltano.cli when Meltano is installed here: see orchestrate.warm_meltano)
PRELOAD = ["dagster", "dagster._cli.api", "orchestrate.definitions", "orchestrate.run_tenant",
           "meltano.cli"]


def execute(serialized_args: str) -> None:
    """The run worker's body: `dagster api execute_run`, in a forked, already warm process."""
    from dagster._cli.api import execute_run_command

    warm_meltano.prefork()  # while this process is still one thread
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
            self._context = multiprocessing.get_context("forkserver")
            self._context.set_forkserver_preload(PRELOAD)
        return self._context

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        args = ExecuteRunArgs(job_origin=run.job_code_origin, run_id=run.run_id,
                              instance_ref=self._instance.get_ref())
        process = self._forkserver().Process(target=execute, args=(serialize_value(args),),
                                             name=f"dagster-run-{run.run_id[:8]}")
        process.start()
        self._instance.add_run_tags(run.run_id, {PID_TAG: str(process.pid)})
        multiprocessing.active_children()  # reaps the runs that have ended

    def _pid(self, run_id: str) -> int | None:
        run = self._instance.get_run_by_id(run_id)
        pid = run.tags.get(PID_TAG) if run else None
        return int(pid) if pid else None

    def terminate(self, run_id: str) -> bool:
        pid = self._pid(run_id)
        if pid is None or not alive(pid):
            return False
        self._instance.report_run_canceling(self._instance.get_run_by_id(run_id))
        os.kill(pid, signal.SIGTERM)
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        pid = self._pid(run.run_id)
        if pid is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "no worker pid recorded")
        if alive(pid):
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker (pid {pid}) is gone")


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
