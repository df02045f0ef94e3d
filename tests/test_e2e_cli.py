"""The real `tap-analytics` command line against the fake API: every stream, exactly."""

from __future__ import annotations

import contextlib
import datetime
import io
import json

import pytest

from tap_analytics.streams import BUILTIN_STREAMS
from tap_analytics.tap import TapAnalytics
from tests.helpers import (
    FakeServer,
    Output,
    catalog_selecting,
    config_for,
    oauth_config,
    run_cli,
    sync,
)

KEYS = {cls.resource.name: cls.resource.primary_key for cls in BUILTIN_STREAMS}
INCREMENTAL = ["conversations", "contacts", "conversation_parts", "companies", "peoples"]


def assert_exact(out: Output, server: FakeServer, streams=KEYS) -> None:
    """Per stream: the primary keys delivered equal the server's, with no duplicates."""
    assert out.returncode == 0, out.stderr[-2000:]
    expected = server.ids()
    for name in streams:
        got = out.keys(name, KEYS[name])
        assert len(got) == len(set(got)), f"{name}: duplicate records"
        assert set(got) == expected[name], f"{name}: records differ from the server's"


pytestmark = pytest.mark.e2e


def test_about_and_discover(server) -> None:
    about = run_cli(config_for(server), "--about", "--format", "json")
    assert about.returncode == 0
    discover = run_cli(config_for(server), "--discover")
    assert discover.returncode == 0, discover.stderr
    streams = {s["tap_stream_id"]: s for s in discover.messages[0]["streams"]}
    assert set(streams) == set(KEYS)
    assert streams["segment_people"]["key_properties"] == ["segment_id", "id"]
    assert streams["conversations"]["replication_key"] == "updated_at"
    assert streams["accounts"]["schema"]["properties"]["id"]["type"] == "integer"
    # the first page of every listing was sampled: the API's own fields are in the catalog
    conversations = streams["conversations"]["schema"]["properties"]
    assert conversations["priority_score"]["type"] == ["integer", "null"]
    assert conversations["message_count"]["type"] == ["integer", "null"]
    assert conversations["created_at"]["format"] == "date-time"
    assert streams["segment_people"]["schema"]["properties"]["email"]["type"] == [
        "string", "null"]
    sampled = {r["path"] for r in server.requests()}
    assert "/v1/conversations" in sampled and any(p.endswith("/people") for p in sampled)


@pytest.mark.parametrize("config", [{}, {"api_key": ""}, {"auth_type": "oauth2",
                                                          "client_id": "only-the-id"}])
def test_discover_without_credentials_lists_the_declared_catalog(server, config) -> None:
    out = run_cli({"base_url": server.url, **config}, "--discover")
    assert out.returncode == 0, out.stderr
    streams = {s["tap_stream_id"]: s for s in out.messages[0]["streams"]}
    assert set(streams) == set(KEYS)
    assert set(streams["peoples"]["schema"]["properties"]) == {
        "id", "email", "first_name", "last_name", "created_at", "updated_at"}
    assert "did not sample the API" in out.stderr
    assert server.requests() == []
    sync_attempt = run_cli({"base_url": server.url, **config})
    assert sync_attempt.returncode == 2
    assert "Invalid configuration: setting '" in sync_attempt.stderr


@pytest.mark.parametrize("page_size", [1000, 7])
def test_full_sync_is_exact(server, page_size) -> None:
    out = run_cli(config_for(server, page_size=page_size))
    assert_exact(out, server)
    limits = {r["query"].get("limit") for r in server.requests() if "offset" in r["query"]}
    assert limits == {str(page_size)}


def test_full_sync_with_oauth(server) -> None:
    out = run_cli(oauth_config(server))
    assert_exact(out, server)
    log = server.requests()
    assert sum(1 for r in log if r["path"] == "/oauth/v1/token") == 1


def test_oauth_token_expiring_mid_run_is_renewed(server) -> None:
    """The tap renews a token before its `expires_in` runs out, by its own clock: faked
    here, it moves 400 s on at each look, so a 3,600 s token expires every few requests."""
    now = [datetime.datetime.now(datetime.timezone.utc)]

    def clock() -> datetime.datetime:
        now[0] += datetime.timedelta(seconds=400)
        return now[0]

    def fake_clock(tap) -> None:
        tap.authenticator.clock = clock

    out = sync(oauth_config(server, page_size=40, max_concurrency=1), prepare=fake_clock)
    assert_exact(out, server)
    log = server.requests()
    renewals = sum(1 for r in log if r["path"] == "/oauth/v1/token")
    assert renewals >= len(log) // 10, "a token was used past its lifetime"
    assert renewals >= 2


