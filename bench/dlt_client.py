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


def main() -> None:
    parser = client_parser()
    parser.add_argument("--parallelized", action="store_true")
    args = parser.parse_args()
    source = build(args.base_url, args.api_key, args.limit, args.parallelized)
    count = 0
    with open("/dev/null", "w") as out:
        for item in source.with_resources(*args.streams.split(",")):
            out.write(json.dumps(item, default=str) + "\n")
            count += 1
    print(json.dumps({"records": count}), file=sys.stderr)


if __name__ == "__main__":
    main()
