"""Paginators read every record exactly once, whatever the listing looks like."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tap_analytics.pagination import SPECULATION
from tests.unit_support import BASE, make_tap, query, read_stream, stream_of

HYPOTHESIS = settings(max_examples=60, deadline=None, derandomize=True,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


def serve_offset(mock, path: str, rows: list[dict], *, with_total: bool, key: str = "data"):
    calls: list[tuple[int, int]] = []

    def page(request, context):
        q = query(request)
        limit, offset = int(q["limit"]), int(q["offset"])
        calls.append((offset, limit))
        body = {key: rows[offset:offset + limit]}
        if with_total:
            body["total"] = len(rows)
        return body

    mock.get(re.compile(re.escape(BASE + path)), json=page)
    return calls


@HYPOTHESIS
@given(size=st.integers(0, 230), limit=st.integers(1, 40), with_total=st.booleans())
def test_offset_reads_each_record_once(requests_mock, size, limit, with_total) -> None:
    requests_mock.reset()
    rows = [{"id": f"t{i}", "name": f"team {i}"} for i in range(size)]
    calls = serve_offset(requests_mock, "/v1/teams", rows, with_total=with_total)
    records = read_stream(make_tap(page_size=limit), "teams")
    assert [r["id"] for r in records] == [r["id"] for r in rows]
    offsets = sorted(offset for offset, _ in calls)  # pages are fetched side by side
    assert len(offsets) == len(set(offsets)), "a page was read twice"
    wanted = overlapping_offsets(size, limit, with_total)
    assert offsets[:len(wanted)] == wanted, "a page was skipped"
    assert_speculated_past_the_end(offsets[len(wanted):], wanted, with_total)
    assert all(lim == limit for _, lim in calls)


def assert_speculated_past_the_end(extra: list[int], wanted: list[int], with_total: bool
                                   ) -> None:
    """Without a `total`, a listing that keeps filling its pages has up to SPECULATION of
    them in flight: those past its end are the only requests it wastes."""
    assert not extra or (not with_total and min(extra) > max(wanted)), f"pages asked {extra}"
    assert len(extra) <= SPECULATION - 1, f"{len(extra)} pages asked past the end"


def overlapping_offsets(size: int, limit: int, with_total: bool) -> list[int]:
    """Pages overlap by one record (so a shifted listing shows) and end at a short page
    that reaches `total`, or at a page with nothing past its overlap: without a total, the
    request after a short page (a short page alone does not prove the end: APIs cap pages
    below `limit`). A full page never ends a listing, even one that reaches `total`."""
    offsets, offset, overlap, full = [], 0, False, False
    while True:
        offsets.append(offset)
        got = max(0, min(limit, size - offset))
        if with_total and offset + got >= size and got < limit:
            return offsets
        if got - overlap <= 0:
            if not (overlap and got == 1 < limit and full) or (with_total
                                                                and offset + 1 >= size):
                return offsets
            # after a full page, the record it overlaps alone: the end, or a cap of one
            offset, overlap, full = offset + 1, False, False
            continue
        full = got == limit
        offset, overlap = (offset + got - 1, True) if got > 1 else (offset + got, False)


@HYPOTHESIS
@given(size=st.integers(0, 120), limit=st.integers(1, 25),
       cursors=st.lists(st.text(min_size=1, max_size=12), min_size=130, max_size=130,
                        unique=True),
       ending=st.sampled_from(["absent", "null", "empty"]))
def test_cursor_reads_each_record_once(requests_mock, size, limit, cursors, ending) -> None:
    requests_mock.reset()
    rows = [{"id": f"r{i}", "value": i} for i in range(size)]
    starts = {cursor: k * limit for k, cursor in enumerate(cursors[:200], start=1)}
    calls = []

    def page(request, context):
        after = query(request).get("after")
        start = starts[after] if after else 0
        calls.append(start)
        body: dict = {"data": rows[start:start + limit]}
        if start + limit < size:
            body["paging"] = {"next": {"after": cursors[start // limit]}}
        elif ending == "null":
            body["paging"] = {"next": None}
        elif ending == "empty":
            body["paging"] = {"next": {"after": ""}}
        return body

    requests_mock.get(re.compile(re.escape(BASE + "/v1/resource")), json=page)
    resources = [{"name": "resource_name", "schema": {"properties": {"id": {"type": "string"}}},
                  "endpoint": {"path": "/v1/resource", "data_selector": "data",
                               "paginator": {"type": "cursor", "limit": limit}}}]
    stream = stream_of(make_tap(resources=resources), "resource_name")
    records = list(stream.get_records(None))
    assert [r["id"] for r in records] == [r["id"] for r in rows]
    assert calls == sorted(set(calls))
    assert len(calls) == max(1, -(-size // limit))


def test_cursor_is_sent_as_after_and_limit_from_resource(requests_mock) -> None:
    requests_mock.get(BASE + "/v1/resource", [
        {"json": {"data": [{"id": "a"}], "paging": {"next": {"after": "c/2=="}}}},
        {"json": {"data": [{"id": "b"}]}},
    ])
    resources = [{"name": "resource_name", "schema": {"properties": {"id": {"type": "string"}}},
                  "endpoint": {"path": "/resource",
                               "paginator": {"type": "cursor", "limit": 1}}}]
    stream = stream_of(make_tap(resources=resources, page_size=50), "resource_name")
    assert [r["id"] for r in stream.get_records(None)] == ["a", "b"]
    first, second = (query(r) for r in requests_mock.request_history)
    assert first == {"limit": "1", "api_key": "unit-key-000"}
    assert second["after"] == "c/2==" and second["limit"] == "1"


def test_unpaged_endpoint_is_read_once_and_gets_no_paging(requests_mock) -> None:
    requests_mock.get(BASE + "/v1/accounts", json=[{"id": 1, "name": "a"}, {"id": 2}])
    records = read_stream(make_tap(), "accounts")
    assert [r["id"] for r in records] == [1, 2]
    assert len(requests_mock.request_history) == 1
    assert set(query(requests_mock.request_history[0])) == {"api_key"}


def test_page_size_sets_limit(requests_mock) -> None:
    requests_mock.get(BASE + "/v1/teams", json={"data": []})
    read_stream(make_tap(page_size=1000), "teams")
    assert query(requests_mock.request_history[0])["limit"] == "1000"


@pytest.mark.parametrize("total", [0, 2])
def test_a_short_page_that_reaches_total_ends_without_an_extra_request(requests_mock, total
                                                                       ) -> None:
    rows = [{"id": str(i)} for i in range(total)]
    requests_mock.get(re.compile(re.escape(BASE + "/v1/teams")),
                      json={"data": rows, "total": total})
    records = read_stream(make_tap(page_size=3), "teams")
    assert len(records) == total
    assert len(requests_mock.request_history) == 1


@pytest.mark.parametrize("with_cap", [False, True])
@pytest.mark.parametrize("stated", [1, 3, 10, 25])
def test_a_total_below_the_records_listed_never_ends_the_listing(requests_mock, stated,
                                                                 with_cap) -> None:
    """`total` stops counting (it says `stated` of 40): a full page never ends a listing;
    the listing ends at a page that brings nothing new, and `total` plans nothing past
    the first page read beyond it."""
    rows = [{"id": f"t{i:02d}"} for i in range(40)]
    calls = serve_capped(requests_mock, "/v1/teams", rows, [4] if with_cap else [1000],
                         with_total=True, total=stated)
    records = read_stream(make_tap(page_size=6, max_concurrency=4), "teams")
    assert [r["id"] for r in records] == [r["id"] for r in rows]
    assert len(calls) <= 2 * len(rows) // (3 if with_cap else 5) + 3, calls


def serve_capped(mock, path: str, rows: list[dict], caps: list[int], *, with_total: bool,
                 key: str = "data", total: int | None = None) -> list[tuple[int, int]]:
    """An API that answers at most `caps[n // 3]` records to the n-th request, whatever
    `limit` asks (its cap changes mid-listing), filtering by `updated_since` as API.md says;
    its `total` stops counting at `total` when given."""
    calls: list[tuple[int, int]] = []

    def page(request, context):
        q = query(request)
        limit, offset = int(q["limit"]), int(q["offset"])
        cap = caps[min(len(calls) // 3, len(caps) - 1)]
        calls.append((offset, limit))
        since = q.get("updated_since")
        listing = [r for r in rows if since is None or r["updated_at"] >= since]
        body = {key: listing[offset:offset + min(limit, cap)]}
        if with_total:
            body["total"] = len(listing) if total is None else min(total, len(listing))
        return body

    mock.get(re.compile(re.escape(BASE + path)), json=page)
    return calls


def stamped(i: int) -> str:
    return f"2026-03-01T10:{i // 60 % 60:02d}:{i % 60:02d}Z"


@HYPOTHESIS
@given(size=st.integers(0, 160), limit=st.integers(2, 40),
       caps=st.lists(st.integers(1, 45), min_size=1, max_size=3), with_total=st.booleans(),
       name=st.sampled_from(["teams", "contacts"]))
def test_a_page_cap_below_limit_loses_nothing(requests_mock, caplog, size, limit, caps,
                                              with_total, name) -> None:
    requests_mock.reset()
    caplog.clear()
    # incremental rows share their updated_at in threes (ties by id), as API.md orders them
    rows = [{"id": f"r{i:04d}", "updated_at": stamped(i // 3)} for i in range(size)]
    calls = serve_capped(requests_mock, f"/v1/{name}", rows, caps, with_total=with_total)
    records = read_stream(make_tap(page_size=limit), name)
    assert [r["id"] for r in records] == [r["id"] for r in rows], "a record lost or repeated"
    smallest = min(min(caps), limit)
    # each page but the probes brings at least cap - 1 new records
    assert len(calls) <= 2 * (size // max(1, smallest - 1)) + 3 * len(caps) + 4
    warned = [r for r in caplog.records if "caps its pages" in r.getMessage()]
    assert len(warned) <= 1, "the cap is told once per listing"
    if warned:
        assert "page_size" in warned[0].getMessage()


@pytest.mark.parametrize("with_total", [True, False])
@pytest.mark.parametrize("name", ["teams", "contacts"])
def test_an_api_that_honours_limit_costs_one_request_and_the_speculated_ones(requests_mock, caplog,
                                                                  with_total, name) -> None:
    rows = [{"id": f"r{i:04d}", "updated_at": stamped(i)} for i in range(95)]
    calls = serve_capped(requests_mock, f"/v1/{name}", rows, [1000], with_total=with_total)
    records = read_stream(make_tap(page_size=20), name)
    assert [r["id"] for r in records] == [r["id"] for r in rows]
    wanted = overlapping_offsets(95, 20, with_total)  # and the probe without a total
    assert len(wanted) == -(-95 // 19) + (0 if with_total else 1)
    offsets = sorted(offset for offset, _ in calls)
    assert offsets[:len(wanted)] == wanted
    assert_speculated_past_the_end(offsets[len(wanted):], wanted, with_total)
    assert "caps its pages" not in caplog.text


def test_a_capped_listing_is_read_at_the_cap_and_told_once(requests_mock, caplog) -> None:
    rows = [{"id": f"r{i:04d}"} for i in range(100)]
    calls = serve_capped(requests_mock, "/v1/teams", rows, [10], with_total=False)
    records = read_stream(make_tap(page_size=50), "teams")
    assert len(records) == 100
    assert [lim for _, lim in calls[:2]] == [50, 50] and {lim for _, lim in calls[2:]} == {10}
    warned = [r.getMessage() for r in caplog.records if "caps its pages" in r.getMessage()]
    assert warned == [
        "Stream 'teams': the API answered 10 records to a page of 50 and had more: it caps "
        "its pages. The rest of the listing is read 10 at a time; page_size 10 (or the "
        "resource's paginator limit) avoids the extra requests."]


@pytest.mark.parametrize("name", ["teams", "contacts"])
def test_an_api_that_ignores_offset_ends_after_one_repeat(requests_mock, name) -> None:
    """A short page is followed by one more request; one that repeats records already read
    (an endpoint ignoring `offset`) ends the listing, nothing written twice."""
    rows = [{"id": "a", "updated_at": stamped(1)}, {"id": "b", "updated_at": stamped(2)}]
    requests_mock.get(re.compile(re.escape(BASE + f"/v1/{name}")), json={"data": rows})
    records = read_stream(make_tap(page_size=10), name)
    assert [r["id"] for r in records] == ["a", "b"]
    assert len(requests_mock.request_history) == 2


def serve_segment_people(mock, sizes: dict[str, int], cap: int = 1000) -> dict[str, list]:
    """Each segment's people (no `total`), at most `cap` a page; the offsets asked, per segment."""
    asked: dict[str, list] = {segment: [] for segment in sizes}

    def page(request, context):
        segment = request.path.split("/")[3]
        q = query(request)
        limit, offset = int(q["limit"]), int(q["offset"])
        asked[segment].append(offset)
        people = [{"id": f"{segment}-p{i:03d}", "email": f"p{i}@x.test"}
                  for i in range(sizes[segment])]
        return {"people": people[offset:offset + min(limit, cap)]}

    mock.get(re.compile(re.escape(BASE) + r"/v1/segments/[^/]+/people"), json=page)
    return asked