def test_revoked_token_is_renewed_and_run_carries_on(server) -> None:
    # Each 401 triggers one renewal; the fault answers 401 three times on separate requests.
    server.faults({"path": "/v1/conversations", "kind": "401", "times": 1, "after": 1},
                  {"path": "/v1/people/all", "kind": "401", "times": 1})
    out = run_cli(oauth_config(server, page_size=50))
    assert_exact(out, server)
    # a renewal per refusal, unless two streams were refused the same token at once
    assert sum(1 for r in server.requests() if r["path"] == "/oauth/v1/token") in (2, 3)


def test_api_key_in_header(server) -> None:
    out = run_cli(config_for(server, api_key_location="header"))
    assert_exact(out, server)


@pytest.mark.parametrize("kind", ["429", "500", "502", "503", "504", "drop", "timeout"])
def test_transient_faults_leave_data_exact(server, kind) -> None:
    # the first request of each listing fails twice: the next page of a listing may be in
    # flight beside it already, so a later request's faults could fall on two requests
    rules = [{"path": path, "kind": kind, "times": 2, "after": 0, "retry_after": "0",
              "delay": 1.5} for path in ("/v1/conversations", "/v1/segments", "/v1/accounts")]
    server.faults(*rules)
    out = run_cli(config_for(server, page_size=25, request_timeout=1))
    assert_exact(out, server)
    assert "retry 2 of 3" in out.stderr


@pytest.mark.parametrize(("kind", "cause"), [
    ("401", "answered 401 Unauthorized"), ("403", "answered 403 Forbidden"),
    ("404", "answered 404 Not Found"), ("nonjson", "is not valid JSON"),
    ("truncated", "is not valid JSON"), ("wrongshape", "expected a list of records"),
])
def test_fatal_faults_stop_with_one_clear_line(server, kind, cause) -> None:
    server.faults({"path": "/v1/contacts", "kind": kind, "times": -1, "after": 1})
    out = run_cli(config_for(server, page_size=50))
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert "contacts" in last and "/v1/contacts" in last and cause in last, last
    assert "Traceback" not in out.stderr
    # state of work done before the failure was written: every incremental stream that
    # wrote records (streams run side by side: which ones did is timing) is bookmarked
    state = out.last_state["bookmarks"]
    for name in ("conversations", "conversation_parts", "companies", "peoples"):
        if out.keys(name):
            assert state[name]["replication_key_value"], name
    # the first page of contacts was written and bookmarked before the failure
    assert out.keys("contacts") and state["contacts"]["replication_key_value"]


def test_deleted_segment_is_skipped_with_a_warning(server) -> None:
    victim = sorted(server.api.data.members)[2]
    server.admin("delete_segment", {"id": victim})
    out = run_cli(config_for(server))
    assert out.returncode == 0
    assert victim in out.stderr and "skipping" in out.stderr
    got = set(out.keys("segment_people", ("segment_id", "id")))
    assert got == server.ids()["segment_people"]
    assert {sid for sid, _ in got} == set(server.api.data.members)


def test_incremental_run_reads_only_changes(server) -> None:
    first = run_cli(config_for(server, page_size=40))
    assert_exact(first, server)
    bookmarks = first.last_state["bookmarks"]
    changed = server.admin("mutate", {"updates": 4, "inserts": 3})
    server.admin("reset")
    second = run_cli(config_for(server, page_size=40), state=first.last_state)
    assert second.returncode == 0, second.stderr
    for name in INCREMENTAL:
        got = set(second.keys(name))
        want = set(changed[name]["updated"]) | set(changed[name]["inserted"])
        # inclusive updated_since: the records at the old bookmark may come back too
        assert want <= got, name
        at_bookmark = {r["id"] for r in first.records[name]
                       if r["updated_at"] == bookmarks[name]["replication_key_value"]}
        assert got - want <= at_bookmark, name
        new_mark = second.last_state["bookmarks"][name]["replication_key_value"]
        assert new_mark > bookmarks[name]["replication_key_value"]
    sent = {r["path"]: r["query"].get("updated_since") for r in server.requests()}
    assert sent["/v1/conversations"] == bookmarks["conversations"]["replication_key_value"]


def test_start_date_is_sent_on_first_run(server) -> None:
    run_cli(config_for(server, start_date="2026-01-01T01:00:00Z"))
    sent = [r["query"].get("updated_since") for r in server.requests()
            if r["path"] == "/v1/contacts"]
    assert sent and set(sent) == {"2026-01-01T01:00:00Z"}


