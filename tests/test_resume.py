"""Kill the tap at random moments, resume from the state the target confirmed: nothing lost.
Also: SIGTERM and Ctrl-C end the tap promptly, with a clear line and a final STATE."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import typing as t
import uuid
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import OUTPUTS, FakeServer, config_for, start_server, tap_command
from tests.pg import TARGET, Cluster
from tests.reliability import count
from tests.test_postgres import INCREMENTAL, assert_tables_equal_server, table_keys

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]
SCALE = {"small": 1500, "full": 6000}[os.environ.get("TEST_SCALE", "small")]
# (stream to kill in, share of its records read first); the seed picks the exact record
KILL_PLAN = [("companies", 0.5), ("contacts", 0.3), ("contacts", 0.9), ("conversation_parts", 0.6),
             ("conversations", 0.2), ("conversations", 0.8), ("peoples", 0.5),
             ("segment_people", 0.1), ("segment_people", 0.5), ("segment_people", 0.95),
             ("accounts", 0.5), ("teams", 0.4)]


class Pipe:
    """`tap-analytics | target-postgres`, line by line, with a hand on the tap's kill switch."""

    def __init__(self, server: FakeServer, cluster: Cluster, schema: str, tmp: Path) -> None:
        self.tmp = tmp
        self.returncode: int | None = None
        (tmp / "tap.json").write_text(json.dumps(config_for(server, page_size=50,
                                                            max_concurrency=4)))
        (tmp / "target.json").write_text(json.dumps({
            "host": "127.0.0.1", "port": cluster.port, "user": cluster.user, "password": "x",
            "database": cluster.database, "default_target_schema": schema,
            "load_method": "upsert", "add_record_metadata": True, "activate_version": True,
            "hard_delete": True}))

    def run(self, state: dict | None, forward: Forward | None = None
            ) -> tuple[dict | None, bool, bytes]:
        """One run from `state`; `forward` carries the tap's output to the target (and may
        kill the tap). Returns the state the target confirmed, whether the tap was killed,
        and the bytes read from the tap."""
        argv = [*tap_command(), "--config", str(self.tmp / "tap.json")]
        if state:
            (self.tmp / "state.json").write_text(json.dumps(state))
            argv += ["--state", str(self.tmp / "state.json")]
        with tempfile.TemporaryFile() as tap_err, tempfile.TemporaryFile() as target_err:
            tap = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=tap_err, bufsize=0)
            target = subprocess.Popen([str(TARGET), "--config", str(self.tmp / "target.json")],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=target_err)
            data, killed = (forward or whole_lines())(tap, target)
            tap.stdout.close()
            tap.wait(timeout=60)
            target.stdin.close()
            confirmed = [ln for ln in target.stdout.read().splitlines() if ln.strip()]
            target.wait(timeout=300)
            for handle in (tap_err, target_err):
                handle.seek(0)
                OUTPUTS.append(handle.read().decode(errors="replace"))
            assert target.returncode == 0, OUTPUTS[-1][-2000:]
            # a signal that reached the tap once its run was over (all written, exiting)
            # stopped nothing: that run counts as one that ended by itself
            killed = killed and tap.returncode != 0
            self.returncode = tap.returncode
            if not killed:
                assert tap.returncode == 0, OUTPUTS[-2][-2000:]
        return (json.loads(confirmed[-1]) if confirmed else state), killed, data


Forward = t.Callable[[subprocess.Popen, subprocess.Popen], tuple[bytes, bool]]


def whole_lines(kill_in: str | None = None, kill_after: int = 0) -> Forward:
    """Forward line by line; SIGKILL the tap at the `kill_after`-th record of `kill_in`
    (or at its first record of another stream after some of `kill_in`)."""

    def forward(tap: subprocess.Popen, target: subprocess.Popen) -> tuple[bytes, bool]:
        seen: Counter = Counter()
        for line in tap.stdout:
            if kill_in is not None and line.startswith(b'{"type":"RECORD"'):
                stream = json.loads(line)["stream"]
                seen[stream] += 1
                if seen[kill_in] >= kill_after or (seen[kill_in] and stream != kill_in):
                    tap.send_signal(signal.SIGKILL)
                    return b"", True
            target.stdin.write(line)
        return b"", False

    return forward


