"""Nothing lost while the API moves under the tap: changes during a run, timestamp forms and
offsets, a future-dated record, the last buffered records, redirects, charsets, integer
cursors, stream-map filters on parents, and one thread's Retry-After pausing the others."""

from __future__ import annotations

import json

import pytest

from fake_api.server import serve_recorder
from tap_analytics.timestamps import to_instant
from tests.helpers import (
    FakeServer,
    catalog_selecting,
    config_for,
    run_cli,
    start_server,
    sync,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def mixed():
    fake = start_server(scale=150, segments=4, mixed_timestamps=True)
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def latest(out, stream: str) -> dict[str, dict]:
    """The last version of each record the run wrote."""
    return {r["id"]: r for r in out.records[stream]}


def test_updates_during_an_incremental_run_skip_nothing(server: FakeServer) -> None:
    # after the first page, the first 5 records (already read) are updated: they move to
    # the end of the listing, and every later offset shifts by 5
    server.faults({"path": "/v1/contacts", "kind": "change", "after": 1, "times": 1,
                   "updates": 5})
    out = run_cli(config_for(server, page_size=20))
    assert out.returncode == 0, out.stderr[-2000:]
    got = latest(out, "contacts")
    truth = {r["id"]: r for r in server.api.data.tables["contacts"]}
    assert set(got) == set(truth), f"{len(set(truth) - set(got))} records skipped"
    assert {i: r["updated_at"] for i, r in got.items()} == {
        i: r["updated_at"] for i, r in truth.items()}, "a changed record's last version is missing"


@pytest.mark.parametrize("change", [{"deletes": 3}, {"inserts": 2}, {"deletes": 2, "inserts": 4}])
def test_a_full_table_listing_that_shifts_is_read_again(server: FakeServer, change) -> None:
    server.faults({"path": "/v1/teams", "kind": "change", "after": 1, "times": 1, **change})
    out = sync(config_for(server, page_size=4), ["teams"])
    got = set(out.keys("teams"))
    assert server.ids()["teams"] <= got, "records the listing still has were skipped"
    assert len(out.keys("teams")) == len(got), "a record was written twice"


def test_start_date_with_an_offset_is_sent_in_utc(server: FakeServer) -> None:
    out = run_cli(config_for(server, start_date="2026-01-01T05:00:00+05:00"))
    assert out.returncode == 0, out.stderr[-2000:]
    sent = [r["query"].get("updated_since") for r in server.requests()
            if r["path"] == "/v1/contacts"]
    assert sent[0] == "2026-01-01T00:00:00Z"  # 05:00 at +05:00 is midnight UTC


def test_mixed_rfc3339_forms_are_compared_as_instants(mixed: FakeServer) -> None:
    config = config_for(mixed, page_size=25)
    first = run_cli(config)
    assert first.returncode == 0, first.stderr[-2000:]
    for name in ("contacts", "conversations", "peoples"):
        assert set(first.keys(name)) == mixed.ids()[name]
    mixed.admin("mutate", {"updates": 4, "inserts": 3})
    mixed.admin("reset")
    second = run_cli(config, state=first.last_state)
    assert second.returncode == 0, second.stderr[-2000:]
    for name in ("contacts", "conversations", "peoples"):
        truth = {r["id"]: to_instant(r["updated_at"]) for r in mixed.api.data.tables[name]}
        written = [*first.records[name], *second.records[name]]
        merged = {r["id"]: to_instant(r["updated_at"]) for r in written}
        assert merged == truth, name
        # the same instants, written in UTC (utc_timestamps): the API sent several offsets
        assert all(r["updated_at"].endswith(("Z", "+00:00")) for r in written), name
        for request in mixed.requests():
            since = request["query"].get("updated_since")
            assert since is None or (since.endswith("Z") and len(since) == 20)


def test_records_are_written_when_the_final_state_repeats_the_last(server: FakeServer
                                                                     ) -> None:
    catalog = catalog_selecting(config_for(server), ["contacts"])
    first = run_cli(config_for(server), catalog=catalog)
    assert first.returncode == 0, first.stderr[-2000:]
    # Nothing changed: the records at the bookmark come back (updated_since is inclusive),
    # and the run ends with the STATE it started with, which the SDK does not write twice.
    second = run_cli(config_for(server), catalog=catalog, state=first.last_state)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.states[-1] == first.last_state
    mark = first.last_state["bookmarks"]["contacts"]["replication_key_value"]
    at_mark = {r["id"] for r in first.records["contacts"] if r["updated_at"] == mark}
    assert at_mark and set(second.keys("contacts")) == at_mark, "records read, never written"


@pytest.mark.parametrize("location", ["query", "header"])
def test_a_redirect_to_another_host_never_carries_the_key(server: FakeServer, location
                                                            ) -> None:
    other = serve_recorder()
    try:
        target = f"http://127.0.0.1:{other.server_port}"
        server.faults({"path": "/v1/teams", "kind": "redirect", "location": target,
                       "times": -1})
        out = run_cli(config_for(server, api_key_location=location))
        assert out.returncode == 1
        last = out.stderr.strip().splitlines()[-1]
        assert "teams" in last and "redirect" in last and "another host" in last, last
        for received in other.received:
            assert server.api.api_key not in json.dumps(received), "the key left the API host"
        assert other.received == []
    finally:
        other.shutdown()
        other.server_close()


def test_a_redirect_within_the_api_host_is_followed(server: FakeServer) -> None:
    server.faults({"path": "/v1/teams", "kind": "redirect", "location": server.url,
                   "times": 1})
    out = sync(config_for(server), ["teams"])
    assert set(out.keys("teams")) == server.ids()["teams"]


def test_a_body_in_a_declared_charset_is_decoded(server: FakeServer) -> None:
    server.faults({"path": "/v1/people/all", "kind": "latin1", "times": -1})
    out = sync(config_for(server), ["peoples"])
    names = {r["last_name"] for r in out.records["peoples"]}
    assert "Gödel" in names


def test_an_undecodable_body_names_stream_and_path(server: FakeServer) -> None:
    server.faults({"path": "/v1/people/all", "kind": "badutf8", "times": -1})
    out = run_cli(config_for(server))
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert "peoples" in last and "/v1/people/all" in last and "utf-8" in last.lower(), last


def test_an_integer_cursor_resource_resumes(server: FakeServer) -> None:
    resource = {"name": "ledger", "primary_key": "id",
                "endpoint": {"path": "/v1/resource", "data_selector": "data",
                             "paginator": {"type": "cursor", "limit": 10},
                             "params": {"value_since": {"type": "incremental",
                                                        "cursor_path": "value"}}}}
    config = config_for(server, resources=[resource])
    first = run_cli(config)
    assert first.returncode == 0, first.stderr[-2000:]
    mark = first.last_state["bookmarks"]["ledger"]["replication_key_value"]
    assert mark == max(r["value"] for r in server.api.data.tables["resource"])
    second = run_cli(config, state=first.last_state)
    assert second.returncode == 0, second.stderr[-2000:]
    sent = {r["query"].get("value_since") for r in server.requests()
            if r["path"] == "/v1/resource"}
    assert str(mark) in sent


def test_a_stream_map_filter_on_segments_limits_the_people_read(server: FakeServer) -> None:
    maps = {"segments": {"__filter__": "id == 'segment_00002'"}}
    out = sync(config_for(server, stream_maps=maps), ["segments", "segment_people"])
    assert {r["segment_id"] for r in out.records["segment_people"]} == {"segment_00002"}
    listed = {r["path"] for r in server.requests() if r["path"].endswith("/people")}
    assert listed == {"/v1/segments/segment_00002/people"}


def test_retry_after_in_one_thread_pauses_every_thread() -> None:
    # 48 listings of 6 pages, 8 at a time at 30 ms each: about a second of requests
    fake = start_server(scale=400, segments=48, segment_size=60, latency_ms=30)
    try:
        fake.faults({"path": "/v1/segments/segment_00003/people", "kind": "429",
                     "retry_after": "1", "times": 1, "after": 1})
        out = sync(config_for(fake, max_concurrency=8, page_size=10),
                   ["segments", "segment_people"])
        assert set(out.keys("segment_people", ("segment_id", "id"))) == \
            fake.ids()["segment_people"]
        log = sorted(fake.requests(), key=lambda r: r["t"])
        refused = next(r["t"] for r in log if r["path"] == "/v1/segments/segment_00003/people")
        # requests already on the wire arrive within moments; none may start in the pause
        during = [r for r in log if refused + 0.25 < r["t"] < refused + 0.9]
        assert during == [], f"{len(during)} requests during another thread's Retry-After"
        assert any(r["t"] >= refused + 0.9 for r in log)
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def test_retry_after_gate_waits_without_sleeping_for_real() -> None:
    from tap_analytics.http import RequestGate

    now = [10.0]
    slept: list[float] = []
    gate = RequestGate(clock=lambda: now[0], sleep=lambda s: slept.append(s) or now.__setitem__(
        0, now[0] + s))
    gate.pause(2.5)
    gate.wait()
    assert slept == [pytest.approx(2.5)]
    gate.pause(3.0)
    gate.pause(1.0)  # a shorter pause never shortens a longer one
    now[0] += 0.2
    gate.wait()
    assert slept[-1] == pytest.approx(2.8)
    gate.wait()  # the pause is over: no wait
    assert len(slept) == 2
