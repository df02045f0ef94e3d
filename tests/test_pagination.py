"""Paginators read every record exactly once, whatever the listing looks like."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit_support import BASE, make_tap, query, stream_of

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
    records = list(stream_of(make_tap(page_size=limit), "teams").get_records(None))
    assert [r["id"] for r in records] == [r["id"] for r in rows]
    offsets = sorted(offset for offset, _ in calls)  # pages with a total come side by side
    assert len(offsets) == len(set(offsets)), "a page was read twice"
    assert offsets == overlapping_offsets(size, limit, with_total), "a page was skipped"
    assert all(lim == limit for _, lim in calls)


def overlapping_offsets(size: int, limit: int, with_total: bool) -> list[int]:
    """Pages overlap by one record (so a shifted listing shows); the last one is short, or
    ends at `total`: without a total, a listing that fills its last page needs one more."""
    step = limit - 1 if limit > 1 else 1
    offsets, offset = [], 0
    while True:
        offsets.append(offset)
        got = max(0, min(limit, size - offset))
        if got < limit or (with_total and offset + got >= size):
            return offsets
        offset += step


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
    records = list(stream_of(make_tap(), "accounts").get_records(None))
    assert [r["id"] for r in records] == [1, 2]
    assert len(requests_mock.request_history) == 1
    assert set(query(requests_mock.request_history[0])) == {"api_key"}


def test_page_size_sets_limit(requests_mock) -> None:
    requests_mock.get(BASE + "/v1/teams", json={"data": []})
    list(stream_of(make_tap(page_size=1000), "teams").get_records(None))
    assert query(requests_mock.request_history[0])["limit"] == "1000"


@pytest.mark.parametrize("total", [0, 3])
def test_total_stops_without_an_extra_request(requests_mock, total) -> None:
    rows = [{"id": str(i)} for i in range(total)]
    requests_mock.get(re.compile(re.escape(BASE + "/v1/teams")),
                      json={"data": rows, "total": total})
    records = list(stream_of(make_tap(page_size=3), "teams").get_records(None))
    assert len(records) == total
    assert len(requests_mock.request_history) == 1