def test_user_declared_cursor_resource(server) -> None:
    resource = {"name": "resource_name",
                "endpoint": {"path": "/v1/resource", "data_selector": "data",
                             "paginator": {"type": "cursor", "limit": 9,
                                           "cursor_param": "after",
                                           "cursor_path": "paging.next.after"}},
                "primary_key": "id"}
    config = config_for(server, resources=[resource])
    discover = run_cli(config, "--discover")
    entry = next(s for s in discover.messages[0]["streams"]
                 if s["tap_stream_id"] == "resource_name")
    assert entry["schema"]["properties"]["value"]["type"] == ["integer", "null"]
    assert entry["schema"]["properties"]["id"]["type"] == ["string"]
    out = run_cli(config)
    assert out.returncode == 0, out.stderr
    got = out.keys("resource_name")
    assert len(got) == len(set(got)) and set(got) == server.ids()["resource"]


def test_user_declared_child_resource(server) -> None:
    resource = {"name": "segment_members", "primary_key": ["sid", "id"],
                "endpoint": {"path": "/segments/{sid}/people", "data_selector": "people",
                             "paginator": {"type": "offset", "limit": 13},
                             "params": {"sid": {"type": "resolve", "resource": "segments",
                                                "field": "id"}}}}
    out = sync(config_for(server, resources=[resource]), ["segments", "segment_members"])
    got = out.keys("segment_members", ("sid", "id"))
    assert len(got) == len(set(got)) and set(got) == server.ids()["segment_people"]
    schema = next(m for m in out.messages if m["type"] == "SCHEMA"
                  and m["stream"] == "segment_members")
    assert schema["key_properties"] == ["sid", "id"]
    assert "sid" in schema["schema"]["properties"]


def test_stream_maps_and_selection_apply_to_records(server) -> None:
    maps = {"contacts": {"email": "md5(email)"}, "teams": None,
            "companies": {"__alias__": "organisations"}}
    out = sync(config_for(server, stream_maps=maps, flattening_enabled=True,
                          flattening_max_depth=1),
               ["contacts", "teams", "companies", "conversations"])
    records = out.records
    assert "teams" not in records
    assert all(len(r["email"]) == 32 and "@" not in r["email"] for r in records["contacts"])
    # an object whose fields the API decides is kept whole: flattened, that is JSON text
    assert all(json.loads(r["custom_attributes"])["plan"] in ("pro", "free")
               for r in records["contacts"])
    assert len(records["organisations"]) == len(server.ids()["companies"])
    first = next(m for m in out.messages if m["type"] == "RECORD")
    assert set(first) >= {"type", "stream", "record", "time_extracted"}
    # the API sends conversations a field no file of the tap names: it is kept
    assert records["conversations"]
    assert all(isinstance(r["priority_score"], int) for r in records["conversations"])


def test_deselected_properties_are_not_emitted(server) -> None:

    config = config_for(server)
    catalog = catalog_selecting(config, ["conversations"], discovered=True)
    entry = next(s for s in catalog["streams"] if s["tap_stream_id"] == "conversations")
    for item in entry["metadata"]:
        if item["breadcrumb"] in (["properties", "subject"], ["properties", "tags"]):
            item["metadata"]["selected"] = False
    buffer = io.BytesIO()
    wrapper = io.TextIOWrapper(buffer, encoding="utf-8")
    with contextlib.redirect_stdout(wrapper):
        TapAnalytics(config=config, catalog=catalog).sync_all()
        wrapper.flush()
    rows = [json.loads(line)["record"] for line in buffer.getvalue().decode().splitlines()
            if '"type":"RECORD"' in line]
    assert rows and all("subject" not in r and "tags" not in r and "id" in r for r in rows)


def test_the_readme_stream_map_renames_a_version_field(server: FakeServer) -> None:
    """The way out the README gives for target-postgres and a `version` column."""
    for record in server.api.data.tables["schemas"]:
        record["version"] = 3
    server.api.data.generation += 1
    maps = {"schemas": {"schema_version": "version", "version": None}}
    out = sync(config_for(server, stream_maps=maps), ["schemas"])
    schema = next(m["schema"] for m in out.messages if m["type"] == "SCHEMA")
    assert "version" not in schema["properties"] and "schema_version" in schema["properties"]
    assert {r.get("schema_version") for r in out.records["schemas"]} == {3}
    assert not any("version" in r for r in out.records["schemas"])
