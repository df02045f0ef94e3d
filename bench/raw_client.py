"""The raw limit: a minimal requests loop over the same pages, one JSON line per record."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import requests
from client_args import client_parser

PATHS = {"conversations": ("/v1/conversations", "data"), "contacts": ("/v1/contacts", "data"),
         "peoples": ("/v1/people/all", "people")}


def offset_listing(session: requests.Session, url: str, key: str, limit: int, out) -> int:
    count, offset = 0, 0
    while True:
        page = session.get(url, params={"limit": limit, "offset": offset}, timeout=60).json()
        rows = page[key]
        for row in rows:
            out.write(json.dumps(row) + "\n")
        count += len(rows)
        offset += limit
        if len(rows) < limit or ("total" in page and offset >= page["total"]):
            return count


def main() -> None:
    parser = client_parser()
    args = parser.parse_args()
    session = requests.Session()
    session.params = {"api_key": args.api_key}
    total = 0
    with open("/dev/null", "w") as out:
        for name in args.streams.split(","):
            if name == "segment_people":
                segments = session.get(f"{args.base_url}/v1/segments", timeout=60).json()
                for segment in segments["segments"]:
                    url = f"{args.base_url}/v1/segments/{segment['id']}/people"
                    total += offset_listing(session, url, "people", args.limit, out)
            else:
                path, key = PATHS[name]
                total += offset_listing(session, args.base_url + path, key, args.limit, out)
    print(json.dumps({"records": total}), file=sys.stderr)


if __name__ == "__main__":
    main()
