"""Declarative resources (dlt shape) and settings: good input parses, bad input names itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tap_analytics.resources import Resource, ResourceError, normalize_path, parse_resources
from tap_analytics.settings import ConfigError, parse_settings
from tap_analytics.streams import BUILTIN_STREAMS
from tests.helpers import catalog_selecting, config_for, run_cli

BUILTIN = [cls.resource.name for cls in BUILTIN_STREAMS]
SEED_003 = {"name": "resource_name",
            "endpoint": {"path": "/v1/resource", "data_selector": "data",
                         "paginator": {"type": "cursor", "limit": 100, "cursor_param": "after",
                                       "cursor_path": "paging.next.after"}},
            "primary_key": "id"}


def test_seed_shape_parses() -> None:
    resource = Resource.from_dlt(SEED_003)
    assert resource.path == "/v1/resource"
    assert resource.data_selector == ("data",)
    assert resource.paginator.type == "cursor" and resource.paginator.limit == 100
    assert resource.primary_key == ("id",)
    assert resource.replication_key is None


def test_seed_004_paths_and_selectors() -> None:
    assert normalize_path("/people/all") == "/v1/people/all"
    assert normalize_path("segments/{{stream_slice.segment_id}}/people") == \
        "/v1/segments/{segment_id}/people"
    accounts = Resource.from_dlt({"name": "a", "endpoint": {"path": "/accounts",
                                                             "data_selector": []}})
    assert accounts.data_selector is None and accounts.paginator.type == "single_page"


def test_builtin_table_matches_api_md() -> None:
    table = {cls.resource.name: cls.resource for cls in BUILTIN_STREAMS}
    assert len(table) == 15
    assert table["peoples"].path == "/v1/people/all"
    assert table["peoples"].data_selector == ("people",)
    assert table["account_tags"].path == "/v1/tags-management"
    assert table["accounts"].data_selector is None
    assert table["segment_people"].primary_key == ("segment_id", "id")
    assert table["segment_people"].parent.resource == "segments"
    incremental = {n for n, r in table.items() if r.replication_key == "updated_at"}
    assert incremental == {"conversations", "contacts", "conversation_parts", "companies",
                           "peoples"}
    unpaged = {n for n, r in table.items() if r.paginator.type == "single_page"}
    assert unpaged == {"schemas", "accounts", "account_tags", "segments", "fields"}


@pytest.mark.parametrize(("entry", "fragment"), [
    ({"name": "x", "endpoint": {}}, "'endpoint.path' is missing"),
    ({"name": "x", "endpoint": {"path": "/x", "paginator": {"type": "page_number"}}},
     "paginator type 'page_number'"),
    ({"name": "x", "endpoint": {"path": "/x", "paginator": {"type": "offset", "limit": 0}}},
     "'limit' must be an integer from 1 to 1000"),
    ({"name": "", "endpoint": {"path": "/x"}}, "'name' must be a non-empty string"),
    ({"name": "x", "endpoint": {"path": "/x"}, "primary_key": []}, "'primary_key'"),
    ({"name": "x", "endpoint": {"path": "/x", "params": {"p": [1]}}}, "unsupported value"),
    ("just-a-string", "must be an object"),
])
def test_bad_resource_entries_name_the_entry(entry: object, fragment: str) -> None:
    with pytest.raises(ResourceError) as info:
        parse_resources([SEED_003, entry], BUILTIN)
    assert "setting 'resources'[1]" in str(info.value)
    assert fragment in str(info.value)


def test_duplicate_and_shadowing_names_are_refused() -> None:
    with pytest.raises(ResourceError, match=r"\[1\]: name 'resource_name' is already used"):
        parse_resources([SEED_003, SEED_003], BUILTIN)
    with pytest.raises(ResourceError, match="name 'contacts' is already used"):
        parse_resources([{**SEED_003, "name": "contacts"}], BUILTIN)


GOOD = {"api_key": "k-123456"}


@pytest.mark.parametrize(("overrides", "setting"), [
    ({"page_size": 0}, "page_size"), ({"page_size": 1001}, "page_size"),
    ({"page_size": "many"}, "page_size"), ({"auth_type": "basic"}, "auth_type"),
    ({"api_key": None}, "api_key"), ({"auth_type": "oauth2"}, "client_id"),
    ({"auth_type": "oauth2", "client_id": "c"}, "client_secret"),
    ({"max_retries": -1}, "max_retries"), ({"backoff_factor": -0.5}, "backoff_factor"),
    ({"request_timeout": 0}, "request_timeout"), ({"api_key_location": "body"},
                                                  "api_key_location"),
    ({"start_date": "yesterday"}, "start_date"), ({"base_url": "ftp://x"}, "base_url"),
    ({"max_concurrency": 0}, "max_concurrency"), ({"max_requests_per_second": 0},
                                                  "max_requests_per_second"),
    ({"resources": {"name": "x"}}, "resources"), ({"api_key": 12345}, "api_key"),
])
def test_bad_settings_name_the_setting(overrides: dict, setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({**GOOD, **overrides}, BUILTIN)
    assert f"setting '{setting}'" in str(info.value)


def test_defaults_and_base_url_with_v1() -> None:
    settings = parse_settings({**GOOD, "base_url": "https://api.example.com/v1/"}, BUILTIN)
    assert settings.url_base == "https://api.example.com"
    assert settings.token_url == "https://api.example.com/oauth/v1/token"
    assert (settings.page_size, settings.max_retries, settings.backoff_factor) == (100, 3, 2.0)
    assert settings.api_key_location == "query" and settings.api_key_name == "api_key"
    assert parse_settings({**GOOD, "backoff_factor": 0.25}, BUILTIN).backoff_factor == 0.25


def test_cli_rejects_bad_config_with_one_line_and_no_request(server) -> None:
    config = {"base_url": server.url, "api_key": "secret-key-xyz", "page_size": 0}
    out = run_cli(config)
    assert out.returncode != 0
    errors = [line for line in out.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "setting 'page_size' must be from 1 to 1000" in errors[0]
    assert "Traceback" not in out.stderr
    assert server.requests() == []


def test_cli_bad_resource_entry(server) -> None:
    config = {"base_url": server.url, "api_key": server.api.api_key,
              "resources": [{"name": "r", "endpoint": {"path": "/v1/r",
                                                       "paginator": {"type": "pages"}}}]}
    out = run_cli(config, "--discover")
    assert out.returncode != 0
    assert "setting 'resources'[0]: paginator type 'pages'" in out.stderr
    assert server.requests() == []


def test_a_declared_resource_the_catalog_does_not_list_is_synced_with_a_warning(
        server) -> None:
    """Meltano's `catalog:` extra hands the tap the shipped catalog, made before any resource
    was declared: the SDK would leave the resource unselected and drop every record of it
    without a word. Listed in the catalog, it is the catalog's to select again."""
    shipped = json.loads((Path(__file__).resolve().parents[1] / "catalog"
                          / "tap-analytics.json").read_text())
    config = config_for(server, resources=[SEED_003])
    out = run_cli(config, catalog=shipped)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(out.keys("resource_name", ("id",))) == len(server.ids()["resource"])
    assert set(out.keys("resource_name", ("id",))) == server.ids()["resource"]
    assert set(BUILTIN) <= set(out.records)
    assert "resource 'resource_name' is declared but not in the catalog" in out.stderr

    listed = run_cli(config, catalog=catalog_selecting(config, BUILTIN))
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "resource_name" not in listed.records
    assert "declared but not in the catalog" not in listed.stderr
