"""Rows in PostgreSQL: the whole `meltano run tap-analytics target-postgres` against dlt's
`rest_api_source` into the same PostgreSQL, side by side.

    bench/run.sh --e2e [--scale 6850] [--rounds 3] [--latencies 0,20] [--memory-scales 6850,68500]

One throwaway PostgreSQL and one fake API (its own process) per latency. Every contender
loads all 15 listings into a fresh schema (fresh state: a full sync), rounds alternate the
contenders, and each run's rows are checked against the API (every table, every key):
a wrong load fails the benchmark. Contenders:

- `meltano run`, the levers one by one: as before (target validates records, Meltano
  discovers and discovery samples the API), then `validate_records: false`, then the
  shipped catalog (no discovery) with target-postgres' INSERT path, then the shipped
  `meltano.yml` itself: that, with `use_copy` (exact because the tap writes date-times in
  UTC, `utc_timestamps`).
- the floor (`bench/floor.py`): the shipped `meltano run` with a stand-in tap replaying the
  real tap's recorded output, as RECORD messages and as BATCH files: what Meltano and
  target-postgres take whatever the tap does.
- dlt `rest_api_source`, every resource parallelized, dlt's postgres destination, merge.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import floor  # noqa: E402
from bench.procs import PeakRss  # noqa: E402
from bench.run import BENCH_PY, Server  # noqa: E402
from tests.pg import MELTANO, start_cluster, stop_cluster  # noqa: E402

TABLES = {"account_overview": ("id",), "agents_overview": ("id",),
          "current_queue_activity": ("id",), "conversations": ("id",), "contacts": ("id",),
          "conversation_parts": ("id",), "teams": ("id",), "companies": ("id",),
          "schemas": ("id",), "peoples": ("id",), "accounts": ("id",),
          "account_tags": ("id",), "segments": ("id",), "fields": ("id",),
          "segment_people": ("segment_id", "id")}
# an empty catalog extra: Meltano discovers before the run, as it did before it shipped one
BEFORE = {"TARGET_POSTGRES_VALIDATE_RECORDS": "true", "TARGET_POSTGRES_USE_COPY": "false",
          "TAP_ANALYTICS__CATALOG": "", "TAP_ANALYTICS_DISCOVERY_SAMPLING": "true"}
LEVERS = {
    "meltano run, as before (target validates, discovery samples)": BEFORE,
    "+ validate_records false": {**BEFORE, "TARGET_POSTGRES_VALIDATE_RECORDS": "false"},
    "+ shipped catalog (no discovery), INSERT": {"TARGET_POSTGRES_USE_COPY": "false"},
    "+ use_copy, date-times in UTC: the shipped meltano.yml": {},
}
SHIPPED = "+ use_copy, date-times in UTC: the shipped meltano.yml"
FLOOR = "floor: a tap that costs nothing (replays the tap's RECORD messages)"
FLOOR_BATCH = "floor: the same records as BATCH files (one per stream)"
DLT = "dlt rest_api_source, parallelized, postgres destination"
PROGRAMS = ("meltano", "tap-analytics", "target-postgres")


def expected_keys(server: Server) -> dict[str, set]:
    raw = requests.get(f"{server.url}/_admin/ids", timeout=600).json()
    return {name: {tuple(k) if isinstance(k, list) else (k,) for k in raw[name]}
            for name in TABLES}


def check_rows(cluster, schema: str, expected: dict[str, set], dlt: bool = False) -> int:
    """Every table's keys equal the API's; the number of rows."""
    rows = 0
    with cluster.connect() as con:
        for table, key in TABLES.items():
            if dlt and table == "segment_people":
                key = ("_segments_id", "id")
            columns = ", ".join(f'"{k}"' for k in key)
            got = con.execute(f'select {columns} from "{schema}"."{table}"').fetchall()
            keys = {tuple(str(v) if isinstance(v, str) else v for v in r) for r in got}
            want = {tuple(v for v in k) for k in expected[table]}
            if keys != want or len(got) != len(keys):
                raise SystemExit(f"{schema}.{table}: {len(got)} rows, {len(want)} expected")
            rows += len(got)
    return rows


def meltano_argv(server: Server, cluster, schema: str, tmp: Path, levers: dict
                 ) -> tuple[list[str], dict, Path]:
    env = {**os.environ, "MELTANO_DATABASE_URI": f"sqlite:///{tmp}/{schema}.db",
           "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
           "MELTANO_CLI_DISABLE_VERSION_CHECK": "1", "MELTANO_ENVIRONMENT": "dev",
           "TAP_ANALYTICS_BASE_URL": server.url, "TAP_ANALYTICS_API_KEY": "test-key",
           "TARGET_POSTGRES_HOST": "127.0.0.1", "TARGET_POSTGRES_PORT": str(cluster.port),
           "TARGET_POSTGRES_USER": cluster.user, "TARGET_POSTGRES_PASSWORD": "unused",
           "TARGET_POSTGRES_DATABASE": cluster.database,
           "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": schema, **levers}
    # --no-install: Meltano 4.4 ignores MELTANO_AUTO_INSTALL=false, and the floor's stand-in
    # tap (no venv) would cost every floor run a failed install
    return [str(MELTANO), "run", "--no-install", "tap-analytics", "target-postgres"], env, ROOT


def dlt_argv(server: Server, cluster, schema: str, tmp: Path) -> tuple[list[str], dict, Path]:
    dsn = f"postgresql://{cluster.user}:unused@127.0.0.1:{cluster.port}/{cluster.database}"
    return [BENCH_PY, str(ROOT / "bench" / "dlt_postgres.py"), server.url, "--limit", "100",
            "--dsn", dsn, "--schema", schema, "--pipelines-dir", str(tmp / "dlt")], {
        **os.environ, "RUNTIME__LOG_LEVEL": "WARNING"}, ROOT


def timed(argv: list[str], env: dict, cwd: Path) -> tuple[float, PeakRss]:
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    with PeakRss(proc.pid) as peak:
        _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed:\n{err[-3000:]}")
    return time.monotonic() - started, peak


def contenders(server: Server, cluster, tmp: Path, floors: dict | None = None) -> dict:
    levers = {**LEVERS, **(floors or {})}

    def make(name: str):
        def argv(schema: str) -> tuple[list[str], dict, Path]:
            if name == DLT:
                return dlt_argv(server, cluster, schema, tmp)
            return meltano_argv(server, cluster, schema, tmp, levers[name])
        return argv
    return {name: make(name) for name in [*levers, DLT]}


def floors(server: Server, tmp: Path) -> dict:
    """The floor contenders' settings: one recording of the real tap per fake API."""
    folder = Path(tempfile.mkdtemp(dir=tmp))
    recorded = floor.record(server.url, folder / "recorded.singer")
    batches = floor.as_batches(recorded, folder / "batches")
    return {FLOOR: floor.floor_env(folder / "sys", recorded),
            FLOOR_BATCH: floor.floor_env(folder / "sys", batches)}


