"""Unit tests of the bookmark manager and the keyset paginator: values the API sent only,
compared as instants, never past the run's start, never moved back by re-read rows."""

from __future__ import annotations

import datetime

import pytest
import requests

from tap_analytics.keyset import KeysetPaginator, KeysetToken
from tap_analytics.resources import PaginatorSpec
from tap_analytics.state import BookmarkStateManager, ChildProgress, UnsortedListingError

UTC = datetime.timezone.utc
STARTED = datetime.datetime(2026, 6, 1, 12, 0, 0, 500_000, tzinfo=UTC)


class Output:
    """The writer's deferral: a bookmark moves when its records are committed."""

    def __init__(self) -> None:
        self.deferred: list = []

    def defer(self, apply) -> None:
        self.deferred.append(apply)

    def commit(self) -> None:
        for apply in self.deferred:
            apply()
        self.deferred.clear()


def manager(state: dict | None = None, *, sorted_: bool = True, output: Output | None = None
            ) -> tuple[BookmarkStateManager, dict]:
    tap_state = {"bookmarks": {"s": dict(state or {})}}
    return BookmarkStateManager(stream_name="s", tap_state=tap_state, is_sorted=sorted_,
                                timestamp=True, run_started=STARTED, output=output), tap_state


def feed(mgr: BookmarkStateManager, *values: str) -> None:
    for value in values:
        mgr.increment_state({"updated_at": value}, replication_key="updated_at")


def mark(tap_state: dict) -> str | None:
    return tap_state["bookmarks"]["s"].get("replication_key_value")


def test_values_advance_as_instants_whatever_their_form() -> None:
    mgr, state = manager()
    feed(mgr, "2026-06-01T10:00:00Z", "2026-06-01T10:00:00.500Z", "2026-06-01T15:30:01+05:30")
    assert mark(state) == "2026-06-01T15:30:01+05:30"  # 10:00:01 UTC, the form as sent
    feed(mgr, "2026-06-01T10:00:01.000Z")  # the same instant again: nothing moves
    assert mark(state) == "2026-06-01T15:30:01+05:30"


@pytest.mark.parametrize("future", ["2099-01-01T00:00:00Z", "2026-06-01T12:00:00.600Z"])
def test_a_value_after_the_run_started_never_becomes_the_bookmark(future: str) -> None:
    mgr, state = manager()
    feed(mgr, "2026-06-01T11:59:59Z", "2026-06-01T12:00:00.400Z", future)
    assert mark(state) == "2026-06-01T12:00:00.400Z"  # the last value the API sent before


def test_re_read_rows_below_the_bookmark_leave_it_where_it_is() -> None:
    mgr, state = manager({"replication_key": "updated_at",
                          "replication_key_value": "2026-06-01T11:00:00Z"})
    feed(mgr, "2026-06-01T10:59:00Z", "2026-06-01T10:59:30Z", "2026-06-01T11:00:00Z")
    assert mark(state) == "2026-06-01T11:00:00Z"
    feed(mgr, "2026-06-01T11:00:05Z")
    assert mark(state) == "2026-06-01T11:00:05Z"


def test_a_sorted_listing_out_of_order_stops_the_run() -> None:
    mgr, _ = manager()
    feed(mgr, "2026-06-01T10:00:00Z")
    with pytest.raises(UnsortedListingError, match="out of order"):
        feed(mgr, "2026-06-01T09:00:00Z")


def test_an_unsorted_listing_keeps_its_highest_value_in_progress_markers() -> None:
    mgr, state = manager(sorted_=False)
    feed(mgr, "2026-06-01T10:00:00Z", "2026-06-01T09:00:00Z", "2099-01-01T00:00:00Z")
    entry = state["bookmarks"]["s"]
    assert "replication_key_value" not in entry
    assert entry["progress_markers"]["replication_key_value"] == "2026-06-01T10:00:00Z"


def test_the_bookmark_moves_only_once_its_records_are_committed() -> None:
    output = Output()
    mgr, state = manager(output=output)
    feed(mgr, "2026-06-01T10:00:00Z", "2026-06-01T10:00:01Z")
    assert mark(state) is None
    output.commit()
    assert mark(state) == "2026-06-01T10:00:01Z"


