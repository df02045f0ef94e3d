"""Side-by-side benchmark: tap-analytics vs a raw requests loop vs dlt's rest_api_source.

    bench/run.sh [--scale 50000] [--rounds 3] [--memory-scales 10000,1000000]

Every contender is a separate process reading the same fake API (its own process too);
rounds alternate the contenders so machine noise hits them alike. Records/s counts whole
process wall time, start-up included, for every contender.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")
BENCH_PY = str(ROOT / ".venv-bench" / "bin" / "python")
BIG = ["conversations", "contacts", "peoples", "segment_people"]
PATHS = {"conversations": "/v1/conversations", "contacts": "/v1/contacts",
         "peoples": "/v1/people/all"}


class Server:
    def __init__(self, **options: object) -> None:
        self.port_file = Path(tempfile.mkstemp(prefix="fake-api-port-")[1])
        self.port_file.unlink()
        argv = [PY, "-m", "fake_api", "--port-file", str(self.port_file)]
        for key, value in options.items():
            if value is not None:
                argv += [f"--{key.replace('_', '-')}", str(value)]
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 600
        while not (self.port_file.exists() and self.port_file.read_text()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("fake API did not start")
            time.sleep(0.05)  # polling for readiness: the server writes the file when bound
        self.url = f"http://127.0.0.1:{self.port_file.read_text()}"

    def counts(self) -> dict[str, int]:
        return requests.get(f"{self.url}/_admin/counts", timeout=600).json()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.port_file.unlink(missing_ok=True)


def measure(argv: list[str], env: dict | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one process run to completion.

    Linux carries a process's RSS high-water mark across fork and exec, so this harness
    keeps itself small (it never holds record data): its own peak is a floor on the figure.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"{argv[:4]} failed with status {status}")
    return wall, usage.ru_maxrss / 1024


def tap_argv(server: Server, streams: list[str], tmp: Path, **settings: object) -> list[str]:
    config = {"base_url": server.url, "api_key": "test-key", "page_size": 1000, **settings}
    (tmp / "config.json").write_text(json.dumps(config))
    catalog = json.loads(subprocess.run(
        [PY, "-m", "tap_analytics", "--config", str(tmp / "config.json"), "--discover"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = entry["tap_stream_id"] in streams
    name = f"catalog-{'-'.join(streams)}.json"
    (tmp / name).write_text(json.dumps(catalog))
    return [PY, "-m", "tap_analytics", "--config", str(tmp / "config.json"),
            "--catalog", str(tmp / name)]


def server_alone(server: Server, threads: int = 4) -> float:
    """Records per second the fake API serves to a client that only reads bytes."""
    urls = []
    for name, path in PATHS.items():
        count = server.counts()[name]
        urls += [f"{server.url}{path}?api_key=test-key&limit=1000&offset={o}"
                 for o in range(0, count, 1000)]
    served = [0]
    lock = threading.Lock()

    def work(part: list[str]) -> None:
        session = requests.Session()
        for url in part:
            body = session.get(url, timeout=60).content
            with lock:
                served[0] += body.count(b'"id":')
    started = time.perf_counter()
    workers = [threading.Thread(target=work, args=(urls[i::threads],)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return served[0] / (time.perf_counter() - started)


def throughput(args: argparse.Namespace, tmp: Path) -> dict:
    server = Server(scale=args.scale, segments=args.segments)
    try:
        counts = server.counts()
        records = sum(counts[name] for name in BIG)
        (tmp / "seq").mkdir()
        contenders = {
            "tap-analytics": tap_argv(server, BIG, tmp),
            "tap, max_concurrency 1": tap_argv(server, BIG, tmp / "seq", max_concurrency=1),
            "raw requests loop": [PY, "bench/raw_client.py", server.url],
            "dlt rest_api_source": [BENCH_PY, "bench/dlt_client.py", server.url],
        }
        measure(contenders["raw requests loop"])  # warm the server's page cache
        alone = server_alone(server)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
        for _ in range(args.rounds):
            for name, argv in contenders.items():
                results[name].append(measure(argv))
    finally:
        server.stop()
    rows = {}
    for name, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        rows[name] = {"records": records, "wall": wall, "rps": records / wall,
                      "rss": max(r for _, r in runs)}
    return {"rows": rows, "server_alone_rps": alone}


def children(args: argparse.Namespace, tmp: Path) -> dict:
    server = Server(scale=1000, segments=args.child_segments, segment_size=50,
                    latency_ms=args.latency_ms, big_streams="peoples")
    try:
        contenders = {
            "tap, max_concurrency 1": tap_argv(server, ["segment_people"], tmp / "c1",
                                               max_concurrency=1),
            f"tap, max_concurrency {args.concurrency}": tap_argv(
                server, ["segment_people"], tmp / "cn", max_concurrency=args.concurrency),
            "dlt": [BENCH_PY, "bench/dlt_client.py", server.url, "--streams", "segment_people"],
            "dlt, parallelized": [BENCH_PY, "bench/dlt_client.py", server.url, "--streams",
                                  "segment_people", "--parallelized"],
        }
        walls: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.rounds):
            for name, argv in contenders.items():
                walls[name].append(measure(argv)[0])
    finally:
        server.stop()
    return {name: statistics.median(w) for name, w in walls.items()}


def full_sync(args: argparse.Namespace, tmp: Path, latency: float) -> dict:
    """All 15 streams at `latency` ms per request: wall time and requests made, for the tap,
    a sequential client, dlt and the floor, side by side (each round runs each once)."""
    server = Server(scale=args.full_scale, segments=args.segments, latency_ms=latency)
    limit = 100
    n = args.concurrency
    everything = ["account_overview", "agents_overview", "current_queue_activity",
                  "conversations", "contacts", "conversation_parts", "teams", "companies",
                  "schemas", "peoples", "accounts", "account_tags", "segments", "fields",
                  "segment_people"]
    try:
        folder = tmp / f"full-{latency:g}"
        folder.mkdir()
        contenders = {
            f"tap-analytics (defaults: max_concurrency {n})": tap_argv(
                server, everything, folder, page_size=limit, max_concurrency=n),
            "sequential client (the contract's stop rules)": [
                PY, "bench/floor_client.py", server.url, "--limit", str(limit), "--sequential"],
            "dlt, every resource parallelized": [
                BENCH_PY, "bench/dlt_client.py", server.url, "--all-streams", "--parallelized",
                "--limit", str(limit)],
            f"floor: every page known, {n} in flight": [
                PY, "bench/floor_client.py", server.url, "--limit", str(limit),
                "--in-flight", str(n)],
        }
        walls: dict[str, list[float]] = {name: [] for name in contenders}
        made: dict[str, int] = {}
        for _ in range(args.rounds):
            for name, argv in contenders.items():
                requests.post(f"{server.url}/_admin/reset", json={}, timeout=60)
                walls[name].append(measure(argv)[0])
                made[name] = len(requests.get(f"{server.url}/_admin/requests",
                                              timeout=60).json())
    finally:
        server.stop()
    return {name: {"wall": statistics.median(w), "requests": made[name]}
            for name, w in walls.items()}


def memory(args: argparse.Namespace, tmp: Path) -> dict:
    out = {}
    for scale in args.memory_scales:
        server = Server(scale=scale, segments=2, big_streams="conversations")
        try:
            (tmp / f"m{scale}").mkdir()
            argv = tap_argv(server, ["conversations"], tmp / f"m{scale}")
            wall, rss = measure(argv)
        finally:
            server.stop()
        out[scale] = {"wall": wall, "rss": rss}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=50000, help="records per big stream")
    parser.add_argument("--segments", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--child-segments", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--memory-scales", default="10000,1000000",
                        type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--full-scale", type=int, default=2000,
                        help="records per big stream in the full-sync section")
    parser.add_argument("--full-latencies", default="0,20,50",
                        type=lambda s: [float(x) for x in s.split(",")],
                        help="ms per request of the full-sync section, one run each")
    parser.add_argument("--sections", default="1,2,3,4",
                        help="which sections to run: 1 throughput, 2 children, 3 memory, "
                             "4 full sync")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    print(f"machine: {os.cpu_count()} cores, {sys.platform}, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for sub in ("c1", "cn"):
            (tmp / sub).mkdir()
        if "1" in sections:
            report_throughput(args, tmp)
        if "2" in sections:
            report_children(args, tmp)
        if "3" in sections:
            report_memory(args, tmp)
        if "4" in sections:
            report_full_sync(args, tmp)


def report_full_sync(args: argparse.Namespace, tmp: Path) -> None:
    print(f"\n4. Full sync: all 15 streams, {args.full_scale} records per big stream, page "
          f"size 100 (median of {args.rounds}; wall s, requests)")
    for latency in args.full_latencies:
        rows = full_sync(args, tmp, latency)
        print(f"at {latency:g} ms per request:")
        for name, row in rows.items():
            print(f"  {name:46} {row['wall']:>7.2f} s {row['requests']:>6} requests")
        tap, seq, dlt, floor = (row["wall"] for row in rows.values())
        print(f"  tap / floor: {tap / floor:.2f}x; sequential / tap: {seq / tap:.1f}x; "
              f"dlt / tap: {dlt / tap:.1f}x (targets at 50 ms: within 1.5x of the floor, "
              "at least 4x faster than the sequential client)")


def report_throughput(args: argparse.Namespace, tmp: Path) -> None:
    print(f"\n1. Throughput: {', '.join(BIG)}; page size 1000; median of {args.rounds} "
          "alternating rounds")
    result = throughput(args, tmp)
    rows = result["rows"]
    header = f"{'contender':24} {'records':>9} {'wall s':>8} {'records/s':>10}"
    print(f"{header} {'peak RSS MiB':>13}")
    for name, row in rows.items():
        print(f"{name:24} {row['records']:>9} {row['wall']:>8.2f} {row['rps']:>10.0f} "
              f"{row['rss']:>13.0f}")
    raw, dlt = rows["raw requests loop"]["rps"], rows["dlt rest_api_source"]["rps"]
    for name in ("tap-analytics", "tap, max_concurrency 1"):
        tap = rows[name]["rps"]
        print(f"{name}: tap/raw records/s {tap / raw:.2f}, tap/dlt records/s {tap / dlt:.2f}")
    print("(raw and dlt read the segment_people listings one after another, as does the "
          "tap with max_concurrency 1: that row is the per-record comparison)")
    print(f"fake API alone (4 reader threads, bytes only): "
          f"{result['server_alone_rps']:.0f} records/s")


def report_children(args: argparse.Namespace, tmp: Path) -> None:
    print(f"\n2. segment_people over {args.child_segments} segments at "
          f"{args.latency_ms:g} ms server latency (median wall s)")
    walls = children(args, tmp)
    for name, wall in walls.items():
        print(f"{name:28} {wall:>7.2f}")
    names = list(walls)
    print(f"speed-up of max_concurrency {args.concurrency} over 1: "
          f"{walls[names[0]] / walls[names[1]]:.1f}x; vs dlt parallelized: "
          f"{walls[names[3]] / walls[names[1]]:.1f}x")


def report_memory(args: argparse.Namespace, tmp: Path) -> None:
    print("\n3. Memory: conversations only, tap peak RSS by listing size")
    mem = memory(args, tmp)
    for scale, row in mem.items():
        print(f"{scale:>9} records  {row['rss']:>7.1f} MiB  {row['wall']:>7.2f} s")
    small, large = (mem[s]["rss"] for s in (min(mem), max(mem)))
    print(f"peak RSS growth from {min(mem)} to {max(mem)} records: "
          f"{(large / small - 1) * 100:+.1f}%")


if __name__ == "__main__":
    main()