def at_latency(args: argparse.Namespace, cluster, latency: float, tmp: Path) -> dict:
    server = Server(scale=args.scale, latency_ms=latency)
    try:
        expected = expected_keys(server)
        runs = contenders(server, cluster, tmp, floors(server, tmp))
        walls: dict[str, list[float]] = {name: [] for name in runs}
        rows = 0
        for _ in range(args.rounds):
            for name, argv in runs.items():
                schema = f"b_{uuid.uuid4().hex[:10]}"
                wall, _ = timed(*argv(schema))
                rows = check_rows(cluster, schema, expected, dlt=name == DLT)
                walls[name].append(wall)
                with cluster.connect() as con:
                    con.execute(f'drop schema "{schema}" cascade')
        return {"rows": rows, "walls": {n: statistics.median(w) for n, w in walls.items()}}
    finally:
        server.stop()


def memory(args: argparse.Namespace, cluster, tmp: Path) -> dict:
    """Peak RSS of the shipped configuration's whole run (Meltano, tap, target) by scale."""
    out = {}
    for scale in args.memory_scales:
        server = Server(scale=scale)
        try:
            schema = f"m_{uuid.uuid4().hex[:10]}"
            wall, peak = timed(*contenders(server, cluster, tmp)[SHIPPED](schema))
            out[scale] = {"rows": check_rows(cluster, schema, expected_keys(server)),
                          "peak": peak.bytes / 2**20, "wall": wall,
                          "by": {n: peak.by_name.get(n, 0) / 2**20 for n in PROGRAMS}}
        finally:
            server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=6850)  # 42,101 rows over 15 tables
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latencies", default="0,20")
    parser.add_argument("--memory-scales", default="6850,68500")
    args = parser.parse_args()
    args.memory_scales = [int(s) for s in args.memory_scales.split(",") if s]
    cluster = start_cluster()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = {float(lat): at_latency(args, cluster, float(lat), Path(tmp))
                       for lat in args.latencies.split(",") if lat}
            mem = memory(args, cluster, Path(tmp))
    finally:
        stop_cluster(cluster)
    report(args, results, mem)


def report(args: argparse.Namespace, results: dict, mem: dict) -> None:
    latencies = list(results)
    rows = next(iter(results.values()))["rows"] if results else 0
    if results:
        print(f"\nWhole runs into PostgreSQL: {rows:,} rows over 15 tables (scale {args.scale}), "
              f"median of {args.rounds}, {os.cpu_count()} cores; every table checked.\n")
        print("| contender | " + " | ".join(f"{lat:g} ms per request" for lat in latencies) + " |")
        print("|---|" + "---:|" * len(latencies))
        for name in [*LEVERS, FLOOR, FLOOR_BATCH, DLT]:
            cells = []
            for lat in latencies:
                walls = results[lat]["walls"]
                cells.append(f"{walls[name]:.2f} s ({walls[name] / walls[DLT]:.2f}x dlt)")
            print(f"| {name} | " + " | ".join(cells) + " |")
    if mem:
        print("\n| rows | peak RSS, whole meltano run | " + " | ".join(PROGRAMS) + " | wall |")
        print("|---:|---:|" + "---:|" * len(PROGRAMS) + "---:|")
        for scale, m in mem.items():
            each = " | ".join(f"{m['by'][n]:.0f} MiB" for n in PROGRAMS)
            print(f"| {m['rows']:,} (scale {scale}) | {m['peak']:.0f} MiB | {each} | "
                  f"{m['wall']:.1f} s |")


if __name__ == "__main__":
    main()
