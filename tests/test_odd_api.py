"""When the API does not do what it says: pages capped below `limit` (with and without a
`total`, the cap changing mid-listing), records without an `updated_at` (null, absent,
empty), and a `Retry-After` given as an HTTP-date. Each through the real CLI, a full run
and an incremental one, every record checked against what the API serves."""

from __future__ import annotations

import os
import random
import typing as t

import pytest

from tap_analytics.streams import BUILTIN_STREAMS
from tap_analytics.timestamps import to_instant
from tests.helpers import FakeServer, Output, config_for, run_cli, start_server
from tests.landed import missing_values
from tests.test_targets import served

pytestmark = pytest.mark.e2e
KEYS = {cls.resource.name: cls.resource.primary_key for cls in BUILTIN_STREAMS}
INCREMENTAL = ("conversations", "contacts", "conversation_parts", "companies", "peoples")
SEEDS = {"small": (11, 12, 13), "full": tuple(range(11, 19))}[os.environ.get("TEST_SCALE",
                                                                             "small")]


def odd_api(seed: int, **kwargs: t.Any) -> FakeServer:
    """A fake API whose page cap (one or several, changing mid-listing) and `total` come
    from the seed."""
    rng = random.Random(seed)
    caps = tuple(rng.randint(7, 45) for _ in range(rng.randint(1, 3)))
    return start_server(scale=260, segments=4, page_caps=caps, cap_every=rng.randint(1, 4),
                        total_mode=rng.choice(["always", "never", "mixed"]), **kwargs)


@pytest.fixture
def stop() -> t.Iterator[list[FakeServer]]:
    servers: list[FakeServer] = []
    yield servers
    for fake in servers:
        fake.server.shutdown()
        fake.server.server_close()


def merged(*runs: Output) -> dict[str, list[dict]]:
    """What a target that merges on the key holds after these runs, in order."""
    out: dict[str, dict] = {}
    for run in runs:
        for stream, records in run.records.items():
            if stream not in KEYS:
                continue  # a declared resource: its test checks it
            rows = out.setdefault(stream, {})
            for record in records:
                rows[tuple(str(record[k]) for k in KEYS[stream])] = record
    return {stream: list(rows.values()) for stream, rows in out.items()}


def served_as_written(fake: FakeServer) -> dict[str, list[dict]]:
    """Every record the API serves, an empty `updated_at` as the null the tap writes."""
    truth = served(fake)
    for name in INCREMENTAL:
        truth[name] = [{**r, "updated_at": None} if r.get("updated_at") == "" else r
                       for r in truth[name]]
    return truth


def assert_exact(fake: FakeServer, *runs: Output, where: str) -> None:
    landed = merged(*runs)
    problems = missing_values(served_as_written(fake), landed, KEYS)
    assert not problems, f"{where}: {len(problems)} problems, first: " + "; ".join(problems[:5])
    for stream, ids in fake.ids().items():
        if stream in KEYS:
            assert len(landed.get(stream, [])) == len(ids), f"{where}: {stream} has extra rows"


def synced(config: dict, state: dict | None = None) -> Output:
    out = run_cli(config, state=state)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_a_capped_api_loses_nothing_in_a_full_and_an_incremental_run(seed, stop) -> None:
    fake = odd_api(seed)
    stop.append(fake)
    config = config_for(fake, page_size=60)
    first = synced(config)
    assert_exact(fake, first, where=f"seed {seed}, full run")
    warnings = [line for line in first.stderr.splitlines() if "caps its pages" in line]
    assert warnings, "the cap went untold"
    assert all("page_size" in line for line in warnings)
    # once per listing: each top-level listing and each segment's people at most once
    assert len(warnings) <= len(KEYS) - 1 + 4

    fake.admin("mutate", {"updates": 12, "inserts": 5})
    second = synced(config, state=first.last_state)
    assert_exact(fake, first, second, where=f"seed {seed}, incremental run")


