"""A full-table child of an incremental parent reads only the children of the parents that
changed since the last run: it must not send ACTIVATE_VERSION, or a target that honours it
(target-postgres with hard_delete, any target with `activate_version`) would drop every
other parent's children. Its table keeps them; a full-table child of a full-table parent
(read whole every run) still retires what the API no longer lists."""

from __future__ import annotations

import re
import typing as t

from tests.helpers import sync
from tests.unit_support import BASE, query

RESOURCES = [
    {"name": "things", "primary_key": "id",
     "endpoint": {"path": "/v1/things", "data_selector": "data",
                  "params": {"updated_since": {"type": "incremental",
                                               "cursor_path": "updated_at"}}}},
    {"name": "thing_parts", "primary_key": ["tid", "id"],
     "endpoint": {"path": "/v1/things/{tid}/parts", "data_selector": "data",
                  "params": {"tid": {"type": "resolve", "resource": "things", "field": "id"}}}},
    {"name": "shelves", "primary_key": "id",
     "endpoint": {"path": "/v1/shelves", "data_selector": "data"}},
    {"name": "shelf_parts", "primary_key": ["sid", "id"],
     "endpoint": {"path": "/v1/shelves/{sid}/parts", "data_selector": "data",
                  "params": {"sid": {"type": "resolve", "resource": "shelves", "field": "id"}}}},
]
STREAMS = [entry["name"] for entry in RESOURCES]
THINGS = [{"id": "t1", "updated_at": "2026-01-01T00:00:00Z"},
          {"id": "t2", "updated_at": "2026-01-02T00:00:00Z"}]


def serve(requests_mock: t.Any, things: list[dict]) -> None:
    def listing(request: t.Any, context: t.Any) -> dict:
        since = query(request).get("updated_since")
        rows = [r for r in things if not since or r["updated_at"] >= since]
        return {"data": rows if int(query(request).get("offset", 0)) == 0 else []}

    requests_mock.get(f"{BASE}/v1/things", json=listing)
    requests_mock.get(f"{BASE}/v1/shelves", json={"data": [{"id": "s1"}]})
    for parent in ("things", "shelves"):
        requests_mock.get(
            re.compile(rf"{BASE}/v1/{parent}/(\w+)/parts"),
            json=lambda request, context: {"data": [{"id": "p1"}, {"id": "p2"}]}
            if int(query(request).get("offset", 0)) == 0 else {"data": []})


def test_a_full_table_child_of_an_incremental_parent_never_drops_other_parents_children(
        requests_mock: t.Any) -> None:
    config = {"base_url": BASE, "api_key": "unit-key-000", "backoff_factor": 0,
              "resources": RESOURCES, "page_size": 50}
    serve(requests_mock, THINGS)
    first = sync(config, STREAMS)
    assert {(r["tid"], r["id"]) for r in first.records["thing_parts"]} == {
        ("t1", "p1"), ("t1", "p2"), ("t2", "p1"), ("t2", "p2")}
    # t2 changes: the next run reads t2 (and the inclusive bookmark's equal) only
    serve(requests_mock, [THINGS[0], {"id": "t2", "updated_at": "2026-01-05T00:00:00Z"}])
    second = sync(config, STREAMS, state=first.last_state)
    assert {r["tid"] for r in second.records["thing_parts"]} == {"t2"}
    for out in (first, second):
        versions = {m["stream"] for m in out.messages if m["type"] == "ACTIVATE_VERSION"}
        assert "thing_parts" not in versions, "t1's parts would be dropped by the target"
        assert {"shelves", "shelf_parts"} <= versions  # read whole: still retired
