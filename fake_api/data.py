"""Deterministic generated data for every endpoint of API.md, at a chosen scale."""

from __future__ import annotations

import datetime
import json
import random
import typing as t
import zlib
from dataclasses import dataclass, field

from fake_api.drift import Drift

EPOCH = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
TIES = 3  # records share updated_at in groups of this size, to exercise tie order


def ts(seconds: float) -> str:
    return (EPOCH + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp(seconds: float, ident: str, mixed: bool) -> str:
    """An updated_at; with `mixed`, every valid RFC 3339 form, some with a fraction."""
    if not mixed:
        return ts(seconds)
    form = zlib.crc32(ident.encode()) % 5
    moment = EPOCH + datetime.timedelta(seconds=seconds + (0.5 if form == 1 else 0))
    if form == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if form == 1:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if form == 2:
        return moment.isoformat()
    offset = datetime.timedelta(hours=5, minutes=30) if form == 3 else datetime.timedelta(hours=-7)
    return moment.astimezone(datetime.timezone(offset)).isoformat()


NEVER = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)


def instant(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def when(record: dict) -> datetime.datetime:
    """Where a record sorts in an incremental listing: one without an updated_at (null,
    missing or empty) first, as a database orders NULLs first; `updated_since` leaves it out."""
    value = record.get("updated_at")
    return instant(value) if value else NEVER


FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", None]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Gödel"]
STATES = ["open", "closed", "snoozed"]


def _overview(kind: str) -> t.Callable[[int], dict]:
    def make(i: int) -> dict:
        record = {"id": f"{kind}_{i:05d}", "name": f"{kind.title()} {i}",
                  "current_timestamp": ts(86400 * 30 + i)}
        if kind == "account":
            record |= {"open_conversations": i * 3 % 17, "closed_conversations": i * 7 % 23,
                       "median_first_response_seconds": None if i % 4 == 0 else 12.5 + i,
                       "customer_satisfaction_score": round(3.5 + (i % 3) * 0.5, 1)}
        elif kind == "agents":
            record |= {"agents_online": i % 9, "agents_away": i % 4, "agents_total": 12,
                       "team_id": f"team_{i % 12:05d}"}
        else:
            record |= {"queue_size": i % 11, "longest_wait_seconds": float(i % 300),
                       "agents_available": i % 5}
        return record
    return make


def _conversation(i: int) -> dict:
    return {"id": f"conv_{i:07d}", "created_at": ts(i * 50), "state": STATES[i % 3],
            "customer_id": f"cust_{i % 997:05d}", "assignee_id": None if i % 5 == 0 else
            f"agent_{i % 40:03d}", "team_id": f"team_{i % 12:05d}", "subject": f"Question {i}",
            "message_count": 1 + i % 9, "is_read": i % 2 == 0, "tags": ["vip"] if i % 7 == 0
            else [], "priority_score": i % 5}  # priority_score: a field no schema lists


def _contact(i: int) -> dict:
    record = {"id": f"contact_{i:07d}", "created_at": ts(i * 40),
              "email": f"contact{i}@example.org", "name": f"Contact {i}",
              "customer_id": f"cust_{i % 997:05d}", "company_id": f"company_{i % 50:05d}",
              "role": "lead" if i % 3 else "user", "last_seen_at": None if i % 6 == 0 else
              ts(i * 40 + 3600), "custom_attributes": {"plan": "pro" if i % 2 else "free"}}
    if i % 4:
        record["phone"] = f"+1555{i:07d}"  # nullable fields may be omitted
    return record


def _part(i: int) -> dict:
    return {"id": f"part_{i:07d}", "conversation_id": f"conv_{i // 3:07d}",
            "created_at": ts(i * 20), "part_type": "comment" if i % 4 else "note",
            "author_id": f"agent_{i % 40:03d}", "author_type": "admin" if i % 2 else "user",
            "body": None if i % 10 == 0 else f"Reply number {i}"}


def _company(i: int) -> dict:
    return {"id": f"company_{i:05d}", "name": f"Company {i}", "created_at": ts(i * 3600),
            "industry": None if i % 5 == 0 else ["retail", "saas", "health"][i % 3],
            "employee_count": 10 + i * 3, "monthly_spend": None if i % 6 == 0 else
            100 + i * 1.25, "website": f"https://company{i}.example.org",
            "plan": "enterprise" if i % 4 == 0 else "growth"}


def _person(i: int) -> dict:
    return {"id": f"person_{i:07d}", "email": f"person{i}@example.org",
            "first_name": FIRST[i % len(FIRST)], "last_name": LAST[i % len(LAST)],
            "created_at": ts(i * 30), "account_id": None if i % 8 == 0 else 1 + i % 25,
            "title": None if i % 3 == 0 else "Engineer"}


