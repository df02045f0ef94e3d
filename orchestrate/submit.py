"""A backfill of accounts, submitted from this process, and Dagster's daemon hosted in it
while no other daemon runs on the instance (`DaemonSeat`).

`submit_backfill` is what `dagster job backfill -m orchestrate -j sync_tenants --partitions`
does (the same backfill record, the same runs, queued for the daemon), with the code location loaded
in this process instead of in a CLI process and a code server of its own: those two
imported Dagster and this code again on every `fleet.sh`, about 3 s of CPU. The functions
it calls are the CLI's own, from the Dagster version `orchestrate/requirements.txt` pins.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import typing as t
from pathlib import Path

from dagster import DagsterInstance
from dagster._cli.workspace.cli_target import (
    get_code_location_from_workspace,
    get_remote_job_from_remote_repo,
    get_remote_repository_from_code_location,
)
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.execution.job_backfill import create_backfill_run
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.utils import make_new_backfill_id
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.controller import (
    create_daemons_from_instance,
    daemon_controller_from_instance,
)
from dagster._daemon.daemon import DagsterDaemon, SensorDaemon
from dagster._time import get_current_timestamp

from orchestrate.tenants import ROOT

LOCATION = "orchestrate"  # the name `dagster-daemon run -m orchestrate` gives the location
JOB = "sync_tenants"


def in_process_target() -> InProcessWorkspaceLoadTarget:
    """This code location, loaded in the calling process, under the name a code server of
    `-m orchestrate` gives it (so runs created here are the runs Dagster's CLI would make)."""
    return InProcessWorkspaceLoadTarget([InProcessCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, module_name=LOCATION,
                             working_directory=str(ROOT)),
        location_name=LOCATION)])


@contextlib.contextmanager
def hosted_daemon(instance: DagsterInstance) -> t.Iterator[None]:
    """Dagster's daemon (its controller and every daemon `dagster-daemon run` starts: run
    queue, backfills, sensors, schedules) on threads of this process, with the code location
    loaded here: no daemon process and no code server importing Dagster again per
    `fleet.sh`."""
    with daemon_controller_from_instance(instance, workspace_load_target=in_process_target(),
                                         gen_daemons=daemons_but_sensors, log_level="warning"):
        yield


class DaemonSeat:
    """One daemon per instance: Dagster's daemon is hosted in this process only while it
    holds `DAGSTER_HOME/daemon.lock` (an flock, which `scripts/dagster_dev.sh` holds for
    `dagster dev`, whose own daemon then launches these runs). `take` is called again as
    the process waits, so a daemon that ends (a `dagster dev` stopped, another `fleet.sh`
    done) is replaced at once, and queued runs never wait for nobody."""

    def __init__(self, home: Path, host: t.Callable[[], t.ContextManager[None]],
                 say: t.Callable[[str], None]) -> None:
        self._fd = os.open(home / "daemon.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._host, self._say = host, say
        self._stack = contextlib.ExitStack()
        self.hosting = self._told = False

    def take(self) -> None:
        if self.hosting:
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not self._told:
                self._told = True
                self._say("fleet: another daemon runs on this instance (dagster dev, another "
                          "fleet.sh): it launches these runs; none is started here")
            return
        self._stack.enter_context(self._host())
        self.hosting = True

    def __enter__(self) -> DaemonSeat:
        self.take()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        os.close(self._fd)  # the lock ends with it


def daemons_but_sensors(instance: DagsterInstance) -> list[DagsterDaemon]:
    """Every daemon `dagster-daemon run` would start but the sensors': the one sensor keeps
    the partitions equal to the tenants file, which `fleet.sh` has just done itself."""
    return [d for d in create_daemons_from_instance(instance) if not isinstance(d, SensorDaemon)]


def submit_backfill(instance: DagsterInstance, ids: list[str], tags: dict[str, str]) -> str:
    """One queued run per account; returns the backfill's id."""
    with WorkspaceProcessContext(instance, in_process_target()) as process_context:
        workspace = process_context.create_request_context()
        location = get_code_location_from_workspace(workspace, LOCATION)
        repo = get_remote_repository_from_code_location(location, None)
        job = get_remote_job_from_remote_repo(repo, JOB)
        partition_set = next(p for p in repo.get_partition_sets() if p.job_name == JOB)
        backfill = PartitionBackfill(
            backfill_id=make_new_backfill_id(), status=BulkActionStatus.REQUESTED,
            partition_set_origin=partition_set.get_remote_origin(), partition_names=ids,
            from_failure=False, reexecution_steps=None, tags=tags,
            backfill_timestamp=get_current_timestamp())
        params: t.Any = location.get_partition_set_execution_params(
            repository_handle=repo.handle, partition_set_name=partition_set.name,
            partition_names=ids, instance=instance)
        for partition in params.partition_data:
            run = create_backfill_run(workspace, instance, location, job, partition_set,
                                      backfill, partition.name, partition.tags,
                                      partition.run_config)
            if run is not None:
                instance.submit_run(run.run_id, workspace)
        instance.add_backfill(backfill.with_status(BulkActionStatus.COMPLETED)
                              .with_end_timestamp(get_current_timestamp()))
        return backfill.backfill_id
