"""Demo: sync the fake Analytics API into DuckDB with Meltano, change data, sync again."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import duckdb

from fake_api.data import INCREMENTAL
from fake_api.server import FakeAPI, serve

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "output"
MELTANO = str(ROOT / ".venv-meltano" / "bin" / "meltano")
JOB = "demo:tap-analytics-to-target-duckdb"
PATH_STREAM = {"/v1/people/all": "peoples", "/v1/tags-management": "account_tags"}


def set_output(folder: Path) -> None:
    global OUTPUT
    OUTPUT = folder.resolve()


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def meltano(*args: str, env: dict, quiet: bool = False) -> None:
    log = OUTPUT / "meltano.log"
    with open(log, "a") as handle:
        proc = subprocess.run([MELTANO, "--environment", "demo", *args], cwd=ROOT, env=env,
                              stdout=handle, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0 and not quiet:
        sys.exit(f"meltano {' '.join(args)} failed (exit {proc.returncode}); see {log}")


def table_counts() -> dict[str, int]:
    with duckdb.connect(str(OUTPUT / "warehouse.duckdb"), read_only=True) as con:
        tables = [t for (t,) in con.execute(
            "select table_name from information_schema.tables "
            "where table_schema = 'analytics' order by 1").fetchall()]
        return {t: con.execute(f'select count(*) from "analytics"."{t}"').fetchone()[0]
                for t in tables}


def served(api: FakeAPI) -> Counter:
    """Records served per stream by the sync: discovery's sample of each first page (Meltano
    discovers before every run) is a request without updated_since, left out here."""
    counts: Counter = Counter()
    with api.lock:
        for entry in api.log:
            path = entry["path"]
            name = "segment_people" if path.endswith("/people") and "/segments/" in path else \
                PATH_STREAM.get(path, path.removeprefix("/v1/"))
            if name in INCREMENTAL and "updated_since" not in entry["query"]:
                continue
            counts[name] += entry.get("served", 0)
        api.log.clear()
    return counts


def sync(label: str, env: dict, api: FakeAPI) -> tuple[dict[str, int], Counter, float]:
    say(f"{label}: meltano run tap-analytics target-duckdb")
    started = time.monotonic()
    meltano("run", "tap-analytics", "target-duckdb", env=env)
    return table_counts(), served(api), time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=2000, help="records per big stream")
    parser.add_argument("--output", type=Path, default=OUTPUT,
                        help="folder for the DuckDB file and the Meltano log")
    args = parser.parse_args()
    set_output(args.output)
    database = OUTPUT / "warehouse.duckdb"
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "meltano.log").unlink(missing_ok=True)
    for leftover in OUTPUT.glob("warehouse.duckdb*"):
        leftover.unlink()

    api = FakeAPI(scale=args.scale, segments=20)
    server = serve(api)
    say(f"Fake Analytics API on http://127.0.0.1:{server.server_port} "
        f"({args.scale} records per big stream)")
    env = {**os.environ, "TAP_ANALYTICS_BASE_URL": f"http://127.0.0.1:{server.server_port}",
           "TAP_ANALYTICS_API_KEY": api.api_key,
           # every record is later than this; it marks the sync's requests apart from the
           # sample of each first page that Meltano's discovery makes
           "TAP_ANALYTICS_START_DATE": "2025-01-01T00:00:00Z",
           "TARGET_DUCKDB_FILEPATH": str(database),
           "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false", "MELTANO_CLI_DISABLE_VERSION_CHECK": "1"}
    meltano("state", "clear", "--force", JOB, env=env, quiet=True)  # start from scratch
    try:
        first, fetched1, took1 = sync("Run 1 (first sync)", env, api)
        changed = api.data.mutate(updates=25, inserts=10)
        say("Changed data on the API: " + ", ".join(
            f"{name} {len(c['updated'])} updated + {len(c['inserted'])} new"
            for name, c in changed.items()))
        second, fetched2, took2 = sync("Run 2 (incremental, state kept by Meltano)", env, api)
    finally:
        server.shutdown()
    print()
    print(f"{'stream':24} {'rows after run 1':>17} {'fetched run 2':>14} {'rows after run 2':>17}")
    for name in sorted(second):
        mark = "  <- incremental" if name in changed else ""
        print(f"{name:24} {first.get(name, 0):>17} {fetched2.get(name, 0):>14} "
              f"{second[name]:>17}{mark}")
    print(f"\nRun 1 took {took1:.1f}s and fetched {sum(fetched1.values())} records; "
          f"run 2 took {took2:.1f}s and fetched {sum(fetched2.values())}.")
    print("Incremental streams fetched only changed and new records (plus the records at the "
          "old bookmark, which updated_since includes); rows were merged on primary keys.")
    print(f"\nThe data is in {database} (schema 'analytics'). Query it:")
    print("  .venv/bin/python -c \"import duckdb; print(duckdb.connect('output/warehouse.duckdb')"
          ".sql('select state, count(*) from analytics.conversations group by 1'))\"")


if __name__ == "__main__":
    main()