def _generic(prefix: str, extra: t.Callable[[int], dict]) -> t.Callable[[int], dict]:
    return lambda i: {"id": f"{prefix}_{i:05d}", **extra(i)}


def _schema_record(i: int) -> dict:
    return {"id": f"schema_{i:05d}", "name": ["person", "account", "deal", "event"][i % 4],
            "object_type": "standard" if i < 2 else "custom", "field_count": 5 + i,
            "created_at": ts(i)}


SMALL = {
    "teams": _generic("team", lambda i: {"name": f"Team {i}", "member_count": 3 + i % 6,
                                          "created_at": ts(i * 999)}),
    "schemas": _schema_record,
    "account_tags": _generic("tag", lambda i: {"name": f"tag-{i}", "color": None if i % 4 == 0
                                                else "#33aa55", "created_at": ts(i * 77)}),
    "fields": _generic("field", lambda i: {"name": f"field_{i}", "label": f"Field {i}",
                                            "data_type": ["string", "number", "date"][i % 3],
                                            "is_custom": i % 2 == 1}),
    "segments": _generic("segment", lambda i: {"name": f"Segment {i}", "description": None
                                                if i % 3 == 0 else f"People group {i}",
                                                "created_at": ts(i * 500)}),
}


def _account(i: int) -> dict:
    return {"id": 1 + i, "name": f"Account {1 + i}", "created_at": ts(i * 7200),
            "domain": f"account{1 + i}.example.org", "owner_email": None if i % 5 == 0 else
            f"owner{i}@example.org"}


def _resource(i: int) -> dict:
    return {"id": f"res_{i:06d}", "customer_id": f"cust_{i % 997:05d}", "user_key": f"uk{i}",
            "value": i * 2, "created_at": ts(i * 10)}


INCREMENTAL = {"conversations": _conversation, "contacts": _contact,
               "conversation_parts": _part, "companies": _company, "peoples": _person}
MAKERS = {**INCREMENTAL, **SMALL, "accounts": _account, "resource": _resource,
          "account_overview": _overview("account"), "agents_overview": _overview("agents"),
          "current_queue_activity": _overview("queue")}
PATHS = {
    "account_overview": "/v1/account_overview", "agents_overview": "/v1/agents_overview",
    "current_queue_activity": "/v1/current_queue_activity", "conversations": "/v1/conversations",
    "contacts": "/v1/contacts", "conversation_parts": "/v1/conversation_parts",
    "teams": "/v1/teams", "companies": "/v1/companies", "schemas": "/v1/schemas",
    "peoples": "/v1/people/all", "accounts": "/v1/accounts", "account_tags": "/v1/tags-management",
    "segments": "/v1/segments", "fields": "/v1/fields", "resource": "/v1/resource",
}
ENVELOPE = {"schemas": "objects", "peoples": "people", "accounts": None, "account_tags": "tags",
            "segments": "segments", "fields": "items", "resource": "data"}
UNPAGED = {"schemas", "accounts", "account_tags", "segments", "fields"}