def test_kill_and_resume_loses_nothing(cluster: Cluster, tmp_path: Path) -> None:
    server = start_server(scale=SCALE, segments=12)
    schema = f"k_{uuid.uuid4().hex[:10]}"
    pipe = Pipe(server, cluster, schema, tmp_path)
    rng = random.Random(20261123)
    sizes = {name: len(keys) for name, keys in server.ids().items()}
    sizes["segment_people"] = len(server.ids()["segment_people"])
    state: dict | None = None
    kills = 0
    try:
        for index, (stream, share) in enumerate(KILL_PLAN):
            after = max(1, int(sizes.get(stream, 100) * share * rng.uniform(0.8, 1.2)))
            state, killed, _ = pipe.run(state, whole_lines(stream, after))
            kills += killed
            if index == len(KILL_PLAN) // 2:  # the API changes between two interrupted runs
                server.admin("mutate", {"updates": 40, "inserts": 25})
        state, killed, _ = pipe.run(state)
        assert not killed
        assert kills >= 10
        lost = records_lost(cluster, schema, server)
        count("runs killed and resumed", kills)
        count("records checked after resume", sum(len(v) for v in server.ids().values()))
        count("records lost or stale after resume", lost)
        assert lost == 0
        assert_tables_equal_server(cluster, schema, server)
    finally:
        server.server.shutdown()
        server.server.server_close()


def records_lost(cluster: Cluster, schema: str, server: FakeServer) -> int:
    """Server records missing from the warehouse, or there in an older version: counted."""
    missing = 0
    expected = server.ids()
    for table in expected:
        if table == "resource":
            continue
        missing += len(expected[table] - set(table_keys(cluster, schema, table)))
    with cluster.connect() as con:
        for name in INCREMENTAL:
            landed = dict(con.execute(
                f'select id, to_char(updated_at, \'YYYY-MM-DD"T"HH24:MI:SS"Z"\') '
                f'from "{schema}"."{name}"').fetchall())
            truth = {r["id"]: r["updated_at"] for r in server.api.data.tables[name]}
            missing += sum(1 for key, stamp in truth.items()
                           if key in landed and landed[key] != stamp)
    return missing


SLOW_KILLS = 20  # in every scale: the scale sets how much each run reads


def read_slowly(rng: random.Random, kill_after: int, sig: int) -> Forward:
    """Forward the tap's output a few KiB at a time; signal the tap once `kill_after` bytes
    have been read, then read what is left."""

    def forward(tap: subprocess.Popen, target: subprocess.Popen) -> tuple[bytes, bool]:
        fd = tap.stdout.fileno()
        data = bytearray()
        killed = False
        forwarded = 0
        while chunk := os.read(fd, rng.choice([1024, 2048, 4096])):
            data += chunk
            if not killed and len(data) >= kill_after:
                tap.send_signal(sig)
                killed = True
            whole = data.rfind(b"\n") + 1
            if whole > forwarded:
                target.stdin.write(data[forwarded:whole])
                forwarded = whole
        return bytes(data), killed

    return forward


