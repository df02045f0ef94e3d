"""dlt's rest_api_source with the seeds' configuration, iterated to JSON lines on /dev/null."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from client_args import client_parser
from dlt.sources.rest_api import rest_api_source


def build(base_url: str, api_key: str, limit: int, parallel: bool) -> object:
    offset = {"type": "offset", "limit": limit, "offset_param": "offset", "total_path": "total"}
    return rest_api_source({
        "client": {"base_url": base_url,
                   "auth": {"type": "api_key", "name": "api_key", "api_key": api_key,
                            "location": "query"}},
        "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
        "resources": [
            {"name": "conversations",
             "endpoint": {"path": "/v1/conversations", "data_selector": "data",
                          "paginator": offset}},
            {"name": "contacts",
             "endpoint": {"path": "/v1/contacts", "data_selector": "data", "paginator": offset}},
            {"name": "peoples",
             "endpoint": {"path": "/v1/people/all", "data_selector": "people",
                          "paginator": offset}},
            {"name": "segments",
             "endpoint": {"path": "/v1/segments", "data_selector": "segments",
                          "paginator": "single_page"}},
            {"name": "segment_people", "parallelized": parallel,
             "primary_key": ["segment_id", "id"],
             "endpoint": {"path": "/v1/segments/{segment_id}/people", "data_selector": "people",
                          "paginator": offset,
                          "params": {"segment_id": {"type": "resolve", "resource": "segments",
                                                    "field": "id"}}}},
        ],
    })


# every listing of API.md, as the seeds declare them: (name, path, data_selector, paging)
ALL = [("account_overview", "/v1/account_overview", "data", "offset"),
       ("agents_overview", "/v1/agents_overview", "data", "offset"),
       ("current_queue_activity", "/v1/current_queue_activity", "data", "offset"),
       ("conversations", "/v1/conversations", "data", "offset"),
       ("contacts", "/v1/contacts", "data", "offset"),
       ("conversation_parts", "/v1/conversation_parts", "data", "offset"),
       ("teams", "/v1/teams", "data", "offset"), ("companies", "/v1/companies", "data", "offset"),
       ("schemas", "/v1/schemas", "objects", "single_page"),
       ("peoples", "/v1/people/all", "people", "offset"),
       ("accounts", "/v1/accounts", "$", "single_page"),
       ("account_tags", "/v1/tags-management", "tags", "single_page"),
       ("segments", "/v1/segments", "segments", "single_page"),
       ("fields", "/v1/fields", "items", "single_page")]


def build_all(base_url: str, api_key: str, limit: int, parallel: bool) -> object:
    """All 15 resources, each `parallelized` when asked (dlt then reads them side by side)."""
    offset = {"type": "offset", "limit": limit, "offset_param": "offset", "total_path": None,
              "stop_after_empty_page": True}
    resources = [{"name": name, "parallelized": parallel,
                  "endpoint": {"path": path, "data_selector": selector,
                               "paginator": offset if paging == "offset" else "single_page"}}
                 for name, path, selector, paging in ALL]
    # dlt names the parent's field `_segments_id` in the child's rows
    resources.append({"name": "segment_people", "parallelized": parallel,
                      "primary_key": ["_segments_id", "id"], "include_from_parent": ["id"],
                      "endpoint": {"path": "/v1/segments/{segment_id}/people",
                                   "data_selector": "people", "paginator": offset,
                                   "params": {"segment_id": {"type": "resolve",
                                                             "resource": "segments",
                                                             "field": "id"}}}})
    return rest_api_source({
        "client": {"base_url": base_url,
                   "auth": {"type": "api_key", "name": "api_key", "api_key": api_key,
                            "location": "query"}},
        "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
        "resources": resources,
    })


def main() -> None:
    parser = client_parser()
    parser.add_argument("--parallelized", action="store_true")
    parser.add_argument("--all-streams", action="store_true", help="the 15 listings of API.md")
    args = parser.parse_args()
    make = build_all if args.all_streams else build
    source = make(args.base_url, args.api_key, args.limit, args.parallelized)
    if args.all_streams:
        args.streams = ",".join([name for name, *_ in ALL] + ["segment_people"])
    count = 0
    with open("/dev/null", "w") as out:
        for item in source.with_resources(*args.streams.split(",")):
            out.write(json.dumps(item, default=str) + "\n")
            count += 1
    print(json.dumps({"records": count}), file=sys.stderr)


if __name__ == "__main__":
    main()