def child_ids(tap, segment: str) -> list[str]:
    """One child listing, read as the fan-out reads each parent's."""
    pages = stream_of(tap, "segment_people").request_pages({"segment_id": segment},
                                                            conform=False)
    return [r["id"] for page in pages for r in page]


def test_a_child_listing_whose_endpoint_filled_a_page_ends_at_its_short_first_page(
        requests_mock) -> None:
    """Another segment's listing filled a page of this size: a segment whose first page is
    short has no more (no probe); the first listing, knowing nothing yet, paid it."""
    sizes = {"s1": 25, "s2": 4, "s3": 7}
    asked = serve_segment_people(requests_mock, sizes)
    tap = make_tap(page_size=10, max_concurrency=1)
    for segment, size in sizes.items():
        assert child_ids(tap, segment) == [f"{segment}-p{i:03d}" for i in range(size)]
    assert asked == {"s1": [0, 9, 18, 24], "s2": [0], "s3": [0]}


def test_a_capped_child_endpoint_keeps_its_probes(requests_mock) -> None:
    """An endpoint found capping (or never seen to fill a page) is in doubt: every short
    page is followed by the request that proves the end, and nothing is lost."""
    sizes = {"s1": 25, "s2": 4, "s3": 7}
    asked = serve_segment_people(requests_mock, sizes, cap=5)
    tap = make_tap(page_size=10, max_concurrency=1)
    for segment, size in sizes.items():
        assert child_ids(tap, segment) == [f"{segment}-p{i:03d}" for i in range(size)]
    assert asked["s2"] == [0, 3] and asked["s3"][:2] == [0, 4]
    unknown = serve_segment_people(requests_mock, {"s4": 3, "s5": 12})
    fresh = make_tap(page_size=10, max_concurrency=1)
    assert child_ids(fresh, "s4") == [f"s4-p{i:03d}" for i in range(3)]
    assert unknown["s4"] == [0, 2]  # nothing known of the endpoint yet: probed
