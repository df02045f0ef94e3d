"""What one schedule tick costs Dagster's daemon as the accounts grow: CPU of the sensor
(partitions kept equal to the tenants file), of the schedule's evaluation with the tags of
every run it requests (Dagster resolves them through `partition_tags`), and the memory of
the code location, at each number of accounts, each in a fresh process.

    .venv-dagster/bin/python bench/tick.py [--accounts 50,500,5000]

Each size gets a tenants file of its own (accounts spread over 5 API hosts, a key variable
each, all set) and a Dagster instance of its own, its storage in a throwaway PostgreSQL
(`--storage sqlite`: Dagster's SQLite files, which keep one event-log database per run).
Printed per size: the first tick (the sensor adds every partition), a steady tick (nothing
changed), CPU per account, the code location's resident memory (the process's peak), and
up to `--submit-up-to` accounts the CPU of what `fleet.sh` does before its first run can
start (the backfill: one queued run per account, `orchestrate.submit`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pg import Cluster, start_cluster, stop_cluster  # noqa: E402


def tenants_file(count: int, folder: Path) -> tuple[Path, dict[str, str]]:
    lines = ["tenants:"]
    env = {}
    for i in range(count):
        lines += [f"  - id: account_{i}", "    settings:",
                  f"      base_url: https://api{i % 5}.example.com",
                  f"      api_key: ${{ACCOUNT_{i}_KEY}}"]
        env[f"ACCOUNT_{i}_KEY"] = f"key-{i}"
    path = folder / "tenants.yml"
    path.write_text("\n".join(lines) + "\n")
    return path, env


def measure(submit: bool) -> dict[str, float]:
    """In the child: one instance, the code location, two ticks (and fleet.sh's backfill)."""
    import dagster as dg

    from orchestrate.definitions import defs, every_tenant, tenants_file_sensor
    from orchestrate.submit import submit_backfill
    from orchestrate.tenants import load_tenants

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    out = {}
    repository = defs.get_repository_def()
    now = datetime.datetime.now(datetime.timezone.utc)
    url = os.environ.get("TICK_BENCH_DAGSTER_DB")
    overrides = {"storage": {"postgres": {"postgres_url": url}}} if url else None
    with dg.instance_for_test(overrides=overrides) as instance:
        for tick in ("first", "steady"):
            start = cpu()
            with dg.build_sensor_context(instance=instance,
                                         repository_def=repository) as context:
                result = tenants_file_sensor.evaluate_tick(context)
            for request in result.dynamic_partitions_requests or []:
                if isinstance(request, dg.AddDynamicPartitionsRequest) and request.partition_keys:
                    instance.add_dynamic_partitions(request.partitions_def_name,
                                                    request.partition_keys)
            sensor = cpu() - start
            with dg.build_schedule_context(instance=instance, repository_def=repository,
                                           scheduled_execution_time=now) as context:
                data = every_tenant.evaluate_tick(context)
            requests = data.run_requests or []
            assert all(r.tags.get("tap_analytics/api_host") for r in requests), "no host tag"
            out[f"{tick}_sensor"] = sensor
            out[f"{tick}_schedule"] = cpu() - start - sensor
            out[f"{tick}_runs"] = len(requests)
        if submit:  # what fleet.sh does before its first run starts: one queued run each
            start = cpu()
            submit_backfill(instance, [t.id for t in load_tenants()], {"bench": "1"})
            out["submit"] = cpu() - start
            out["queued"] = len(instance.get_run_ids())
    out["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", default="50,500,5000")
    parser.add_argument("--submit-up-to", type=int, default=500,
                        help="also time fleet.sh's backfill submission up to this many")
    parser.add_argument("--storage", choices=("postgres", "sqlite"), default="postgres",
                        help="Dagster's storage (postgres: as a fleet of many accounts keeps "
                             "it; a throwaway PostgreSQL is started)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(bool(args.child))))
        return
    python = ROOT / ".venv-dagster" / "bin" / "python"
    cluster = start_cluster() if args.storage == "postgres" else None
    try:
        sizes(args, python, cluster)
    finally:
        if cluster:
            stop_cluster(cluster)


def sizes(args: argparse.Namespace, python: Path, cluster: Cluster | None) -> None:
    print(f"Dagster storage: {args.storage}")
    print(f"{'accounts':>8} {'tick 1 CPU s':>12} {'steady CPU s':>12} {'sensor s':>9} "
          f"{'schedule s':>10} {'ms/account':>10} {'RSS MiB':>8} {'wall s':>7} "
          f"{'fleet.sh backfill CPU s':>23}")
    for count in (int(n) for n in args.accounts.split(",")):
        with tempfile.TemporaryDirectory() as folder:
            path, keys = tenants_file(count, Path(folder))
            env = {**os.environ, **keys, "TAP_ANALYTICS_TENANTS": str(path),
                   "DAGSTER_HOME": folder, "PYTHONPATH": str(ROOT)}
            if cluster:
                database = f"tick_{count}"
                with cluster.connect() as con:
                    con.execute(f"create database {database}")
                env["TICK_BENCH_DAGSTER_DB"] = (f"postgresql://{cluster.user}@127.0.0.1:"
                                                f"{cluster.port}/{database}")
            started = time.monotonic()
            submit = count <= args.submit_up_to
            proc = subprocess.run([str(python), __file__, "--child", str(int(submit))],
                                  env=env, check=True,
                                  capture_output=True, text=True, cwd=ROOT)
            wall = time.monotonic() - started
        m = json.loads(proc.stdout.splitlines()[-1])
        assert m["steady_runs"] == count, m
        first = m["first_sensor"] + m["first_schedule"]
        steady = m["steady_sensor"] + m["steady_schedule"]
        print(f"{count:>8} {first:>12.2f} {steady:>12.2f} {m['steady_sensor']:>9.2f} "
              f"{m['steady_schedule']:>10.2f} {1000 * steady / count:>10.2f} "
              f"{m['rss_mib']:>8.0f} {wall:>7.1f} "
              f"{m['submit'] if 'submit' in m else float('nan'):>23.2f}", flush=True)
        assert m.get("queued", count) == count, m


if __name__ == "__main__":
    main()