def page(records: list[dict], total: int | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    body = {"data": records} if total is None else {"data": records, "total": total}
    response._content = requests.compat.json.dumps(body).encode()
    return response


def keyset(bookmark: str | None, size: int = 3, plan: bool = False) -> KeysetPaginator:
    """A keyset paginator; `plan` True reads by offset from the starting value until a shift,
    as listings do (False: by keyset from the start, as after a shift)."""
    return KeysetPaginator(bookmark, PaginatorSpec(type="offset"), size, "updated_since",
                           "updated_at", True, stream="s", plan=plan)


def rec(ident: str, when: str) -> dict:
    return {"id": ident, "updated_at": when}


def test_nothing_the_first_request_returns_is_skipped() -> None:
    """Rows before the bookmark in its second (or before it at all, arrived late) are
    written: the bookmark is compared with nothing the API returns."""
    pager = keyset("2026-06-01T10:00:00.700Z")
    assert pager.current_value == KeysetToken("2026-06-01T10:00:00Z")
    assert pager.request_params(pager.current_value) == {
        "limit": 3, "offset": 0, "updated_since": "2026-06-01T10:00:00Z"}
    rows = [rec("a", "2026-06-01T09:59:30Z"), rec("b", "2026-06-01T10:00:00.300Z")]
    assert pager.accept(rows) == rows


def test_next_page_asks_from_the_last_value_and_skips_what_was_read() -> None:
    pager = keyset(None)
    first = [rec("a", "2026-06-01T10:00:00Z"), rec("b", "2026-06-01T10:00:01Z"),
             rec("c", "2026-06-01T10:00:01Z")]
    assert pager.accept(first) == first
    pager.advance(page(first))
    token = pager.current_value
    assert token.since == "2026-06-01T10:00:01Z" and token.offset == 1  # overlap one: c
    again = [rec("c", "2026-06-01T10:00:01Z"), rec("d", "2026-06-01T10:00:02Z")]
    assert pager.accept(again) == [again[1]]


def test_a_listing_changing_at_the_bookmark_value_is_read_again_from_its_start() -> None:
    pager = keyset(None)
    first = [rec("a", "2026-06-01T10:00:00Z"), rec("b", "2026-06-01T10:00:01Z"),
             rec("c", "2026-06-01T10:00:01Z")]
    pager.accept(first)
    pager.advance(page(first))
    # c was changed meanwhile (moved to the end): the page no longer opens with it
    moved = [rec("d", "2026-06-01T10:00:02Z"), rec("c", "2026-06-01T10:00:09Z")]
    assert pager.accept(moved) == []
    pager.advance(page(moved))
    assert pager.current_value.offset == 0 and pager.current_value.reread == 1
    reread = [rec("b", "2026-06-01T10:00:01Z"), rec("d", "2026-06-01T10:00:02Z"),
              rec("c", "2026-06-01T10:00:09Z")]
    assert [r["id"] for r in pager.accept(reread)] == ["d", "c"]


def test_a_planned_read_steps_by_offset_from_its_starting_value() -> None:
    """Pages overlap by one record from one `updated_since`, so they can be fetched ahead:
    the plan is the tokens the paginator will ask for, up to `total`."""
    pager = keyset("2026-06-01T10:00:00Z", plan=True)
    first = [rec("a", "2026-06-01T10:00:00Z"), rec("b", "2026-06-01T10:00:01Z"),
             rec("c", "2026-06-01T10:00:01Z")]
    assert pager.accept(first) == first
    pager.advance(page(first, total=9))
    token = pager.current_value
    assert token == KeysetToken("2026-06-01T10:00:00Z", 2, 0, True)
    assert pager.planned(page(first, total=9), 8) == [
        token, KeysetToken("2026-06-01T10:00:00Z", 4, 0, True),
        KeysetToken("2026-06-01T10:00:00Z", 6, 0, True)]
    again = [rec("c", "2026-06-01T10:00:01Z"), rec("d", "2026-06-01T10:00:02Z"),
             rec("e", "2026-06-01T10:00:02Z")]
    assert pager.accept(again) == again[1:]


def test_a_planned_read_that_shifts_goes_on_by_keyset_from_the_last_value() -> None:
    """A page that does not open with the record the previous one ended on (a record read
    or to read changed meanwhile): the next page asks from the last value read, by keyset,
    and nothing is planned from then on; nothing read is written twice."""
    pager = keyset(None, plan=True)
    first = [rec("a", "2026-06-01T10:00:00Z"), rec("b", "2026-06-01T10:00:01Z"),
             rec("c", "2026-06-01T10:00:01Z")]
    pager.accept(first)
    pager.advance(page(first, total=6))
    moved = [rec("d", "2026-06-01T10:00:02Z"), rec("e", "2026-06-01T10:00:03Z"),
             rec("c", "2026-06-01T10:00:09Z")]
    assert pager.accept(moved) == []
    pager.advance(page(moved, total=6))
    assert pager.current_value == KeysetToken("2026-06-01T10:00:01Z", 0, 0)
    assert pager.planned(page(moved, total=6), 8) == []
    by_keyset = [rec("b", "2026-06-01T10:00:01Z"), rec("d", "2026-06-01T10:00:02Z"),
                 rec("e", "2026-06-01T10:00:03Z")]
    assert [r["id"] for r in pager.accept(by_keyset)] == ["d", "e"]
    pager.advance(page(by_keyset, total=4))
    assert pager.current_value.since == "2026-06-01T10:00:03Z"  # keyset from here on


def progress(saved: dict | None = None) -> tuple[ChildProgress, dict]:
    import threading

    state = {"progress": saved} if saved else {}
    return ChildProgress(state, threading.Lock(), version=111), state


def parents(*keys: str) -> list[dict]:
    return [{"segment_id": k} for k in keys]


def test_child_progress_keeps_the_key_every_listing_is_finished_up_to() -> None:
    tracker, state = progress()
    todo = tracker.todo(parents("s3", "s1", "s2", "s4"), "segment_id")
    assert [p["segment_id"] for p in todo] == ["s1", "s2", "s3", "s4"]  # key order
    tracker.finished("s2")  # out of order: s1 is still being read
    assert state["progress"] == {"version": 111, "after": None, "done": ["s2"]}
    tracker.finished("s1")
    assert state["progress"] == {"version": 111, "after": "s2", "done": []}
    tracker.finished("s4")
    assert state["progress"]["done"] == ["s4"]
    tracker.clear()
    assert "progress" not in state


def test_a_resumed_child_skips_finished_listings_and_keeps_the_stopped_runs_version() -> None:
    tracker, _ = progress({"version": 42, "after": "s2", "done": ["s4"]})
    assert tracker.resumed and tracker.version == 42
    # s0 was added meanwhile below `after`: the next run reads it; s2 was deleted meanwhile
    todo = tracker.todo(parents("s0", "s1", "s3", "s4", "s5"), "segment_id")
    assert [p["segment_id"] for p in todo] == ["s3", "s5"]


def test_each_paginator_builds_its_own_request() -> None:
    from tap_analytics.pagination import Since
    from tap_analytics.paging import build_paginator

    offset = PaginatorSpec(type="offset", limit_param="per_page", offset_param="skip")
    pager = build_paginator(offset, 50, key=["id"], stream="s")
    assert pager.request_params(pager.current_value) == {"per_page": 50, "skip": 0}
    cursor = PaginatorSpec(type="cursor", cursor_param="after")
    since = Since("updated_since", "2026-01-01T00:00:00Z")
    pager = build_paginator(cursor, 20, key=["id"], stream="s", since=since)
    assert pager.request_params(None) == {"limit": 20, "updated_since": "2026-01-01T00:00:00Z"}
    assert pager.request_params("c2")["after"] == "c2"
    pager = build_paginator(PaginatorSpec(), 20, key=["id"], stream="s", since=Since())
    assert pager.request_params(None) == {}  # one page: no paging parameters
