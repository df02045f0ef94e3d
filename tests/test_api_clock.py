"""The API's timestamps are data, not the tap's clock: a bookmark only ever holds a value the
API sent, never one dated after the run started, and nothing the API returns for
`updated_since` is dropped by comparing it with a value the tap made up. With an API clock
behind or ahead of the tap's, a record dated 2099, changes in the run's first second, and
rows that arrive late (`lookback_seconds`)."""

from __future__ import annotations

import datetime

import pytest

from tests.helpers import FakeServer, Output, config_for, run_cli

pytestmark = pytest.mark.e2e
STREAMS = ("contacts", "conversations", "peoples")
UTC = datetime.timezone.utc


def instant(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def synced(out: Output) -> Output:
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def assert_bookmarks_are_api_values(out: Output, started: datetime.datetime) -> None:
    for name in STREAMS:
        mark = out.last_state["bookmarks"][name]["replication_key_value"]
        sent = {r["updated_at"] for r in out.records[name]}
        assert mark in sent, f"{name}: bookmark {mark} is not a value the API sent"
        assert instant(mark) <= started + datetime.timedelta(seconds=1), name


def assert_changes_read(changed: dict, out: Output) -> None:
    for name in STREAMS:
        wanted = set(changed[name]["updated"]) | set(changed[name]["inserted"])
        missing = wanted - set(out.keys(name))
        assert not missing, f"{name}: {len(missing)} of {len(wanted)} changes never read"


def test_a_future_dated_record_leaves_the_bookmark_at_a_value_the_api_sent(
        server: FakeServer) -> None:
    future = server.admin("future", {"stream": "contacts"})["id"]
    started = datetime.datetime.now(UTC)
    first = synced(run_cli(config_for(server)))
    assert future in first.keys("contacts")
    assert_bookmarks_are_api_values(first, datetime.datetime.now(UTC))
    mark = first.last_state["bookmarks"]["contacts"]["replication_key_value"]
    below = [r["updated_at"] for r in first.records["contacts"] if instant(r["updated_at"])
             <= started]
    assert instant(mark) == max(map(instant, below)), "the last value before the future one"
    assert "bookmark stays at the last value before it" in first.stderr
    changed = server.admin("mutate", {"updates": 3, "inserts": 2, "now": True})
    second = synced(run_cli(config_for(server), state=first.last_state))
    assert_changes_read(changed, second)


@pytest.mark.parametrize("skew", [-300, 300], ids=["api-clock-behind", "api-clock-ahead"])
def test_an_api_clock_minutes_off_loses_nothing(server: FakeServer, skew: int) -> None:
    """Records the API dates by its own clock, 5 minutes off the tap's, with a 2099 record
    among them: every change made after a run is read by the next."""
    server.admin("mutate", {"updates": 4, "inserts": 2, "now": True, "skew": skew})
    server.admin("future", {"stream": "contacts"})
    first = synced(run_cli(config_for(server)))
    assert_bookmarks_are_api_values(first, datetime.datetime.now(UTC))
    for round_ in range(2):
        changed = server.admin("mutate", {"updates": 5, "inserts": 3, "now": True,
                                          "skew": skew})
        second = synced(run_cli(config_for(server), state=first.last_state))
        assert_changes_read(changed, second)
        assert_bookmarks_are_api_values(second, datetime.datetime.now(UTC))
        first = second if round_ == 0 else first


def test_changes_in_the_second_the_run_started_are_read(server: FakeServer) -> None:
    started = datetime.datetime.now(UTC)
    server.admin("future", {"stream": "contacts"})
    first = synced(run_cli(config_for(server)))
    # dated in the run's first second, before the tap's own start by its clock: the API
    # made them then, and the tap read the listing before they were visible
    at = started.replace(microsecond=0).isoformat().replace("+00:00", ".000Z")
    changed = server.admin("mutate", {"updates": 4, "inserts": 3, "at": at})
    second = synced(run_cli(config_for(server), state=first.last_state))
    assert_changes_read(changed, second)


def test_late_rows_are_read_within_the_lookback(server: FakeServer) -> None:
    first = synced(run_cli(config_for(server)))
    marks = {n: first.last_state["bookmarks"][n]["replication_key_value"] for n in STREAMS}
    # a row stamped 30 s before the bookmark, visible to readers only now
    late = {}
    for name in STREAMS:
        at = (instant(marks[name]) - datetime.timedelta(seconds=30)).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        late[name] = server.admin("mutate", {"updates": 0, "inserts": 1, "streams": [name],
                                             "at": at})[name]["inserted"][0]
    without = synced(run_cli(config_for(server), state=first.last_state))
    for name in STREAMS:  # the limit lookback exists for
        assert late[name] not in without.keys(name)
    server.admin("reset")
    within = synced(run_cli(config_for(server, lookback_seconds=60), state=first.last_state))
    for name in STREAMS:
        assert late[name] in within.keys(name), name
        # the bookmark never moves back for the re-read rows
        assert within.last_state["bookmarks"][name]["replication_key_value"] == marks[name]
    sent = {r["path"]: r["query"].get("updated_since") for r in server.requests()
            if r["query"].get("offset") in (None, "0")}
    expected = (instant(marks["contacts"]) - datetime.timedelta(seconds=60)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    assert sent["/v1/contacts"] == expected
