"""Every selection of streams is valid Singer and exact: each stream alone, each child
without its parent (built-in and declared), a parent without its children, none at all.
Through the real CLI with a catalog, as Meltano's `select` hands one over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tap_analytics.streams import BUILTIN_STREAMS
from tests.helpers import FakeServer, catalog_selecting, config_for, run_cli, sync
from tests.singer_order import assert_singer_order

pytestmark = pytest.mark.e2e
STREAMS = [cls.resource.name for cls in BUILTIN_STREAMS]
KEYS = {cls.resource.name: cls.resource.primary_key for cls in BUILTIN_STREAMS}
# a declared child of a built-in parent, and a declared child of a declared parent
DECLARED = [
    {"name": "segment_members", "primary_key": ["sid", "id"],
     "endpoint": {"path": "/segments/{sid}/people", "data_selector": "people",
                  "paginator": {"type": "offset", "limit": 13},
                  "params": {"sid": {"type": "resolve", "resource": "segments",
                                     "field": "id"}}}},
    {"name": "my_segments", "primary_key": "id",
     "endpoint": {"path": "/v1/segments", "data_selector": "segments"}},
    {"name": "my_members", "primary_key": ["segment", "id"],
     "endpoint": {"path": "/v1/segments/{segment}/people", "data_selector": "people",
                  "paginator": {"type": "offset", "limit": 7},
                  "params": {"segment": {"type": "resolve", "resource": "my_segments",
                                         "field": "id"}}}},
]
SERVED_AS = {"segment_members": "segment_people", "my_segments": "segments",
             "my_members": "segment_people"}
DECLARED_KEYS = {"segment_members": ("sid", "id"), "my_segments": ("id",),
                 "my_members": ("segment", "id")}
SELECTIONS = [*([name] for name in STREAMS), ["segment_members"], ["my_members"],
              ["my_segments"], ["segments", "my_members"], []]


def keys_of(out, stream: str) -> set:
    key = KEYS.get(stream) or DECLARED_KEYS[stream]
    got = out.keys(stream, key)
    assert len(got) == len(set(got)), f"{stream}: a record written twice"
    return set(got)


# through the real CLI: the child alone and nothing at all; the others in this process
# (the same tap, without an interpreter's start per selection)
BY_CLI = (["segment_people"], [])


@pytest.mark.parametrize("selected", SELECTIONS, ids=["+".join(s) or "none" for s in SELECTIONS])
def test_a_selection_writes_only_its_streams_exactly(server: FakeServer, selected) -> None:
    config = config_for(server, page_size=25, resources=DECLARED)
    if selected in BY_CLI:
        out = run_cli(config, catalog=catalog_selecting(config, selected))
        assert out.returncode == 0, out.stderr[-2000:]
    else:
        out = sync(config, selected)
    assert_singer_order(out.messages, selected)
    ids = server.ids()
    for stream in selected:
        assert keys_of(out, stream) == ids[SERVED_AS.get(stream, stream)], stream
    versions = {m["stream"] for m in out.messages if m["type"] == "ACTIVATE_VERSION"}
    full_table = {s for s in selected if s in STREAMS and
                  next(c for c in BUILTIN_STREAMS if c.resource.name == s
                       ).resource.replication_key is None}
    assert full_table <= versions, "a selected full-table stream was not activated"


def test_a_child_alone_keeps_the_parents_bookmark_as_it_was(server: FakeServer) -> None:
    """A state from a run of everything, then the child alone: the parent's entry (and
    every other stream's) goes out as it came in."""
    config = config_for(server, page_size=25)
    first = run_cli(config)
    assert first.returncode == 0, first.stderr[-2000:]
    server.admin("mutate", {"updates": 4, "inserts": 3})
    alone = run_cli(config, catalog=catalog_selecting(config, ["segment_people"]),
                    state=first.last_state)
    assert alone.returncode == 0, alone.stderr[-2000:]
    assert_singer_order(alone.messages, ["segment_people"], first.last_state)
    after = alone.last_state["bookmarks"]
    for stream, mark in first.last_state["bookmarks"].items():
        if stream != "segment_people":
            assert after.get(stream) == mark, stream


def test_declared_parents_and_children_outside_the_shipped_catalog_land(server: FakeServer
                                                                       ) -> None:
    """The shipped catalog lists none of them: each is synced (with a warning), a declared
    parent's records pass its stream maps before any is written."""
    config = config_for(server, page_size=25, resources=DECLARED)
    shipped = json.loads((Path(__file__).resolve().parents[1] / "catalog"
                          / "tap-analytics.json").read_text())
    out = run_cli(config, catalog=shipped)
    assert out.returncode == 0, out.stderr[-2000:]
    ids = server.ids()
    for stream in SERVED_AS:
        assert keys_of(out, stream) == ids[SERVED_AS[stream]], stream
