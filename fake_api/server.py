"""The fake Analytics API server: real HTTP on loopback, API.md's contract, injectable faults.

Admin endpoints (no auth) let tests steer it:
  GET  /_admin/ids       primary keys per stream   POST /_admin/faults  {"rules": [...]}
  GET  /_admin/counts    records per stream         GET  /_admin/records  every record served
  GET  /_admin/requests  the request log           POST /_admin/mutate  {"updates", "inserts",
                                                     "streams", "now", "skew", "at"}
  POST /_admin/reset     clear log and faults      POST /_admin/revoke  revoke all tokens
  POST /_admin/delete_segment {"id"}               POST /_admin/config  {"latency_ms", ...}
  POST /_admin/delete  {"stream", "ids"}          POST /_admin/future  {"stream"}
  POST /_admin/change  {"stream", "updates", "deletes", "inserts"}
  config also takes "page_caps" (pages answer at most that many records, the cap changing
  every "cap_every" requests to a path), "total_mode" (mixed, always, never) and
  "total_cap" (a `total` that stops counting: it says at most that many records).
A fault rule: {"path": "/v1/contacts", "kind": "503", "times": 1, "after": 0,
               "retry_after": "0"} ("date:2": an HTTP-date 2 s ahead);
kinds: 429 500 502 503 504 401 403 404 drop timeout nonjson truncated wrongshape empty;
"change" (the listing changes before this answer: "updates", "deletes", "inserts"),
"redirect" (302 to "location" + the same path and query),
"latin1" (the answer in ISO-8859-1, declared), "badutf8" (bytes that are not UTF-8).
"""

from __future__ import annotations

import base64
import bisect
import email.utils
import json
import secrets
import socket
import threading
import time
import typing as t
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from fake_api.data import ENVELOPE, INCREMENTAL, PATHS, UNPAGED, Dataset, instant

