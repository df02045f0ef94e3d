"""What one `meltano run` did to each table, from what it printed and what it left behind.

- Records read and loaded, and how each stream ended: the Singer SDK metrics of the tap
  and the target, which Meltano logs (`METRIC: {"type": "counter", "metric":
  "record_count", ...}`, and the tap's `sync_duration` with its status), read as the lines
  stream by.
- Rows in each table and its key: PostgreSQL's catalog (`pg_class.reltuples` after an
  ANALYZE of the tables the run wrote, `pg_constraint`): no large table is scanned.
- The bookmark of each stream: the state Meltano saved for the account.
"""

from __future__ import annotations

import json
import re
import typing as t
from dataclasses import dataclass, field

from psycopg import sql

METRIC = re.compile(r"\b(tap-analytics|target-postgres) METRIC: (\{.*\})")
# the tap's line at the end of a listing whose pages state a total (tap_analytics/paging.py)
ANNOUNCED = re.compile(r"([\w.-]+): listing read, (\d+) records of the (\d+) the API "
                       r"announced")


@dataclass
class Tally:
    """Fed every line of the run: rows written and how each stream's syncs ended."""

    read: dict[str, int] = field(default_factory=dict)  # records the tap wrote out
    written: dict[str, int] = field(default_factory=dict)  # records the target loaded
    ended: dict[str, str] = field(default_factory=dict)  # "succeeded" unless one failed
    child: set[str] = field(default_factory=set)  # streams synced per parent record
    announced: dict[str, tuple[int, int]] = field(default_factory=dict)  # (read, total)
    loader_failed: bool = False

    def feed(self, line: str) -> None:
        if "target-postgres" in line and ("Traceback" in line or "Error" in line):
            self.loader_failed = True
        if "Loader failed" in line:
            self.loader_failed = True
        match = ANNOUNCED.search(line)
        if match is not None:
            read, total = self.announced.get(match.group(1), (0, 0))
            self.announced[match.group(1)] = (read + int(match.group(2)),
                                              total + int(match.group(3)))
            return
        match = METRIC.search(line)
        if match is None:
            return
        try:
            metric = json.loads(match.group(2))
        except ValueError:
            return
        tags = metric.get("tags") or {}
        stream = tags.get("stream")
        if not isinstance(stream, str):
            return
        if metric.get("metric") == "record_count":
            counts = self.read if match.group(1) == "tap-analytics" else self.written
            counts[stream] = counts.get(stream, 0) + int(metric.get("value") or 0)
        if match.group(1) != "tap-analytics":
            return
        if tags.get("context"):
            self.child.add(stream)
        if metric.get("metric") == "sync_duration":
            status = tags.get("status", "succeeded")
            if self.ended.get(stream) != "failed":
                self.ended[stream] = status

    def landed(self, stream: str, run_failed: bool) -> bool:
        """Whether the stream's rows are all in its table. After a failed run: a top-level
        stream that ended well, when the loader did not fail (a child's parent listing may
        have stopped short, so its table may lack rows)."""
        if not run_failed:
            return True
        return (self.ended.get(stream) == "succeeded" and stream not in self.child
                and not self.loader_failed)


@dataclass(frozen=True)
class TableFacts:
    rows: int | None  # PostgreSQL's count: exact up to 30,000 pages, its estimate beyond
    key: tuple[str, ...]  # the primary key's columns, () when it has none


def table_facts(con: t.Any, schema: str, written: t.Iterable[str] = ()) -> dict[str, TableFacts]:
    """Every table of `schema`: its rows and primary key, from PostgreSQL's catalog.

    The tables the run wrote are ANALYZEd first (what autovacuum would do after it, at its
    own time): PostgreSQL reads up to 30,000 pages of each, all of a smaller table, so the
    count is exact there and its estimate beyond, never a full scan of a large table. The
    activity statistics (`n_live_tup`) are not used for them: a backend that has just
    exited may not have reported its writes yet."""
    names = {r[0] for r in con.execute(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = %s and c.relkind in ('r', 'p')", (schema,)).fetchall()}
    for name in sorted(names & set(written)):
        con.execute(sql.SQL("analyze {}.{}").format(sql.Identifier(schema), sql.Identifier(name)))
    rows = {name: (int(tuples) if tuples >= 0 else live) for name, tuples, live in con.execute(
        "select c.relname, c.reltuples, coalesce(s.n_live_tup, 0) from pg_class c "
        "join pg_namespace n on n.oid = c.relnamespace "
        "left join pg_stat_user_tables s on s.relid = c.oid "
        "where n.nspname = %s and c.relkind in ('r', 'p')", (schema,)).fetchall()}
    keys = dict(con.execute(
        "select c.relname, array_agg(a.attname::text order by a.attname) from pg_constraint k "
        "join pg_class c on c.oid = k.conrelid join pg_namespace n on n.oid = c.relnamespace "
        "join pg_attribute a on a.attrelid = c.oid and a.attnum = any(k.conkey) "
        "where k.contype = 'p' and n.nspname = %s group by c.relname", (schema,)).fetchall())
    return {name: TableFacts(count, tuple(keys.get(name) or ())) for name, count in rows.items()}


def bookmarks(con: t.Any, account: str) -> dict[str, str]:
    """Each stream's bookmark in the account's saved state (the newest of its environments;
    a child stream's: the newest of its parents' records)."""
    suffix = ":tap-analytics-to-target-postgres:" + account
    row = con.execute("select completed_state from state where right(state_id, %s) = %s "
                      "order by updated_at desc limit 1", (len(suffix), suffix)).fetchone()
    if row is None:
        return {}
    state = row[0] if isinstance(row[0], dict) else json.loads(row[0] or "{}")
    found: dict[str, str] = {}
    for stream, mark in (state.get("singer_state", {}).get("bookmarks") or {}).items():
        values = [m.get("replication_key_value") for m in [mark, *mark.get("partitions", [])]
                  if isinstance(m, dict)]
        values = [str(v) for v in values if v is not None]
        if values:
            found[stream] = max(values)
    return found
