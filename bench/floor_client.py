"""The latency floor of a full sync: a client that knows every page in advance (it asks the
fake API's admin endpoint how many records each listing has) and keeps N requests in
flight, counting records and writing nothing. No real client can know this; it is the line
the tap is measured against.

`--sequential`: the other end, a client that knows nothing in advance and reads one page
after another by the contract's stop rules (a listing ends at its `total`, or at a page
shorter than asked), as a plain script against the API would."""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).parent))
from client_args import client_parser

LISTINGS = {  # stream: (path, envelope, paged)
    "account_overview": ("/v1/account_overview", "data", True),
    "agents_overview": ("/v1/agents_overview", "data", True),
    "current_queue_activity": ("/v1/current_queue_activity", "data", True),
    "conversations": ("/v1/conversations", "data", True),
    "contacts": ("/v1/contacts", "data", True),
    "conversation_parts": ("/v1/conversation_parts", "data", True),
    "teams": ("/v1/teams", "data", True),
    "companies": ("/v1/companies", "data", True),
    "schemas": ("/v1/schemas", "objects", False),
    "peoples": ("/v1/people/all", "people", True),
    "accounts": ("/v1/accounts", None, False),
    "account_tags": ("/v1/tags-management", "tags", False),
    "segments": ("/v1/segments", "segments", False),
    "fields": ("/v1/fields", "items", False),
}


def pages(base: str, limit: int) -> list[tuple[str, str | None]]:
    counts = requests.get(f"{base}/_admin/counts", timeout=60).json()
    ids = requests.get(f"{base}/_admin/ids", timeout=60).json()
    urls = []
    for name, (path, envelope, paged) in LISTINGS.items():
        if not paged:
            urls.append((f"{base}{path}", envelope))
            continue
        # every page and no more: it knows where each listing ends
        for offset in range(0, max(counts[name], 1), limit):
            urls.append((f"{base}{path}?limit={limit}&offset={offset}", envelope))
    members: dict[str, int] = {}
    for segment_id, _ in ids["segment_people"]:
        members[segment_id] = members.get(segment_id, 0) + 1
    for segment_id, size in members.items():
        for offset in range(0, size, limit):
            urls.append((f"{base}/v1/segments/{segment_id}/people?limit={limit}"
                         f"&offset={offset}", "people"))
    return urls


def sequential(base: str, api_key: str, limit: int) -> tuple[int, int]:
    """Every listing page by page, one request at a time: (records, requests)."""
    session = requests.Session()
    session.params = {"api_key": api_key}
    listings = [(f"{base}{path}", envelope, paged) for path, envelope, paged in LISTINGS.values()]
    segments = session.get(f"{base}/v1/segments", timeout=60).json()["segments"]
    listings += [(f"{base}/v1/segments/{s['id']}/people", "people", True) for s in segments]
    records, made = len(segments), 1  # the segments listing read above
    for url, envelope, paged in listings:
        offset = 0
        while True:
            body = session.get(url, params={"limit": limit, "offset": offset} if paged else {},
                               timeout=60).json()
            made += 1
            rows = body if envelope is None else body[envelope]
            records += len(rows)
            offset += len(rows)
            total = body.get("total") if isinstance(body, dict) else None
            if not paged or len(rows) < limit or (total is not None and offset >= total):
                break
    return records, made


def main() -> None:
    parser = client_parser()
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--sequential", action="store_true")
    args = parser.parse_args()
    if args.sequential:
        records, made = sequential(args.base_url, args.api_key, args.limit)
        print(json.dumps({"records": records, "requests": made}), file=sys.stderr)
        return
    urls = pages(args.base_url, args.limit)
    local = {}

    def fetch(item: tuple[str, str | None]) -> int:
        import threading

        session = local.setdefault(threading.get_ident(), requests.Session())
        url, envelope = item
        body = session.get(url, params={"api_key": args.api_key}, timeout=60).json()
        return len(body if envelope is None else body[envelope])

    with ThreadPoolExecutor(args.in_flight) as pool:
        total = sum(pool.map(fetch, urls))
    print(json.dumps({"records": total, "requests": len(urls)}), file=sys.stderr)


if __name__ == "__main__":
    main()
