"""A fleet of small accounts through Dagster, at 1, 2, 4 and 8 at once.

    .venv/bin/python bench/fleet.py [--accounts 50] [--levels 1,2,4,8] [--scale 60]

Each account is its own fake API (own data and key) and schema in one throwaway
PostgreSQL; every level syncs all of them from scratch with `scripts/fleet.sh` (fresh
tenant ids, so fresh state). Printed per level: wall time, accounts per minute, the
speed-up over one at a time, the peak memory of the whole fleet (every process under
fleet.sh, summed, sampled every 0.2 s) and the requests each account cost. Runs use a
shipped catalog (`TAP_ANALYTICS_FLEET_CATALOG`), as `docs/KUBERNETES.md` deploys them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.procs import PeakRss  # noqa: E402
from tests.helpers import start_server  # noqa: E402
from tests.pg import start_cluster, stop_cluster  # noqa: E402


def run_level(level: int, servers: list, cluster, tmp: Path, catalog: Path) -> dict:
    ids = [f"l{level}_a{i:03d}" for i in range(len(servers))]
    tenants = [{"id": ident, "settings": {"base_url": s.url, "api_key": f"${{KEY_{i}}}",
                                          "page_size": 100}}
               for i, (ident, s) in enumerate(zip(ids, servers, strict=True))]
    path = tmp / f"tenants-{level}.yml"
    path.write_text(yaml.safe_dump({"tenants": tenants}))
    for server in servers:
        server.admin("reset")
    env = {**os.environ, "TAP_ANALYTICS_TENANTS": str(path),
           "DAGSTER_HOME": str(tmp / f"dagster-{level}"),
           "TAP_ANALYTICS_FLEET_CONCURRENCY": str(level),
           "TARGET_POSTGRES_HOST": "127.0.0.1", "TARGET_POSTGRES_PORT": str(cluster.port),
           "TARGET_POSTGRES_USER": cluster.user, "TARGET_POSTGRES_PASSWORD": "unused",
           "TARGET_POSTGRES_DATABASE": cluster.database,
           "TAP_ANALYTICS_FLEET_CATALOG": str(catalog),
           **{f"KEY_{i}": s.api.api_key for i, s in enumerate(servers)}}
    started = time.monotonic()
    proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "fleet.sh")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with PeakRss(proc.pid) as peak:
        out, err = proc.communicate()
    wall = time.monotonic() - started
    landed = sum(line.split(": ", 2)[1] == "landed" for line in out.splitlines()
                 if line.count(": ") >= 1 and line.split(": ", 1)[0] in ids)
    if proc.returncode != 0 or landed != len(ids):
        raise SystemExit(f"level {level}: {landed}/{len(ids)} landed\n{err[-3000:]}")
    requests_ = [len(s.requests()) for s in servers]
    return {"level": level, "wall": wall, "peak_mib": peak.bytes / 2**20,
            "requests": sum(requests_) / len(requests_)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--levels", default="1,2,4,8")
    parser.add_argument("--scale", type=int, default=60)
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], check=True,
                   stdout=subprocess.DEVNULL)
    cluster = start_cluster()
    servers = [start_server(scale=args.scale, segments=2, api_key=f"bench-key-{i:03d}")
               for i in range(args.accounts)]
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for level in levels:
                catalog = Path(tmp) / "catalog.json"  # as the image ships it
                catalog.write_text(subprocess.run(
                    [str(ROOT / ".venv" / "bin" / "tap-analytics"), "--discover"],
                    capture_output=True, text=True, check=True).stdout)
                rows.append(run_level(level, servers, cluster, Path(tmp), catalog))
                print(f"level {level}: {rows[-1]['wall']:.1f}s", file=sys.stderr)
    finally:
        for server in servers:
            server.server.shutdown()
        stop_cluster(cluster)
    base = next((r["wall"] for r in rows if r["level"] == 1), rows[0]["wall"])
    print(f"\n{args.accounts} accounts (scale {args.scale}: ~{args.scale * 6} records "
          f"each), {os.cpu_count()} cores\n")
    print("| accounts at once | wall | accounts/min | vs 1 at once | peak memory, whole fleet "
          "| requests per account |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['level']} | {r['wall']:.1f} s | {args.accounts / r['wall'] * 60:.1f} | "
              f"{base / r['wall']:.2f}x | {r['peak_mib']:.0f} MiB | {r['requests']:.1f} |")


if __name__ == "__main__":
    main()