@dataclass
class Dataset:
    """All records of the fake API; incremental listings kept ordered by (updated_at, id)."""

    scale: int = 1000
    segments: int = 10
    segment_size: int | None = None
    big: tuple[str, ...] | None = None  # incremental streams sized `scale`; None: all
    drift_seed: int | None = None  # drift mode: undocumented fields and types from this seed
    mixed_timestamps: bool = False  # updated_at in every RFC 3339 form, some offsets
    missing_cursor_seed: int | None = None  # some records' updated_at null, absent or ""
    tables: dict[str, list[dict]] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)
    clock: float = 0.0
    generation: int = 0

    def __post_init__(self) -> None:
        self._encoded: dict[str, tuple[int, list[bytes]]] = {}
        self._instants: dict[str, tuple[int, list[datetime.datetime]]] = {}
        self._segments: dict[str, tuple[int, list[dict]]] = {}
        n = self.scale
        sizes = {"conversations": n, "contacts": n, "conversation_parts": n,
                 "companies": max(5, n // 10), "peoples": n}
        if self.big is not None:
            sizes = {k: v if k in self.big else min(v, 100) for k, v in sizes.items()}
        for name, make in INCREMENTAL.items():
            rows = []
            for i in range(sizes[name]):
                record = make(i)
                record["updated_at"] = stamp(i // TIES * 60, record["id"], self.mixed_timestamps)
                rows.append(record)
            self.tables[name] = rows
            if self.missing_cursor_seed is not None:
                _drop_cursors(rows, random.Random(f"{self.missing_cursor_seed}:{name}"))
            self._order(name)
        self.clock = (max(sizes.values()) // TIES + 1) * 60
        small = max(3, n // 100)
        for kind, name in (("account", "account_overview"), ("agents", "agents_overview"),
                           ("queue", "current_queue_activity")):
            self.tables[name] = [_overview(kind)(i) for i in range(small)]
        counts = {"teams": 12, "schemas": 4, "account_tags": 15, "fields": 30,
                  "segments": self.segments}
        for name, make in SMALL.items():
            self.tables[name] = [make(i) for i in range(counts[name])]
        self.tables["accounts"] = [_account(i) for i in range(25)]
        self.tables["resource"] = [_resource(i) for i in range(max(10, n // 4))]
        self.drift = Drift(self.drift_seed) if self.drift_seed is not None else None
        if self.drift is not None:
            for name, rows in self.tables.items():
                for i, record in enumerate(rows):
                    self.drift.decorate(name, record, i / len(rows))
        people = self.tables["peoples"]
        self.people_by_id = {p["id"]: p for p in people}
        size = self.segment_size or max(1, min(len(people), 2 * n // max(1, self.segments)))
        for s, segment in enumerate(self.tables["segments"]):
            start = (s * 37) % len(people)
            self.members[segment["id"]] = [people[(start + k) % len(people)]["id"]
                                           for k in range(size)]
            segment["person_count"] = size

    def segment_people(self, segment_id: str) -> list[dict] | None:
        """One segment's people, built once per generation of the data (a page of a large
        segment would otherwise rebuild the whole listing: quadratic in its size)."""
        if segment_id not in self.members:
            return None
        cached = self._segments.get(segment_id)
        if cached is not None and cached[0] == self.generation:
            return cached[1]
        rows = self._segment_rows(segment_id)
        self._segments[segment_id] = (self.generation, rows)
        return rows

    def _segment_rows(self, segment_id: str) -> list[dict]:
        people = self.people_by_id
        keep = ("id", "email", "first_name", "last_name", "created_at", "updated_at")
        members = self.members[segment_id]
        rows = [{k: people[i][k] for k in keep if k in people[i]} for i in members]
        if self.drift is not None:
            for position, row in enumerate(rows):
                self.drift.decorate("segment_people", row, position / len(rows))
        return rows

    def listing(self, name: str) -> list[dict]:
        return self.tables[name]

    def instants(self, name: str) -> list[datetime.datetime]:
        """The updated_at instants of an incremental listing, in its order (cached)."""
        cached = self._instants.get(name)
        if cached is None or cached[0] != self.generation:
            cached = (self.generation, [when(r) for r in self.tables[name]])
            self._instants[name] = cached
        return cached[1]

    def _order(self, name: str) -> None:
        """Incremental listings are ordered by updated_at (as instants), ties by id."""
        self.tables[name].sort(key=lambda r: (when(r), r["id"]))

    def _stamp(self, seconds: float, ident: str) -> str:
        return stamp(seconds, ident, self.mixed_timestamps)

    def encoded(self, key: str, rows: list[dict]) -> list[bytes]:
        """Each row as JSON bytes, encoded once per generation of the data."""
        cached = self._encoded.get(key)
        if cached is None or cached[0] != self.generation:
            cached = (self.generation, [
                json.dumps(r, separators=(",", ":"), ensure_ascii=False).encode() for r in rows])
            self._encoded[key] = cached
        return cached[1]

    def mutate(self, updates: int, inserts: int, streams: t.Iterable[str] | None = None,
               now: bool = False, skew: float = 0.0, at: str | None = None
               ) -> dict[str, dict[str, list[str]]]:
        """Change `updates` records and add `inserts` per incremental stream; say which.
        `now`: date the changes by the API's clock, the real one plus `skew` seconds (as a
        live API would, its clock behind or ahead of the client's); `at`: date them all
        with exactly that timestamp (late rows, the same second as a run's start)."""
        self.generation += 1
        self.clock += 3600
        if now:
            real = datetime.datetime.now(datetime.timezone.utc) - EPOCH
            self.clock = max(self.clock, real.total_seconds() + skew)
        changed: dict[str, dict[str, list[str]]] = {}
        for name in streams or INCREMENTAL:
            rows = self.tables[name]
            if not rows:
                continue
            step = max(1, len(rows) // max(1, updates))
            picked = [rows[(k * step + self.generation) % len(rows)] for k in range(updates)]
            picked = list({r["id"]: r for r in picked}.values())
            for record in picked:
                record["updated_at"] = at or self._stamp(self.clock, record["id"])
                _touch(record, self.generation)
            new = []
            for k in range(inserts):
                record = INCREMENTAL[name](len(rows) + k)
                record["updated_at"] = at or self._stamp(self.clock + 60, record["id"])
                if self.drift is not None:
                    self.drift.decorate(name, record, 1.0)
                new.append(record)
            rows.extend(new)
            if name == "peoples":
                self.people_by_id.update((r["id"], r) for r in new)
            self._order(name)
            changed[name] = {"updated": [r["id"] for r in picked],
                             "inserted": [r["id"] for r in new]}
        return changed

    def change_during_run(self, name: str, updates: int = 0, deletes: int = 0,
                          inserts: int = 0) -> dict[str, list]:
        """What a live API does while a client pages through `name`: the first `updates`
        records change (an incremental listing moves them to its end), the next `deletes`
        are deleted, and `inserts` new ones appear (at the end of an incremental listing,
        at the start of any other), so every later offset shifts."""
        self.generation += 1
        self.clock += 60
        rows = self.tables[name] if name != "segment_people" else None
        if rows is None:
            raise ValueError("change segment memberships with delete")
        incremental = name in INCREMENTAL
        updated = rows[:updates]
        for record in updated:
            _touch(record, self.generation)
            if incremental:
                record["updated_at"] = self._stamp(self.clock, record["id"])
        deleted = rows[updates:updates + deletes]
        del rows[updates:updates + deletes]
        make = MAKERS[name]
        new = []
        for k in range(inserts):
            record = make(10**5 + len(rows) + k + self.generation * 1000)
            if incremental:
                record["updated_at"] = self._stamp(self.clock + 1, record["id"])
            if self.drift is not None:
                self.drift.decorate(name, record, 1.0)
            new.append(record)
        if incremental:
            rows.extend(new)
            self._order(name)
        else:
            rows[:0] = new
        if name == "peoples":
            self.people_by_id.update((r["id"], r) for r in new)
        return {"updated": [r["id"] for r in updated], "deleted": [r["id"] for r in deleted],
                "inserted": [r["id"] for r in new]}

    def delete(self, name: str, ids: t.Iterable) -> None:
        """Delete records (for segment_people, [segment_id, person_id] memberships)."""
        self.generation += 1
        gone = {tuple(i) if isinstance(i, list) else i for i in ids}
        if name == "segment_people":
            for sid, members in self.members.items():
                members[:] = [p for p in members if (sid, p) not in gone]
            return
        self.tables[name][:] = [r for r in self.tables[name] if r["id"] not in gone]
        if name == "segments":
            for sid in gone:
                self.members.pop(sid, None)

    def add_future_record(self, name: str) -> str:
        """A record dated in 2099 (a clock gone wrong upstream)."""
        self.generation += 1
        record = INCREMENTAL[name](10**6 + self.generation)
        record["updated_at"] = "2099-01-01T00:00:00Z"
        self.tables[name].append(record)
        self._order(name)
        return record["id"]

    def all_records(self) -> dict[str, list[dict]]:
        """Every record per stream as the API serves it (segment_people stamped)."""
        out = {name: list(rows) for name, rows in self.tables.items()}
        out["segment_people"] = [{**row, "segment_id": sid} for sid in self.members
                                 for row in self.segment_people(sid) or []]
        return out

    def all_ids(self) -> dict[str, list]:
        """Primary keys per stream, as the tap should deliver them."""
        ids = {name: [r["id"] for r in rows] for name, rows in self.tables.items()}
        listed = {r["id"] for r in self.tables["segments"]}  # a segment gone takes its people
        ids["segment_people"] = [[sid, pid] for sid, members in self.members.items()
                                 if sid in listed for pid in members]
        return ids


def _drop_cursors(rows: list[dict], rng: random.Random) -> None:
    """What real APIs send for a record never updated: a null, no field, or an empty string
    (a few percent of the records, at least one of each form)."""
    count = max(3, len(rows) // 25)
    for k, record in enumerate(rng.sample(rows, min(count, len(rows)))):
        form = k % 3
        if form == 0:
            record["updated_at"] = None
        elif form == 1:
            del record["updated_at"]
        else:
            record["updated_at"] = ""


def _touch(record: dict, generation: int) -> None:
    for key in ("subject", "name", "body", "email", "industry"):
        if isinstance(record.get(key), str):
            record[key] = f"{record[key].split(' (edit')[0]} (edit {generation})"
            return