@pytest.mark.parametrize("seed", SEEDS)
def test_records_without_updated_at_are_written_and_never_move_the_bookmark(seed, stop
                                                                           ) -> None:
    fake = start_server(scale=260, segments=4, missing_cursor_seed=seed)
    stop.append(fake)
    truth = fake.api.data.tables
    forms = {name: {repr(r.get("updated_at", "absent")) for r in truth[name]
                    if not r.get("updated_at")} for name in INCREMENTAL}
    assert all(f == {"None", "''", "'absent'"} for f in forms.values()), forms
    config = config_for(fake, page_size=40)
    first = synced(config)
    assert_exact(fake, first, where=f"seed {seed}, full run")
    for name in INCREMENTAL:
        blank = [r for r in first.records[name] if r["id"] in {
            s["id"] for s in truth[name] if not s.get("updated_at")}]
        assert blank and all(r["updated_at"] is None for r in blank), name
        mark = first.last_state["bookmarks"][name]["replication_key_value"]
        latest = max((r["updated_at"] for r in truth[name] if r.get("updated_at")),
                     key=to_instant)
        assert to_instant(mark) == to_instant(latest), f"{name}: bookmark {mark}"
        told = [line for line in first.stderr.splitlines()
                if f"Stream '{name}': " in line and "had no 'updated_at'" in line]
        assert len(told) == 1 and f"{len(blank)} records" in told[0], told

    fake.admin("mutate", {"updates": 12, "inserts": 5})
    second = synced(config, state=first.last_state)
    assert_exact(fake, first, second, where=f"seed {seed}, incremental run")


def test_a_capped_api_with_blank_cursors_loses_nothing(stop) -> None:
    fake = odd_api(SEEDS[0], missing_cursor_seed=SEEDS[0])
    stop.append(fake)
    config = config_for(fake, page_size=50)
    first = synced(config)
    fake.admin("mutate", {"updates": 9, "inserts": 4})
    second = synced(config, state=first.last_state)
    assert_exact(fake, first, second, where="capped, blank cursors")


def test_exclude_drops_records_without_updated_at_and_counts_them(stop) -> None:
    fake = start_server(scale=150, segments=2, missing_cursor_seed=5)
    stop.append(fake)
    out = synced(config_for(fake, on_cursor_value_missing="exclude"))
    for name in INCREMENTAL:
        rows = fake.api.data.tables[name]
        dated = {r["id"] for r in rows if r.get("updated_at")}
        assert set(out.keys(name)) == dated, name
        told = [line for line in out.stderr.splitlines()
                if f"Stream '{name}': {len(rows) - len(dated)} records had no" in line]
        assert len(told) == 1 and "dropped" in told[0], name


def test_fail_stops_the_run_with_one_line(stop) -> None:
    fake = start_server(scale=150, segments=2, missing_cursor_seed=5)
    stop.append(fake)
    out = run_cli(config_for(fake, on_cursor_value_missing="fail"))
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert "has no value in 'updated_at'" in last and "on_cursor_value_missing is fail" in last


def test_retry_after_as_an_http_date_is_waited_for(server: FakeServer) -> None:
    server.faults({"path": "/v1/teams", "kind": "429", "times": 1, "retry_after": "date:2"})
    out = run_cli(config_for(server, backoff_factor=0))
    assert out.returncode == 0, out.stderr[-2000:]
    assert set(out.keys("teams")) == server.ids()["teams"]
    asked = [r["t"] for r in server.requests() if r["path"] == "/v1/teams"]
    # the date is whole seconds, 2 s ahead: the retry comes at least 1 s after the 429
    assert len(asked) >= 2 and asked[1] - asked[0] >= 0.9, asked


DECLARED = [  # an offset resource and a child of segments, declared as a user would
    {"name": "resource_offset", "primary_key": "id",
     "endpoint": {"path": "/v1/resource", "data_selector": "data",
                  "paginator": {"type": "offset", "limit": 17}}},
    {"name": "segment_members", "primary_key": ["sid", "id"],
     "endpoint": {"path": "/segments/{sid}/people", "data_selector": "people",
                  "paginator": {"type": "offset", "limit": 13},
                  "params": {"sid": {"type": "resolve", "resource": "segments",
                                     "field": "id"}}}},
]


@pytest.mark.parametrize("seed", SEEDS)
def test_a_total_that_stops_counting_never_ends_a_listing(seed, stop) -> None:
    """`total` says at most a few records while many more are listed: every listing
    (incremental, full-table, a declared offset resource, child listings) is read to its
    real end, in a full and an incremental run, with and without a page cap."""
    rng = random.Random(seed)
    caps = (rng.randint(9, 19),) if seed % 2 else ()
    fake = start_server(scale=260, segments=4, total_mode="always",
                        total_cap=rng.randint(3, 25), page_caps=caps)
    stop.append(fake)
    config = config_for(fake, page_size=20, resources=DECLARED)
    first = synced(config)
    assert_exact(fake, first, where=f"seed {seed}, full run")
    ids = fake.ids()
    assert set(first.keys("resource_offset")) == ids["resource"]
    assert set(first.keys("segment_members", ("sid", "id"))) == ids["segment_people"]
    assert "is below the records it lists" in first.stderr

    fake.admin("mutate", {"updates": 12, "inserts": 30})
    second = synced(config, state=first.last_state)
    assert_exact(fake, first, second, where=f"seed {seed}, incremental run")