BY_PATH = {path: name for name, path in PATHS.items()}
TOTAL_STREAMS = {"conversations", "contacts", "peoples", "segment_people", "teams"}
REASONS = {302: "Found", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


class Gate(t.Protocol):
    """What holds requests: a `threading.Event`, or anything that opens on its own terms."""

    def wait(self, timeout: float | None = None) -> bool: ...


@dataclass
class Rule:
    path: str
    kind: str
    times: int = 1
    after: int = 0
    retry_after: str | None = None
    delay: float = 2.0
    updates: int = 0
    deletes: int = 0
    inserts: int = 0
    location: str = ""
    seen: int = 0
    fired: int = 0

    def matches(self, path: str) -> bool:
        if not (path == self.path or path.startswith(self.path.rstrip("/") + "/")
                or self.path == "*"):
            return False
        self.seen += 1
        if self.seen <= self.after or (self.times >= 0 and self.fired >= self.times):
            return False
        self.fired += 1
        return True


@dataclass
class FakeAPI:
    """State of one fake API: data, credentials, faults and the request log."""

    scale: int = 1000
    segments: int = 10
    segment_size: int | None = None
    big: tuple[str, ...] | None = None
    drift_seed: int | None = None
    mixed_timestamps: bool = False
    api_key: str = "test-key"
    key_name: str = "api_key"
    client_id: str = "test-client"
    client_secret: str = "test-secret"
    token_ttl: int = 3600
    latency_ms: float = 0.0
    total_mode: str = "mixed"  # mixed | always | never
    total_cap: int | None = None  # the `total` stops counting there (it says at most this)
    # a page cap below `limit`, as real APIs keep without saying: the n-th request to a path
    # answers at most page_caps[(n // cap_every) % len(page_caps)] records (empty: no cap)
    page_caps: tuple[int, ...] = ()
    cap_every: int = 3
    missing_cursor_seed: int | None = None  # some records' updated_at null, absent or ""
    forbidden: set[str] = field(default_factory=set)
    gate: Gate | None = None  # when given, every data request waits on it
    rules: list[Rule] = field(default_factory=list)
    log: list[dict] = field(default_factory=list)
    tokens: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.data = Dataset(self.scale, self.segments, self.segment_size, self.big,
                            self.drift_seed, self.mixed_timestamps, self.missing_cursor_seed)
        self.served: dict[str, int] = {}  # paged requests per path, for page caps

    def cap(self, path: str, limit: int) -> int:
        """How many records this page answers: `limit`, or less under a page cap."""
        with self.lock:
            n = self.served.get(path, 0)
            self.served[path] = n + 1
        caps = self.page_caps
        return min(limit, caps[(n // max(1, self.cap_every)) % len(caps)]) if caps else limit

    def fault_for(self, path: str) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.matches(path):
                    return rule
        return None

    def issue_token(self) -> dict:
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = time.monotonic() + self.token_ttl
        return {"access_token": token, "token_type": "bearer", "expires_in": self.token_ttl}

    def authorized(self, headers: t.Mapping[str, str], query: dict[str, list[str]]) -> bool:
        auth = headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            expiry = self.tokens.get(auth[7:])
            return expiry is not None and expiry > time.monotonic()
        given = query.get(self.key_name, [None])[0] or headers.get(self.key_name)
        return given == self.api_key


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    @property
    def api(self) -> FakeAPI:
        return self.server.api  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        # headers and body go out in two writes: without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every response on a kept-alive connection
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: t.Any) -> None:
        pass

    def send_json(self, status: int, body: t.Any, headers: dict | None = None,
                  raw: bytes | None = None,
                  content_type: str = "application/json; charset=utf-8") -> None:
        payload = raw if raw is not None else json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status, REASONS.get(status))
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # --- admin ---------------------------------------------------------------------

    def do_POST(self) -> None:
        url = urlparse(self.path)
        body = self.read_body()
        api = self.api
        if url.path == "/oauth/v1/token":
            return self.token(parse_qs(body.decode()))
        args = json.loads(body or b"{}")
        with api.lock:
            if url.path == "/_admin/faults":
                api.rules = [Rule(**rule) for rule in args.get("rules", [])]
                return self.send_json(200, {"rules": len(api.rules)})
            if url.path == "/_admin/reset":
                api.rules, api.log = [], []
                return self.send_json(200, {"ok": True})
            if url.path == "/_admin/mutate":
                changed = api.data.mutate(args.get("updates", 5), args.get("inserts", 3),
                                          args.get("streams"), args.get("now", False),
                                          args.get("skew", 0.0), args.get("at"))
                return self.send_json(200, changed)
            if url.path == "/_admin/revoke":
                api.tokens.clear()
                return self.send_json(200, {"ok": True})
            if url.path == "/_admin/delete_segment":
                api.data.members.pop(args["id"], None)
                return self.send_json(200, {"ok": True})
            if url.path == "/_admin/delete":
                api.data.delete(args["stream"], args["ids"])
                return self.send_json(200, {"ok": True})
            if url.path == "/_admin/future":
                return self.send_json(200, {"id": api.data.add_future_record(args["stream"])})
            if url.path == "/_admin/change":
                stream = args.pop("stream")
                return self.send_json(200, api.data.change_during_run(stream, **args))
            if url.path == "/_admin/config":
                if "page_caps" in args:
                    api.page_caps = tuple(args["page_caps"])
                for key in ("latency_ms", "token_ttl", "total_mode", "cap_every", "total_cap"):
                    if key in args:
                        setattr(api, key, args[key])
                if "forbidden" in args:
                    api.forbidden = set(args["forbidden"])
                return self.send_json(200, {"ok": True})
        return self.send_json(404, {"error": "not_found", "message": url.path})

    def token(self, form: dict[str, list[str]]) -> None:
        api = self.api
        self.record("POST", "/oauth/v1/token", {})
        grant = form.get("grant_type", [""])[0]
        if grant != "client_credentials":
            return self.send_json(400, {"error": "unsupported_grant_type"})
        if (form.get("client_id", [""])[0] != api.client_id
                or form.get("client_secret", [""])[0] != api.client_secret):
            return self.send_json(401, {"error": "invalid_client"})
        return self.send_json(200, api.issue_token())

    def record(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        self.entry = {"method": method, "path": path, "t": time.time(), "served": 0,
                      "query": {k: v[0] for k, v in query.items() if k != self.api.key_name}}
        with self.api.lock:
            self.api.log.append(self.entry)

    # --- the API -------------------------------------------------------------------

    def do_GET(self) -> None:
        url = urlparse(self.path)
        api = self.api
        query = parse_qs(url.query)
        if url.path == "/_admin/requests":
            with api.lock:
                return self.send_json(200, list(api.log))
        if url.path == "/_admin/ids":
            with api.lock:
                return self.send_json(200, api.data.all_ids())
        if url.path == "/_admin/records":
            with api.lock:
                return self.send_json(200, api.data.all_records())
        if url.path == "/_admin/counts":
            with api.lock:
                return self.send_json(200, {k: len(v) for k, v in api.data.all_ids().items()})
        self.record("GET", url.path, query)
        if api.gate is not None:
            api.gate.wait(timeout=600)
        if api.latency_ms:
            time.sleep(api.latency_ms / 1000)
        rule = api.fault_for(url.path)
        if rule is not None and self.inject(rule):
            return None
        if not api.authorized(self.headers, query):
            return self.send_json(401, {"error": "unauthorized", "message": "missing or bad key"})
        if url.path in api.forbidden:
            return self.send_json(403, {"error": "forbidden", "message": "no access"})
        charset = rule.kind if rule is not None and rule.kind in ("latin1", "badutf8") else None
        return self.listing(url.path, query, charset)

    def inject(self, rule: Rule) -> bool:
        """Answer with the fault; False where the fault only delays the real answer."""
        kind = rule.kind
        if kind.isdigit():
            status = int(kind)
            headers = {"Retry-After": retry_after(rule.retry_after)} if rule.retry_after else {}
            self.send_json(status, {"error": REASONS.get(status, "error").lower(),
                                    "message": "injected fault"}, headers)
            return True
        if kind == "drop":
            self.close_connection = True
            self.connection.close()
            return True
        if kind == "timeout":
            time.sleep(rule.delay)
            return False
        if kind == "change":
            name = BY_PATH[path_of(self.path)]
            with self.api.lock:
                self.api.data.change_during_run(name, rule.updates, rule.deletes, rule.inserts)
            return False
        if kind in ("latin1", "badutf8"):
            return False
        if kind == "redirect":
            self.send_json(302, {"moved": True}, {"Location": rule.location + self.path})
            return True
        raw = {"nonjson": b"<html><body>Bad gateway</body></html>",
               "truncated": b'{"data": [{"id": "x", "updated_at": "2026-01-0',
               "wrongshape": b'{"data": {"id": "not-a-list"}, "people": 7, "tags": "x", '
                             b'"segments": null, "objects": 1, "items": {}}',
               "empty": b""}[kind]
        self.send_json(200, None, raw=raw)
        return True

    def listing(self, path: str, query: dict[str, list[str]], charset: str | None = None
                ) -> None:
        api = self.api
        name = BY_PATH.get(path)
        segment = None
        if name is None and path.startswith("/v1/segments/") and path.endswith("/people"):
            segment = path[len("/v1/segments/"):-len("/people")]
            name = "segment_people"
        if name is None:
            return self.send_json(404, {"error": "not_found", "message": f"no route {path}"})
        since = query.get("updated_since", [None])[0]
        first = 0  # where the listing starts (after updated_since): never copied, only sliced
        with api.lock:
            rows = (api.data.segment_people(segment) if segment is not None
                    else api.data.listing(name))
            if rows is None:
                return self.send_json(404, {"error": "not_found", "message": "no such segment"})
            encoded = api.data.encoded(name if segment is None else f"segment:{segment}", rows)
            if since and rows and name in INCREMENTAL and segment is None:
                try:
                    moment = instant(since)
                except ValueError:
                    return self.send_json(400, {"error": "bad_request",
                                                "message": "updated_since is not a timestamp"})
                if moment.tzinfo is None:
                    return self.send_json(400, {"error": "bad_request",
                                                "message": "updated_since needs a zone"})
                first = bisect.bisect_left(api.data.instants(name), moment)
        envelope = ENVELOPE.get(name, "people" if segment is not None else "data")
        if name in UNPAGED:
            page, extra = encoded[first:], {}
        else:
            try:
                limit = int(query.get("limit", ["100"])[0])
                if name == "resource" and "offset" not in query:  # cursor, unless asked
                    after = query.get("after", [None])[0]
                    offset = int(base64.urlsafe_b64decode(after).decode()[2:]) if after else 0
                else:
                    offset = int(query.get("offset", ["0"])[0])
            except ValueError:
                return self.send_json(400, {"error": "bad_request", "message": "bad paging"})
            if not 1 <= limit <= 1000 or offset < 0:
                return self.send_json(400, {"error": "bad_request", "message": "limit 1..1000"})
            page = encoded[first + offset:first + offset + api.cap(path, limit)]
            extra = self.paging(name, offset, len(page), len(rows) - first)
        self.entry["served"] = len(page)
        items = b"[" + b",".join(page) + b"]"
        if envelope is None:
            body = items
        else:
            tail = json.dumps(extra, separators=(",", ":")).encode()[1:-1]
            body = (b'{"' + envelope.encode() + b'":' + items + (b"," + tail if tail else b"")
                    + b"}")
        if charset == "latin1":  # the same JSON, in another declared charset
            return self.send_json(200, None, raw=body.decode().encode("latin-1", "replace"),
                                  content_type="application/json; charset=iso-8859-1")
        if charset == "badutf8":
            return self.send_json(200, None, raw=body[:-1] + b"\xff\xfe}")
        return self.send_json(200, None, raw=body)

    def paging(self, name: str, offset: int, served: int, total: int) -> dict:
        if name == "resource":  # the next cursor points past what this page served
            end = offset + served
            if end >= total:
                return {"paging": {"next": None}} if offset % 2 else {}
            cursor = base64.urlsafe_b64encode(f"c:{end}".encode()).decode()
            return {"paging": {"next": {"after": cursor}}}
        mode = self.api.total_mode
        if mode == "always" or (mode == "mixed" and name in TOTAL_STREAMS):
            cap = self.api.total_cap
            return {"total": total if cap is None else min(total, cap)}
        return {}


def retry_after(value: str) -> str:
    """The header as given, or `date:S` as an HTTP-date S seconds from now (RFC 9110)."""
    if value.startswith("date:"):
        return email.utils.formatdate(time.time() + float(value[5:]), usegmt=True)
    return value


def path_of(target: str) -> str:
    return urlparse(target).path


class Recorder(BaseHTTPRequestHandler):
    """A second host: answers 404 to everything and remembers what it was sent."""

    def do_GET(self) -> None:
        self.server.received.append(  # type: ignore[attr-defined]
            {"path": self.path, "headers": dict(self.headers)})
        body = b'{"error": "not_found"}'
        self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: t.Any) -> None:
        pass


def serve_recorder() -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.received = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    return server


def serve(api: FakeAPI, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Start serving on a background thread; the server's port is `server.server_port`."""
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.api = api  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     name="fake-api", daemon=True).start()
    return server
