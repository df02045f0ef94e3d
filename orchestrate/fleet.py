"""`scripts/fleet.sh [ID...]`: run the named accounts (all when none) through Dagster.

It uses Dagster as it runs in production, on this machine: an instance (`DAGSTER_HOME`,
`.dagster/` by default) whose run queue holds runs while the pool `tap_analytics` is full
(`concurrency.pools.granularity: run`), Dagster's daemon dequeuing them (hosted on this
process's threads, `orchestrate.submit`), and a backfill of the job `sync_tenants` (every
table's asset), one run per account, each run's worker forked warm
(`orchestrate.launcher`). It prints one line per account (landed: rows per table, or
failed: the reason) and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
import typing as t
import uuid
from pathlib import Path

import yaml
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from orchestrate import staleness
from orchestrate.account_lock import fleet_concurrency, host_concurrency
from orchestrate.definitions import POOL, TENANTS
from orchestrate.run_tags import HOST_TAG
from orchestrate.run_tenant import prepare_state_database, run_environment, state_database_uri
from orchestrate.submit import DaemonSeat, hosted_daemon, submit_backfill
from orchestrate.tenants import ROOT, TenantError, load_tenants

TAG = "tap_analytics/fleet"
DAGSTER_DB = "TAP_ANALYTICS_FLEET_DAGSTER_DB"
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


OUT, ERR = sys.stdout, sys.stderr  # this process's own lines (log_to_file keeps them apart)
MARK = "# written by scripts/fleet.sh; delete this line to keep your own changes\n"


LAUNCHER = "TAP_ANALYTICS_FLEET_LAUNCHER"
LAUNCHERS = ("warm", "default")


def launcher_choice(environ: t.Mapping[str, str], default: str) -> str:
    """The launcher of `scripts/dagster_dev.sh`'s instance: `default` (Dagster's own
    `DefaultRunLauncher`, a fresh `dagster api execute_run` per run, as Kubernetes starts a
    pod per run) unless the user opts in to `warm` (`orchestrate.launcher`: run workers
    forked from a warm fork server, what `fleet.sh` always uses)."""
    value = (environ.get(LAUNCHER) or default).strip().lower()
    if value not in LAUNCHERS:
        raise ValueError(f"{LAUNCHER}={value!r}: expected one of {', '.join(LAUNCHERS)}")
    return value


def instance_config(concurrency: int, environ: t.Mapping[str, str],
                    launcher: str = "warm") -> dict:
    """The Dagster instance fleet runs need: a run queue that starts at most one run per
    account (tag `dagster/partition`), at most `host_concurrency` per API host (tag
    `tap_analytics/api_host`) and `concurrency` in all (the pool); run workers forked warm
    (`orchestrate.launcher`); runs re-executed when their worker died (a kill, a node
    lost); storage in PostgreSQL when the user names one (`TAP_ANALYTICS_FLEET_DAGSTER_DB`,
    a postgresql:// URL, read from the environment by Dagster), as the Helm chart keeps
    it; else SQLite files in the instance's folder."""
    config: dict[str, t.Any] = {
        "run_launcher": {"module": "orchestrate.launcher", "class": "WarmRunLauncher"},
        "run_coordinator": {"module": "orchestrate.coordinator",
                            "class": "AccountRunCoordinator",
                            "config": {"dequeue_interval_seconds": 1}},
        "concurrency": {"pools": {"granularity": "run", "default_limit": concurrency},
                        "runs": {"tag_concurrency_limits": [
                            {"key": "dagster/partition",
                             "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
                            {"key": HOST_TAG, "value": {"applyLimitPerUniqueValue": True},
                             "limit": host_concurrency(
                                 {**environ, "TAP_ANALYTICS_FLEET_CONCURRENCY": str(concurrency)})}
                        ]}},
        # a run whose worker is gone (killed, the machine restarted) is failed by Dagster
        # (orchestrate.launcher's health check), then retried by run_retries
        "run_monitoring": {"enabled": True, "start_timeout_seconds": 180,
                           "cancel_timeout_seconds": 60, "max_resume_run_attempts": 0,
                           "poll_interval_seconds": int(
                               environ.get("TAP_ANALYTICS_FLEET_MONITOR_INTERVAL") or 5)},
        "run_retries": {"enabled": True, "retry_on_asset_or_op_failure": False,
                        "max_retries": int(environ.get("TAP_ANALYTICS_FLEET_RUN_RETRIES") or 2)},
        "telemetry": {"enabled": False},
        # Dagster's freshness daemon only where its policies are set; no automation
        # conditions here: that daemon would only tick
        "freshness": {"enabled": bool(environ.get("TAP_ANALYTICS_FLEET_FRESHNESS_HOURS"))},
        "auto_materialize": {"enabled": False, "use_sensors": False},
    }
    if launcher == "default":
        del config["run_launcher"]  # Dagster's DefaultRunLauncher
    if environ.get(DAGSTER_DB):
        config["storage"] = {"postgres": {"postgres_url": {"env": DAGSTER_DB}}}
    return config


def instance_home(concurrency: int, launcher: str = "warm") -> Path:
    """The Dagster instance: the user's `DAGSTER_HOME`, or `.dagster/` here. Its
    `dagster.yaml` is written when there is none, and kept current while it is ours."""
    home = Path(os.environ.get("DAGSTER_HOME") or ROOT / ".dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or config.read_text().startswith(MARK):
        config.write_text(MARK + yaml.safe_dump(instance_config(concurrency, os.environ,
                                                                launcher)))
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def launch(instance: DagsterInstance, ids: list[str], fleet: str) -> None:
    submit_backfill(instance, ids, {TAG: fleet})


def latest_runs(instance: DagsterInstance, fleet: str) -> dict[str, t.Any]:
    """The newest run of each account of this fleet (a re-executed run replaces the one
    whose worker died)."""
    latest: dict[str, t.Any] = {}
    for run in instance.get_runs(RunsFilter(tags={TAG: fleet})):  # newest first
        latest.setdefault(run.tags.get("dagster/partition", ""), run)
    return latest


def dead_runs(instance: DagsterInstance, runs: dict[str, t.Any]) -> list[str]:
    """The accounts whose run failed without its step failing: its worker died (Dagster's
    run monitoring saw the process gone and failed the run)."""
    return [ident for ident, run in runs.items()
            if run.status == DagsterRunStatus.FAILURE and not instance.all_logs(
                run.run_id, of_type=DagsterEventType.STEP_FAILURE)]


def wait(instance: DagsterInstance, fleet: str, count: int, timeout: float,
         every_second: t.Callable[[], None] = lambda: None) -> dict:
    """Until every account's newest run has finished; an account whose run was killed
    whole is run again at once (a backfill's runs are not re-executed by Dagster's
    `run_retries` once the backfill is complete), at most `TAP_ANALYTICS_FLEET_RUN_RETRIES`
    times."""
    deadline = time.monotonic() + timeout
    budget = int(os.environ.get("TAP_ANALYTICS_FLEET_RUN_RETRIES") or 2)
    again: dict[str, int] = {}
    replaced: set[str] = set()  # killed runs whose new run the backfill has yet to create
    while True:
        runs = latest_runs(instance, fleet)
        for ident in dead_runs(instance, runs):
            if again.get(ident, 0) < budget and runs[ident].run_id not in replaced:
                again[ident] = again.get(ident, 0) + 1
                print(f"fleet: {ident}: its run was killed; running it again", file=ERR)
                replaced.add(runs[ident].run_id)
                launch(instance, [ident], fleet)
        if len(runs) >= count and all(r.status in FINISHED and r.run_id not in replaced
                                      for r in runs.values()):
            return runs
        if time.monotonic() > deadline:
            raise TimeoutError(f"the fleet did not finish in {timeout:.0f}s")
        time.sleep(1)
        every_second()


def say_who_waits(instance: DagsterInstance, ids: list[str]) -> None:
    """An account already syncing (a schedule tick, another fleet.sh) is not started twice:
    its new run waits in the queue for the running one."""
    busy = instance.get_runs(RunsFilter(statuses=[
        DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.QUEUED]))
    for run in busy:
        ident = run.tags.get("dagster/partition")
        if ident in ids:
            print(f"fleet: {ident} is already syncing (run {run.run_id[:8]}); its run waits "
                  "for that one (one sync per account at a time)", file=ERR)


def outcome(instance: DagsterInstance, run) -> str:
    if run.status == DagsterRunStatus.SUCCESS:
        counts = {}
        for record in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
            materialization = record.dagster_event.event_specific_data.materialization
            rows = materialization.metadata.get("dagster/partition_row_count")
            if rows is not None:
                counts[materialization.asset_key.path[-1]] = rows.value
        return "landed: " + " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    if run.status == DagsterRunStatus.CANCELED:
        return "failed: run canceled"
    for record in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_FAILURE):
        data = record.dagster_event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            reason = data.user_failure_data.description.split(": ", 1)[-1]
        else:
            reason = data.error.message.strip().splitlines()[-1] if data.error else "unknown"
        return f"failed: {reason}"
    for record in instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_FAILURE):
        return f"failed: {record.dagster_event.message or 'run failure'}"
    return f"failed: run {run.status.value.lower()}"


def log_to_file(home: Path) -> None:
    """What Dagster's daemon and the runs print (each run worker's Dagster log, Meltano's
    lines) goes to `DAGSTER_HOME/daemon.log`, as the daemon process's output did; this
    process keeps its own stdout and stderr for its lines (a caller reading only those at
    the end must not block the runs on a full pipe)."""
    global OUT, ERR
    sys.stdout.flush()
    sys.stderr.flush()
    OUT = os.fdopen(os.dup(1), "w", buffering=1)
    ERR = os.fdopen(os.dup(2), "w", buffering=1)
    log = os.open(home / "daemon.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


def register(instance: DagsterInstance, known: list[str]) -> None:
    """The asset's partitions become the tenants file's accounts."""
    have = set(instance.get_dynamic_partitions(TENANTS.name))
    instance.add_dynamic_partitions(TENANTS.name, [i for i in known if i not in have])
    for gone in have - set(known):
        instance.delete_dynamic_partition(TENANTS.name, gone)


def report_stale(ids: list[str]) -> int:
    limit = staleness.stale_after(os.environ)
    last = staleness.last_syncs(state_database_uri(os.environ)[0])
    verdicts = staleness.judge(ids, last, datetime.datetime.now(datetime.timezone.utc), limit)
    for verdict in verdicts:
        state = "stale" if verdict.stale else "fresh"
        print(f"{verdict.account}: {state}: {verdict.description(limit)}", file=OUT)
    return 1 if any(v.stale for v in verdicts) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="*", help="tenant ids (default: every tenant)")
    parser.add_argument("--timeout", type=float, default=float(
        os.environ.get("TAP_ANALYTICS_FLEET_TIMEOUT") or 3600))
    parser.add_argument("--register", action="store_true",
                        help="only make the tenants file's accounts the asset's partitions "
                             "(what the sensor does), e.g. before `dagster asset materialize`")
    parser.add_argument("--instance", action="store_true",
                        help="only write the instance's dagster.yaml (run queue, pool, limits, "
                             "run monitoring; Dagster's own run launcher unless "
                             "TAP_ANALYTICS_FLEET_LAUNCHER=warm) and print DAGSTER_HOME: "
                             "`scripts/dagster_dev.sh`")
    parser.add_argument("--stale", action="store_true",
                        help="only print each account's last successful sync and whether it "
                             "is stale (TAP_ANALYTICS_FLEET_STALE_HOURS); exit 1 if any is: "
                             "for cron or any monitor")
    args = parser.parse_args(argv)
    concurrency = fleet_concurrency(os.environ)
    try:
        # fleet.sh's daemon has its code location in this process, which Dagster's own
        # launcher cannot start runs from: the warm one; `dagster dev` has a code server
        home = instance_home(concurrency, launcher_choice(os.environ, "default")
                             if args.instance else "warm")
    except ValueError as exc:
        print(f"fleet: {exc}", file=ERR)
        return 2
    if args.instance:
        print(home, file=OUT)
        return 0
    try:
        tenants = load_tenants()
    except TenantError as exc:
        print(f"fleet: {exc}", file=ERR)
        return 2
    known = [t.id for t in tenants]
    ids = args.ids or known
    unknown = [i for i in ids if i not in known]
    if unknown:
        print(f"fleet: no tenant {unknown[0]!r} in the tenants file", file=ERR)
        return 2
    if args.stale:
        return report_stale(ids)
    if args.register:
        with DagsterInstance.get() as instance:
            register(instance, known)
        print(f"fleet: {len(known)} accounts are partitions of the tables' assets", file=ERR)
        return 0
    prepare_state_database(run_environment({}, "unused", os.environ), os.environ)
    log_to_file(home)
    with DagsterInstance.get() as instance, DaemonSeat(
            home, lambda: hosted_daemon(instance), lambda line: print(line, file=ERR)) as seat:
        instance.event_log_storage.set_concurrency_slots(POOL, concurrency)
        register(instance, known)
        fleet = uuid.uuid4().hex[:12]
        started = time.monotonic()
        say_who_waits(instance, ids)
        launch(instance, ids, fleet)
        runs = wait(instance, fleet, len(ids), args.timeout, seat.take)
        results = {ident: outcome(instance, r) for ident, r in runs.items()}
    for ident in ids:
        print(f"{ident}: {results.get(ident, 'failed: no run')}", file=OUT)
    failed = [i for i in ids if not results.get(i, "").startswith("landed")]
    print(f"fleet: {len(ids) - len(failed)} landed, {len(failed)} failed in "
          f"{time.monotonic() - started:.1f}s ({concurrency} at once)", file=ERR)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