def check_lines(data: bytes, start: dict | None) -> tuple[int, list[dict]]:
    """Corrupt lines (not JSON, or a partial last line), and the messages; every STATE may
    only claim bookmark values of records written before it."""
    lines = data.split(b"\n")
    corrupt = int(lines[-1] != b"")
    messages = []
    for line in lines[:-1]:
        try:
            messages.append(json.loads(line))
        except ValueError:
            corrupt += 1
    written: dict[str, set] = {name: set() for name in INCREMENTAL}
    for name, entry in ((start or {}).get("bookmarks") or {}).items():
        if name in written and "replication_key_value" in entry:
            written[name].add(entry["replication_key_value"])
    for message in messages:
        if message["type"] == "RECORD" and message["stream"] in written:
            written[message["stream"]].add(message["record"]["updated_at"])
        elif message["type"] == "STATE":
            for name, entry in message["value"].get("bookmarks", {}).items():
                mark = entry.get("replication_key_value")
                assert mark is None or name not in written or mark in written[name], (
                    f"a STATE claims {name} up to {mark}, past every record written")
    return corrupt, messages


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_kill_while_the_target_reads_slowly(sig: int, cluster: Cluster, tmp_path: Path) -> None:
    server = start_server(scale=SCALE, segments=12)
    schema = f"s_{uuid.uuid4().hex[:10]}"
    pipe = Pipe(server, cluster, schema, tmp_path)
    rng = random.Random(f"slow-{sig}")
    state: dict | None = None
    corrupt = 0
    try:
        for run in range(SLOW_KILLS // 2):
            if run == SLOW_KILLS // 4:
                server.admin("mutate", {"updates": 30, "inserts": 20})
            start = state
            state, killed, data = pipe.run(
                state, read_slowly(rng, rng.randrange(20_000, 2_000_000), sig))
            bad, messages = check_lines(data, start)
            corrupt += bad
            if killed and sig == signal.SIGTERM:
                assert messages[-1]["type"] == "STATE", "the last line after SIGTERM"
                assert "Stopped by SIGTERM" in OUTPUTS[-2], (pipe.returncode, OUTPUTS[-2][-1500:])
        _, killed, _ = pipe.run(state)
        assert not killed
        lost = records_lost(cluster, schema, server)
        count(f"slow-reader runs stopped by {signal.Signals(sig).name}", SLOW_KILLS // 2)
        count("corrupt lines after a kill", corrupt)
        count("records lost or stale after resume", lost)
        assert corrupt == 0 and lost == 0
    finally:
        server.server.shutdown()
        server.server.server_close()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_ctrl_c_end_promptly_and_cleanly(sig, code) -> None:
    server = start_server(scale=3000, segments=4, latency_ms=5)
    try:
        argv = [*tap_command(), "--config", "/dev/stdin"]
        tap = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
        tap.stdin.write(json.dumps(config_for(server, page_size=20)).encode())
        tap.stdin.close()
        records = 0
        for line in tap.stdout:
            records += line.startswith(b'{"type":"RECORD"')
            if records == 300:
                tap.send_signal(sig)
                break
        rest = tap.stdout.read().decode()
        err = tap.stderr.read().decode()
        tap.wait(timeout=20)  # promptly: the process is gone long before this
        OUTPUTS.extend([rest, err])
        assert tap.returncode == code
        assert f"Stopped by {signal.Signals(sig).name}" in err
        assert "Traceback" not in err
        last = [ln for ln in rest.splitlines() if ln.strip()][-1]
        assert json.loads(last)["type"] == "STATE"
    finally:
        server.server.shutdown()
        server.server.server_close()


def test_a_signal_once_the_run_is_written_stops_nothing(server, tmp_path: Path) -> None:
    """Python puts the default handlers back while it winds down: a SIGTERM then would end
    a complete run as killed (-15, seen in the slow-reader test). Once everything is
    written the tap ignores signals, so the run exits as it ended."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(config_for(server)))
    probe = ("import atexit, signal, sys\n"
             "name = lambda s: getattr(signal.getsignal(s), 'name', 'a Python handler')\n"
             "atexit.register(lambda: print('at exit:', name(signal.SIGTERM),"
             " name(signal.SIGINT), file=sys.stderr))\n"
             f"sys.argv = ['tap-analytics', '--config', {str(config)!r}]\n"
             "from tap_analytics.tap import main\nmain()\n")
    run = subprocess.run([sys.executable, "-c", probe], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, timeout=120)
    OUTPUTS.append(run.stderr)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stderr.splitlines()[-1] == "at exit: SIG_IGN SIG_IGN"


def test_target_going_away_is_a_clear_error(server) -> None:
    config = Path(tempfile.mkdtemp()) / "config.json"
    config.write_text(json.dumps(config_for(server)))
    tap = subprocess.Popen([*tap_command(), "--config", str(config)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    tap.stdout.readline()
    tap.stdout.close()  # the target died
    err = tap.stderr.read().decode()
    tap.wait(timeout=30)
    OUTPUTS.append(err)
    assert tap.returncode == 1
    assert err.strip().splitlines()[-1].endswith("closed the pipe; stopping")
    assert "Traceback" not in err
