"""Concurrent child partitions: the same records and state as sequential, bounded memory;
and the request-rate limit, across threads."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import threading
import time

import pytest

from tap_analytics.fanout import CHUNK, Finished, fan_out
from tap_analytics.http import RateLimiter
from tests.helpers import (
    catalog_selecting,
    config_for,
    parse_lines,
    run_cli,
    start_server,
    sync,
    tap_command,
)

CHILD = ["segments", "segment_people"]


@pytest.fixture
def many_segments():
    fake = start_server(scale=300, segments=30, segment_size=23)
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def canonical(out) -> list[tuple]:
    return sorted((r["segment_id"], r["id"], r["email"]) for r in out.records["segment_people"])


def test_concurrent_partitions_equal_sequential(many_segments) -> None:
    sequential = sync(config_for(many_segments, max_concurrency=1, page_size=7), CHILD)
    concurrent = sync(config_for(many_segments, max_concurrency=8, page_size=7), CHILD)
    assert canonical(concurrent) == canonical(sequential)
    keys = concurrent.keys("segment_people", ("segment_id", "id"))
    assert len(keys) == len(set(keys)) == 30 * 23
    assert set(keys) == many_segments.ids()["segment_people"]
    assert concurrent.last_state == sequential.last_state
    assert "progress" not in concurrent.last_state["bookmarks"]["segment_people"]
    # While it runs, segment_people's state stays small: a key up to which every segment is
    # finished, and the few finished past it (never more than the read-ahead window).
    progress = [s["bookmarks"]["segment_people"]["progress"] for s in concurrent.states
                if "progress" in s["bookmarks"].get("segment_people", {})]
    assert progress and all(len(p["done"]) <= 4 * 8 for p in progress)
    afters = [p["after"] for p in progress if p["after"] is not None]
    assert afters and afters == sorted(afters)


@pytest.mark.parametrize("kind", ["503", "drop", "429"])
def test_concurrent_partitions_under_faults(many_segments, kind) -> None:
    many_segments.faults(*[{"path": f"/v1/segments/segment_{i:05d}/people", "kind": kind,
                            "times": 2, "retry_after": "0"} for i in range(0, 30, 3)])
    out = sync(config_for(many_segments, max_concurrency=6, page_size=10), CHILD)
    keys = out.keys("segment_people", ("segment_id", "id"))
    assert len(keys) == len(set(keys))
    assert set(keys) == many_segments.ids()["segment_people"]
    faulted = [r for r in many_segments.requests() if r["path"].endswith("/people")]
    assert len(faulted) > 30 * 3  # the injected faults really happened and were retried


def test_fatal_error_in_one_partition_stops_the_run(many_segments) -> None:
    many_segments.faults({"path": "/v1/segments/segment_00004/people", "kind": "403",
                          "times": -1})
    with pytest.raises(Exception, match="segment_people: GET /v1/segments/segment_00004/people "
                                        "answered 403"):
        sync(config_for(many_segments, max_concurrency=4), CHILD)


def test_fan_out_memory_is_bounded_by_the_pool() -> None:
    in_flight = 0
    peak = 0
    lock = threading.Lock()

    def read(partition: int):
        nonlocal in_flight, peak
        for i in range(CHUNK * 6):
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
            yield {"p": partition, "i": i}

    workers = 3
    seen = 0
    finished = []
    for item in fan_out(list(range(12)), read, workers):
        if isinstance(item, Finished):
            finished.append(item.partition)
            continue
        with lock:
            in_flight -= 1
        seen += 1
        if seen % 1000 == 0:
            time.sleep(0.001)  # a slow consumer: producers must wait, not pile up
    assert seen == 12 * CHUNK * 6
    assert sorted(finished) == list(range(12))
    # queue (2 per worker) + one chunk being filled per worker + one being consumed
    assert peak <= (workers * 2 + workers + 1) * CHUNK


def test_fan_out_marks_each_listing_finished_after_its_records_and_stays_in_a_window(
        ) -> None:
    started: list[int] = []
    low = [0]
    done: set[int] = set()

    def read(partition: int):
        started.append(partition)
        # the window counts from the first listing the workers have not finished; what the
        # caller has seen may lag by the queue (2 chunks per worker) and one per worker
        assert partition < low[0] + 5 + 4 * 3, "a listing started past the window"
        yield from ({"p": partition} for _ in range(partition % 3 * 40))

    seen: dict[int, int] = {}
    for item in fan_out(list(range(40)), read, 4, window=5):
        if isinstance(item, Finished):
            assert seen.get(item.partition, 0) == item.partition % 3 * 40
            done.add(item.partition)
            while low[0] in done:
                low[0] += 1
        else:
            seen[item["p"]] = seen.get(item["p"], 0) + 1
    assert sorted(done) == list(range(40)) and sorted(started) == list(range(40))


def test_fan_out_raises_the_first_worker_error_and_stops() -> None:
    started = []

    def read(partition: int):
        started.append(partition)
        if partition == 2:
            raise ValueError("boom in 2")
        yield from ({"p": partition, "i": i} for i in range(10))

    with pytest.raises(ValueError, match="boom in 2"):
        list(fan_out(list(range(50)), read, 4))
    assert len(started) < 50


def test_rate_limiter_spaces_requests_without_sleeping_for_real() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)

    limiter = RateLimiter(4, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        limiter.acquire()
    assert slept == pytest.approx([0.25, 0.5, 0.75, 1.0])


def test_rate_limit_holds_across_threads_by_a_fake_clock(many_segments) -> None:
    """Every request of a sync side by side (8 in flight) takes its turn from the one
    limiter: on a clock that never moves, the turns handed out are exactly 1/rate apart,
    and there are as many as the server saw requests."""
    from tap_analytics.http import RateLimiter

    rate = 25
    turns: list[float] = []

    def fake_sleep(seconds: float) -> None:
        turns.append(seconds)  # the clock stays at 0: a wait of s is the turn at s

    def fake_limiter(tap) -> None:
        tap.sessions.budget.limiter = RateLimiter(rate, clock=lambda: 0.0, sleep=fake_sleep)

    out = sync(config_for(many_segments, max_concurrency=8, max_requests_per_second=rate),
               CHILD, prepare=fake_limiter)
    assert len(out.records["segment_people"]) == 30 * 23
    served = len(many_segments.requests())
    assert served >= 31 and len(turns) == served - 1  # the first turn needs no wait
    assert sorted(turns) == pytest.approx([(i + 1) / rate for i in range(len(turns))])


def canonical_records(out) -> dict[str, list]:
    return {name: sorted(json.dumps(r, sort_keys=True) for r in rows)
            for name, rows in out.records.items()}


@pytest.mark.parametrize("faults", ["none", "transient", "429"])
def test_a_whole_sync_side_by_side_equals_one_after_another(faults: str) -> None:
    """Every stream at once on a budget of 8, or one request at a time: the same records,
    each once, and the same final state, with faults and 429s thrown in."""
    outputs = []
    for concurrency in (1, 8):
        fake = start_server(scale=300, segments=12, segment_size=40)
        try:
            rules = []
            if faults == "transient":
                rules = [{"path": p, "kind": k, "times": 2, "after": a}
                         for p, k, a in (("/v1/contacts", "503", 1), ("/v1/teams", "drop", 0),
                                         ("/v1/segments/segment_00004/people", "502", 1))]
            elif faults == "429":
                rules = [{"path": p, "kind": "429", "times": 3, "after": 1, "retry_after": "0"}
                         for p in ("/v1/conversations", "/v1/people/all",
                                   "/v1/segments/segment_00002/people")]
            fake.faults(*rules)
            out = sync(config_for(fake, max_concurrency=concurrency, page_size=25))
            assert all(rule.fired == rule.times for rule in fake.api.rules)
            for name, key in (("segment_people", ("segment_id", "id")), ("contacts", ("id",))):
                keys = out.keys(name, key)
                assert len(keys) == len(set(keys)) and set(keys) == fake.ids()[name]
            outputs.append(out)
        finally:
            fake.server.shutdown()
            fake.server.server_close()
    sequential, side_by_side = outputs
    assert canonical_records(side_by_side) == canonical_records(sequential)
    assert side_by_side.last_state == sequential.last_state


class OpenAt:
    """A gate for the fake API that opens once `n` requests wait on it at once (or each
    waiter's `patience` runs out): whether n are ever in flight does not hang on timing."""

    def __init__(self, n: int, patience: float = 20) -> None:
        self.n, self.patience, self.waiting, self.open = n, patience, 0, False
        self.cond = threading.Condition()

    def wait(self, timeout: float | None = None) -> bool:
        with self.cond:
            self.waiting += 1
            if self.waiting >= self.n:
                self.open = True
                self.cond.notify_all()
            return self.cond.wait_for(lambda: self.open, self.patience)


def test_budget_bounds_requests_in_flight_across_streams() -> None:
    fake = start_server(scale=300, segments=20, segment_size=30, latency_ms=15)
    fake.api.gate = OpenAt(5)
    try:
        from tap_analytics.tap import TapAnalytics

        tap = TapAnalytics(config=config_for(fake, max_concurrency=5, page_size=20))
        with contextlib.redirect_stdout(io.TextIOWrapper(io.BytesIO())):
            tap.sync_all()
        assert tap.sessions.budget.peak == 5  # reached, never passed
        assert len(fake.requests()) > 100
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def test_aimd_halves_on_429_and_grows_back() -> None:
    from tap_analytics.http import RequestBudget

    budget = RequestBudget(8)
    for _ in range(3):
        budget.acquire()
        budget.release(throttled=True)
    assert budget.limit == 1
    for _ in range(1 + 2 + 3 + 4):
        budget.acquire()
        budget.release(throttled=False)
    assert budget.limit == 5


def test_a_kill_inside_segment_people_resumes_past_the_finished_segments(tmp_path) -> None:
    fake = start_server(scale=600, segments=30, segment_size=50, latency_ms=2)
    try:
        config = tmp_path / "config.json"
        config.write_text(json.dumps(config_for(fake, page_size=20, max_concurrency=4)))
        catalog = tmp_path / "catalog.json"
        catalog.write_text(json.dumps(catalog_selecting(config_for(fake), CHILD)))
        argv = [*tap_command(), "--config", str(config), "--catalog", str(catalog)]
        tap = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        lines, people = [], 0
        for line in tap.stdout:
            lines.append(line)
            people += b'"stream":"segment_people"' in line and line.startswith(b'{"type":"RECO')
            if people == 600:  # about 12 of 30 segments
                tap.kill()
                break
        tap.wait(timeout=30)
        first = parse_lines(b"".join(lines).decode())
        state = [m["value"] for m in first if m["type"] == "STATE"][-1]
        progress = state["bookmarks"]["segment_people"]["progress"]
        finished = {sid for sid in fake.api.data.members
                    if sid <= (progress["after"] or "") or sid in progress["done"]}
        assert len(finished) >= 5
        fake.admin("reset")
        second = run_cli(json.loads(config.read_text()), "--catalog", str(catalog),
                         state=state)
        assert second.returncode == 0, second.stderr[-2000:]
        read_again = {r["path"].split("/")[3] for r in fake.requests()
                      if r["path"].endswith("/people")}
        assert not read_again & finished, "finished segments were read again"
        assert read_again == set(fake.api.data.members) - finished
        written = {(r["record"]["segment_id"], r["record"]["id"]) for r in first
                   if r["type"] == "RECORD" and r["stream"] == "segment_people"}
        written |= set(second.keys("segment_people", ("segment_id", "id")))
        assert written == fake.ids()["segment_people"], "memberships lost over the kill"
        assert "progress" not in second.last_state["bookmarks"]["segment_people"]
        assert "resumes: " in second.stderr
        # the table version of the stopped run: its rows are kept by ACTIVATE_VERSION
        activate = [m for m in second.messages if m["type"] == "ACTIVATE_VERSION"
                    and m["stream"] == "segment_people"]
        assert [m["version"] for m in activate] == [progress["version"]]
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def test_a_state_is_written_whole_while_other_threads_change_it() -> None:
    """Streams change their own bookmarks (and remembered types) while another thread
    writes the STATE: the state is encoded in one step, never walked half-way."""
    from tap_analytics.output import BufferedMsgSpecWriter

    writer = BufferedMsgSpecWriter()
    state: dict = {"bookmarks": {"s": {"types": {}}}}
    stop = threading.Event()
    turns = [0]

    def churn() -> None:
        i = 0
        while not stop.is_set():
            types = state["bookmarks"]["s"]["types"]
            types[f"f{i % 500}"] = {"type": ["string", "null"]}
            if i % 500 == 499:
                types.clear()
            i += 1
            turns[0] = i

    worker = threading.Thread(target=churn, daemon=True)
    worker.start()
    buffer = io.BytesIO()
    out = io.TextIOWrapper(buffer)
    try:
        with contextlib.redirect_stdout(out):
            for n in range(3000):
                writer.write_state(state)  # raised "dictionary changed size" before
                if n % 300 == 0:  # let the churn run between some writes, for sure
                    seen = turns[0]
                    while turns[0] == seen:
                        time.sleep(0.0001)
            out.flush()
    finally:
        stop.set()
        worker.join()
    lines = buffer.getvalue().splitlines()
    assert len(lines) >= 2, "the churn should have changed the state between writes"
    for line in lines:
        message = json.loads(line)  # each STATE whole
        assert message["type"] == "STATE" and "s" in message["value"]["bookmarks"]


def test_a_line_longer_than_pipe_buf_goes_into_the_pipe_whole() -> None:
    """A STATE of several KiB waits until the pipe has room for all of it: never is part
    of it in the pipe while the rest waits (a SIGKILL then would leave half a line)."""
    import fcntl
    import os

    from tap_analytics.output import F_GETPIPE_SZ, PIPE_BUF, _queued, _write_lines

    read_fd, write_fd = os.pipe()
    try:
        capacity = fcntl.fcntl(write_fd, F_GETPIPE_SZ)
        small = b"x" * 99 + b"\n"
        filled = (capacity - 4 * PIPE_BUF) // len(small) * len(small)
        os.write(write_fd, small * (filled // len(small)))  # the reader is behind
        big = b'{"type":"STATE","value":"' + b"y" * (6 * PIPE_BUF) + b'"}\n'
        writer = threading.Thread(target=_write_lines, args=(write_fd, bytearray(big)),
                                  daemon=True)
        writer.start()
        for _ in range(200):  # while the big line waits, not a byte of it goes in
            assert _queued(read_fd) == filled
            assert writer.is_alive()
        got = bytearray()
        while len(got) < filled + len(big):
            got += os.read(read_fd, 65536)
        writer.join()
        assert bytes(got) == small * (filled // len(small)) + big
    finally:
        os.close(read_fd)
        os.close(write_fd)
