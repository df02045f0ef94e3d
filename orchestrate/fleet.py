"""`scripts/fleet.sh [ID...]`: run the named accounts (all when none) through Dagster.

It uses Dagster as it runs in production, on this machine: an instance (`DAGSTER_HOME`,
`.dagster/` by default) whose run queue holds runs while the pool `tap_analytics` is full
(`concurrency.pools.granularity: run`), the Dagster daemon dequeuing them, and a backfill
of the asset `tenant_sync`, one run per account. It prints one line per account (landed:
rows per table, or failed: the reason) and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from orchestrate.definitions import POOL, TENANTS
from orchestrate.run_tenant import prepare_state_database, run_environment
from orchestrate.tenants import ROOT, TenantError, load_tenants

TAG = "tap_analytics/fleet"
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
BIN = Path(sys.executable).parent


def instance_home(concurrency: int) -> Path:
    """The Dagster instance: the user's `DAGSTER_HOME`, or `.dagster/` here; a
    `dagster.yaml` is written where there is none."""
    home = Path(os.environ.get("DAGSTER_HOME") or ROOT / ".dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(yaml.safe_dump({
            "run_coordinator": {"module": "dagster.core.run_coordinator",
                                "class": "QueuedRunCoordinator",
                                "config": {"dequeue_interval_seconds": 1}},
            "concurrency": {"pools": {"granularity": "run", "default_limit": concurrency}},
            "telemetry": {"enabled": False},
        }))
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def start_daemon(home: Path) -> subprocess.Popen:
    log = (home / "daemon.log").open("ab")
    return subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-m", "orchestrate"],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def launch(ids: list[str], fleet: str) -> None:
    subprocess.run([str(BIN / "dagster"), "job", "backfill", "-m", "orchestrate", "-j",
                    "sync_tenants", "--partitions", ",".join(ids), "--noprompt",
                    "--tags", f'{{"{TAG}": "{fleet}"}}'], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)


def wait(instance: DagsterInstance, fleet: str, count: int, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    while True:
        runs = instance.get_runs(RunsFilter(tags={TAG: fleet}))
        if len(runs) >= count and all(r.status in FINISHED for r in runs):
            return runs
        if time.monotonic() > deadline:
            raise TimeoutError(f"the fleet did not finish in {timeout:.0f}s")
        time.sleep(0.5)


def outcome(instance: DagsterInstance, run) -> str:
    if run.status == DagsterRunStatus.SUCCESS:
        for record in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
            rows = record.dagster_event.event_specific_data.materialization.metadata.get("rows")
            if rows is not None:
                counts = rows.value
                return "landed: " + " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        return "landed"
    for record in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_FAILURE):
        data = record.dagster_event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            reason = data.user_failure_data.description.split(": ", 1)[-1]
        else:
            reason = data.error.message.strip().splitlines()[-1] if data.error else "unknown"
        return f"failed: {reason}"
    return f"failed: run {run.status.value.lower()}"


def register(instance: DagsterInstance, known: list[str]) -> None:
    """The asset's partitions become the tenants file's accounts."""
    have = set(instance.get_dynamic_partitions(TENANTS.name))
    instance.add_dynamic_partitions(TENANTS.name, [i for i in known if i not in have])
    for gone in have - set(known):
        instance.delete_dynamic_partition(TENANTS.name, gone)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="*", help="tenant ids (default: every tenant)")
    parser.add_argument("--timeout", type=float, default=float(
        os.environ.get("TAP_ANALYTICS_FLEET_TIMEOUT") or 3600))
    parser.add_argument("--register", action="store_true",
                        help="only make the tenants file's accounts the asset's partitions "
                             "(what the sensor does), e.g. before `dagster asset materialize`")
    args = parser.parse_args(argv)
    try:
        tenants = load_tenants()
    except TenantError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 2
    known = [t.id for t in tenants]
    ids = args.ids or known
    unknown = [i for i in ids if i not in known]
    if unknown:
        print(f"fleet: no tenant {unknown[0]!r} in the tenants file", file=sys.stderr)
        return 2
    concurrency = int(os.environ.get("TAP_ANALYTICS_FLEET_CONCURRENCY") or 4)
    home = instance_home(concurrency)
    if args.register:
        with DagsterInstance.get() as instance:
            register(instance, known)
        print(f"fleet: {len(known)} accounts are partitions of tenant_sync", file=sys.stderr)
        return 0
    prepare_state_database(run_environment({}, "unused", os.environ), os.environ)
    daemon = start_daemon(home)
    try:
        with DagsterInstance.get() as instance:
            instance.event_log_storage.set_concurrency_slots(POOL, concurrency)
            register(instance, known)
            fleet = uuid.uuid4().hex[:12]
            started = time.monotonic()
            launch(ids, fleet)
            runs = wait(instance, fleet, len(ids), args.timeout)
            results = {r.tags.get("dagster/partition"): outcome(instance, r) for r in runs}
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
    for ident in ids:
        print(f"{ident}: {results.get(ident, 'failed: no run')}")
    failed = [i for i in ids if not results.get(i, "").startswith("landed")]
    print(f"fleet: {len(ids) - len(failed)} landed, {len(failed)} failed in "
          f"{time.monotonic() - started:.1f}s ({concurrency} at once)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
