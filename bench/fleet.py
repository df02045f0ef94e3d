"""What an account costs: the fleet (`scripts/fleet.sh`, Dagster) against the plain pipe
`tap-analytics | target-postgres`, side by side, in one run.

    .venv/bin/python bench/fleet.py [--accounts 6] [--sizes 1,10] [--latencies 0,50]
                                    [--at-once 2,8] [--profile]
    .venv/bin/python bench/fleet.py --accounts 6,12 ...   # and the cost of one account more

Each account is its own fake API (own data, key) and schema in one throwaway PostgreSQL.
Size 1 is a small account (~4,400 rows over 15 tables, page size 100), size 10 ten times
that. For every size, latency (ms per request) and number at once, the same accounts are
synced from scratch twice: by the plain pipe (the installed tap and target, the shipped
catalog, the target settings Meltano gives, N pipes at once by `xargs -P`), and by
`scripts/fleet.sh` (fresh tenant ids: fresh state). Printed per way: CPU per account (the
whole machine's busy time, less this process's: the fake APIs run in it), wall per
account, accounts per core-minute, peak memory per account in flight (the process tree's
proportional set size, shared pages of forked processes counted once, sampled every 0.2 s,
divided by the accounts at once), and the ratio fleet/pipe. `--rounds 3` runs each case
three times and prints the round with the median ratio. With two account counts
(`--accounts 6,12`), each case runs at both, side by side, and adds what one account more
costs each way ((CPU at 12 - CPU at 6) / 6): a `fleet.sh`'s fixed cost (importing Dagster,
hosting its daemon, the fork server), which a long-running daemon pays once, drops out.
`--profile` adds where the fleet's CPU went, by program.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cpu import Busy, ProgramCpu  # noqa: E402
from bench.procs import PeakRss  # noqa: E402
from tests.helpers import start_server  # noqa: E402
from tests.pg import Cluster, start_cluster, stop_cluster  # noqa: E402

SMALL = 700  # the fake API's scale of a small account: ~4,400 rows over 15 tables
TAP = ROOT / ".meltano" / "extractors" / "tap-analytics" / "venv" / "bin" / "tap-analytics"
TARGET = ROOT / ".meltano" / "loaders" / "target-postgres" / "venv" / "bin" / "target-postgres"


@dataclass
class Measured:
    cpu: float  # seconds, whole machine less the bench process
    wall: float
    peak: int  # bytes, the process tree
    profile: dict[str, float]


def warehouse_env(cluster: Cluster) -> dict[str, str]:
    return {"TARGET_POSTGRES_HOST": "127.0.0.1", "TARGET_POSTGRES_PORT": str(cluster.port),
            "TARGET_POSTGRES_USER": cluster.user, "TARGET_POSTGRES_PASSWORD": "unused",
            "TARGET_POSTGRES_DATABASE": cluster.database}


def meltano_config(plugin: str, env: dict[str, str]) -> dict:
    """The config Meltano hands the plugin in a run (defaults, meltano.yml, environment)."""
    meltano = str(ROOT / ".venv-meltano" / "bin" / "meltano")
    out = subprocess.run([meltano, "config", "--unsafe", "print", plugin], cwd=ROOT,
                         env={**os.environ, **env}, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)


def measure(command: list[str], env: dict[str, str], profile: bool) -> Measured:
    sampler = ProgramCpu() if profile else None
    started = time.monotonic()
    with Busy() as busy:
        if sampler:
            sampler.__enter__()
        proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        with PeakRss(proc.pid, pss=True) as peak:
            out, err = proc.communicate()
        if sampler:
            sampler.__exit__()
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{command[-1]} failed ({proc.returncode}):\n{out[-2000:]}\n"
                         f"{err[-4000:]}")
    return Measured(busy.seconds, wall, peak.bytes,
                    sampler.by_program() if sampler else {})


def run_pipes(label: str, servers: list, cluster: Cluster, at_once: int, tmp: Path,
              tap_config: dict, target_config: dict, catalog: Path, profile: bool) -> Measured:
    lines = []
    for i, server in enumerate(servers):
        tap = tmp / f"{label}-tap-{i}.json"
        tap.write_text(json.dumps({**tap_config, "base_url": server.url,
                                   "api_key": server.api.api_key}))
        target = tmp / f"{label}-target-{i}.json"
        target.write_text(json.dumps({**target_config,
                                      "default_target_schema": f"{label}_pipe_{i}"}))
        lines.append(f"{TAP} --config {tap} --catalog {catalog} | {TARGET} --config {target} "
                     f"> /dev/null 2>> {tmp / f'{label}-pipe-{i}.log'}")
    script = tmp / f"{label}-pipes.txt"
    script.write_text("\n".join(lines) + "\n")
    return measure(["bash", "-c", f"set -o pipefail; xargs -d '\\n' -P {at_once} -I CMD "
                    f"bash -o pipefail -c CMD < {script}"], dict(os.environ), profile)


def dagster_db(cluster: Cluster, label: str) -> dict[str, str]:
    """A fresh database for Dagster's storage in the warehouse's cluster."""
    database = f"dagster_{label}"
    with cluster.connect() as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    return {"TAP_ANALYTICS_FLEET_DAGSTER_DB":
            f"postgresql://{cluster.user}@127.0.0.1:{cluster.port}/{database}"}


def run_fleet(label: str, servers: list, cluster: Cluster, at_once: int, tmp: Path,
              catalog: Path, profile: bool, storage: str) -> Measured:
    ids = [f"{label}_fleet_{i}" for i in range(len(servers))]
    tenants = [{"id": ident, "settings": {"base_url": s.url, "api_key": f"${{KEY_{i}}}",
                                          "page_size": 100}}
               for i, (ident, s) in enumerate(zip(ids, servers, strict=True))]
    path = tmp / f"tenants-{label}.yml"
    path.write_text(yaml.safe_dump({"tenants": tenants}))
    env = {**os.environ, **warehouse_env(cluster), "TAP_ANALYTICS_TENANTS": str(path),
           "DAGSTER_HOME": str(tmp / "dagster"), "TAP_ANALYTICS_FLEET_CONCURRENCY": str(at_once),
           "TAP_ANALYTICS_FLEET_CATALOG": str(catalog),
           **(dagster_db(cluster, label) if storage == "postgres" else {}),
           **{f"KEY_{i}": s.api.api_key for i, s in enumerate(servers)}}
    return measure(["bash", str(ROOT / "scripts" / "fleet.sh")], env, profile)


def row(way: str, m: Measured, accounts: int, at_once: int) -> str:
    per = m.cpu / accounts
    return (f"{way} | {per:.2f} s | {m.wall / accounts:.2f} s | {60 / per:.1f} | "
            f"{m.peak / min(at_once, accounts) / 2**20:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", default="6",
                        help="accounts per case; two counts (6,12) add the marginal cost")
    parser.add_argument("--sizes", default="1,10")
    parser.add_argument("--latencies", default="0,50")
    parser.add_argument("--at-once", default="2,8")
    parser.add_argument("--rounds", type=int, default=1,
                        help="each case this many times, pipe and fleet in turn; the round "
                             "with the median ratio is printed (the machine is noisy)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--dagster-storage", choices=["sqlite", "postgres"], default="sqlite",
                        help="the fleet's Dagster storage (postgres: a fresh database per "
                             "round in the warehouse's cluster)")
    args = parser.parse_args()
    subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh"), "--dagster"], check=True,
                   stdout=subprocess.DEVNULL)
    cluster = start_cluster()
    os.environ.update(warehouse_env(cluster))
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            catalog = tmp / "catalog.json"  # as the image ships it
            catalog.write_text(subprocess.run([str(TAP), "--discover"], capture_output=True,
                                              text=True, check=True).stdout)
            tap_config = meltano_config("tap-analytics", {})
            target_config = meltano_config("target-postgres", {})
            counts = [int(x) for x in args.accounts.split(",")]
            for size in [int(x) for x in args.sizes.split(",")]:
                servers = [start_server(scale=SMALL * size, segments=10,
                                        api_key=f"bench-key-{i:03d}")
                           for i in range(max(counts))]
                try:
                    for latency in [float(x) for x in args.latencies.split(",")]:
                        for at_once in [int(x) for x in args.at_once.split(",")]:
                            rounds = []
                            for round_ in range(args.rounds):
                                runs = {}
                                for count in counts:
                                    label = (f"s{size}_l{latency:g}_n{at_once}_a{count}_"
                                             f"r{round_}").replace(".", "_")
                                    some = servers[:count]
                                    for server in some:
                                        server.admin("reset")
                                        server.admin("config", {"latency_ms": latency})
                                    pipe = run_pipes(label, some, cluster, at_once, tmp,
                                                     tap_config, target_config, catalog,
                                                     args.profile)
                                    fleet = run_fleet(label, some, cluster, at_once, tmp,
                                                      catalog, args.profile,
                                                      args.dagster_storage)
                                    runs[count] = (pipe, fleet)
                                    print(f"{label}: pipe {pipe.cpu / count:.2f} s, "
                                          f"fleet {fleet.cpu / count:.2f} s CPU per "
                                          "account", file=sys.stderr)
                                pipe, fleet = runs[counts[0]]
                                rounds.append((fleet.cpu / pipe.cpu, runs))
                            _, runs = sorted(rounds, key=lambda r: r[0])[len(rounds) // 2]
                            results.append((size, latency, at_once, runs))
                finally:
                    for server in servers:
                        server.server.shutdown()
    finally:
        stop_cluster(cluster)
    report(results)


def report(results: list) -> None:
    counts = sorted(results[0][3])
    print(f"\n{', '.join(map(str, counts))} accounts per case, {os.cpu_count()} cores; "
          "size 1 = ~4,400 rows\n")
    print("| size | ms per request | at once | accounts | way | CPU per account "
          "| wall per account | accounts per core-minute | peak memory per account in flight |")
    print("|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for size, latency, at_once, runs in results:
        for count in counts:
            pipe, fleet = runs[count]
            for way, m in (("pipe", pipe), ("fleet", fleet)):
                print(f"| {size} | {latency:g} | {at_once} | {count} | "
                      f"{row(way, m, count, at_once)} |")
            print(f"| | | | | **fleet / pipe** | **{fleet.cpu / pipe.cpu:.2f}x** | "
                  f"{fleet.wall / pipe.wall:.2f}x | | {fleet.peak / pipe.peak:.2f}x |")
        if len(counts) == 2:
            (low, (pipe0, fleet0)), (high, (pipe1, fleet1)) = sorted(runs.items())
            more = high - low
            pipe_more = (pipe1.cpu - pipe0.cpu) / more
            fleet_more = (fleet1.cpu - fleet0.cpu) / more
            print(f"| | | | {low}→{high} | **one account more** | pipe {pipe_more:.2f} s, "
                  f"fleet {fleet_more:.2f} s: **{fleet_more / pipe_more:.2f}x** | | | |")
            print(f"| | | | | fleet.sh's fixed cost | "
                  f"{fleet0.cpu - low * fleet_more:.1f} s | | | |")
    for size, latency, at_once, runs in results:
        count = counts[-1]
        pipe, fleet = runs[count]
        if fleet.profile:
            print(f"\nWhere the CPU went, size {size}, {latency:g} ms, {at_once} at once, "
                  f"{count} accounts (seconds per account, sampled):\n")
            print("| program | fleet | pipe |\n|---|---:|---:|")
            for name, cpu in fleet.profile.items():
                if cpu / count >= 0.01:
                    print(f"| {name} | {cpu / count:.2f} | "
                          f"{pipe.profile.get(name, 0) / count:.2f} |")


if __name__ == "__main__":
    main()
