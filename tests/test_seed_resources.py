"""The seed documents' `resources` lists, with their `resource_defaults`, work as the
`resources` and `resource_defaults` settings as written: each is read out of the seed's
own text, and every stream it declares syncs every record of the fake API."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tap_analytics.resources import ResourceError, parse_resources
from tap_analytics.streams import BUILTIN_STREAMS
from tests.helpers import FakeServer, config_for, oauth_config, sync

SEEDS = sorted((Path(__file__).resolve().parents[2] / "shared" / "seeds").glob("*.txt"))
BUILTIN = [cls.resource for cls in BUILTIN_STREAMS]


def seed_config(path: Path) -> dict:
    """The dict handed to `rest_api_source` in the seed, secrets replaced by None."""
    text = path.read_text()
    code = text.split("rest_api_source(", 1)[1]
    code = re.sub(r"dlt\.secrets\[[^\]]*\]", "None", code)
    depth = 0
    for end, char in enumerate(code):  # the dict literal: up to its matching brace
        depth += {"{": 1, "}": -1}.get(char, 0)
        if char == "}" and depth == 0:
            return ast.literal_eval(code[:end + 1])
    raise AssertionError(f"{path.name}: no configuration found")


def test_every_seed_is_found() -> None:
    assert len(SEEDS) == 5, "the seed documents sit in ../shared/seeds"


@pytest.mark.parametrize("path", SEEDS, ids=[p.name[:3] for p in SEEDS])
def test_a_seed_resources_list_syncs_as_written(path: Path, server: FakeServer) -> None:
    seed = seed_config(path)
    settings = {"resources": seed["resources"],
                "resource_defaults": seed.get("resource_defaults")}
    oauth = seed["client"]["auth"]["type"] == "oauth2"
    config = (oauth_config if oauth else config_for)(server, page_size=40, **settings)
    names = [entry["name"] for entry in seed["resources"]]
    out = sync(config, names)
    truth = server.ids()
    truth["resource_name"] = truth["resource"]
    for name in names:
        key = ("segment_id", "id") if name == "segment_people" else ("id",)
        got = out.keys(name, key)
        assert set(got) == truth[name], f"{path.name}: {name}"
        assert len(got) == len(set(got)), f"{path.name}: {name} has duplicates"


@pytest.mark.parametrize(("entry", "fragment"), [
    ({"write_disposition": "append"}, "'write_disposition' is not supported (Singer targets"),
    ({"table_name": "t"}, "'table_name' is not supported"),
    ({"processing_steps": [{"filter": "x"}]}, "'processing_steps' is not supported"),
    ({"endpoint": {"path": "/v1/r", "method": "POST"}}, "'endpoint.method' is not supported"),
    ({"endpoint": {"path": "/v1/things/{{stream_slice.thing_id}}/x"}},
     "path placeholder {thing_id} names no parent"),
])
def test_what_a_seed_shape_may_hold_but_the_tap_cannot_do_is_named(entry: dict, fragment: str
                                                                   ) -> None:
    base = {"name": "r", "endpoint": {"path": "/v1/r"}}
    with pytest.raises(ResourceError) as info:
        parse_resources([{**base, **entry}], BUILTIN)
    assert str(info.value).startswith("setting 'resources'[0]: ")
    assert fragment in str(info.value)


def test_a_placeholder_without_resolve_reads_its_parent_by_name() -> None:
    entries = [{"name": "teams_people", "endpoint": {
        "path": "/teams/{{stream_slice.team_id}}/people", "data_selector": "people"}}]
    (resource,) = parse_resources(entries, BUILTIN)
    assert (resource.parent.resource, resource.parent.field) == ("teams", "id")
    assert resource.path == "/v1/teams/{team_id}/people"


def test_a_built_in_name_for_another_endpoint_is_refused() -> None:
    with pytest.raises(ResourceError, match=r"'contacts' is already used by a built-in stream "
                                            r"\(/v1/contacts\)"):
        parse_resources([{"name": "contacts", "endpoint": {"path": "/v1/people"}}], BUILTIN)
