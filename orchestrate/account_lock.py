"""One sync per account at a time, whatever launches it (two Dagster instances, a schedule
tick beside a manual run, `dagster dev` beside `fleet.sh`): a lock held for the whole sync
in the database that holds the account's state (PostgreSQL: the warehouse's schema
`meltano`, or `MELTANO_DATABASE_URI`).

The lock is a session advisory lock keyed by the account's id. The server releases it
when the holder's connection ends, so a run that is killed (SIGKILL, a node lost) frees its
account at once.

A second sync of a busy account waits its turn (`TAP_ANALYTICS_FLEET_WHEN_BUSY=wait`, the
default: a schedule tick that merely overlaps a long run does not fail) or ends at once
with a line naming the run that holds it (`skip`).
"""

from __future__ import annotations

import contextlib
import time
import typing as t
from urllib.parse import urlsplit

import psycopg

WHEN_BUSY = "TAP_ANALYTICS_FLEET_WHEN_BUSY"
CHOICES = ("wait", "skip")
NAMESPACE = "tap-analytics sync "


class AccountBusy(Exception):
    """The account is being synced by another run (and this one does not wait)."""


class Info(t.Protocol):
    def info(self, msg: str) -> None: ...


def when_busy(environ: t.Mapping[str, str]) -> str:
    value = (environ.get(WHEN_BUSY) or "wait").strip().lower()
    if value not in CHOICES:
        raise ValueError(f"{WHEN_BUSY}={value!r}: expected one of {', '.join(CHOICES)}")
    return value


@contextlib.contextmanager
def account_lock(account: str, state_uri: str, holder: str, log: Info, *,
                 busy: str = "wait", poll: float = 1.0,
                 timeout: float = float("inf")) -> t.Iterator[psycopg.Connection]:
    """Hold the account's lock for the block. `holder` names this run to anyone waiting.
    Yields the lock's connection to the state database (autocommit)."""
    scheme = urlsplit(state_uri).scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise ValueError(f"MELTANO_DATABASE_URI: the fleet keeps its state in PostgreSQL "
                         f"(its lock keeps one sync per account), not {scheme}")
    with _AdvisoryLock(account, state_uri, holder) as lock:
        if not lock.try_acquire():
            who = lock.holder() or "another run"
            if busy == "skip":
                raise AccountBusy(f"account {account} is being synced by {who}; this run ends "
                                  f"({WHEN_BUSY}=skip)")
            log.info(f"account {account} is being synced by {who}; this run waits for it "
                     "(one sync per account at a time)")
            deadline = time.monotonic() + timeout
            while not lock.try_acquire():
                if time.monotonic() > deadline:
                    raise AccountBusy(f"account {account} was still being synced by {who} "
                                      f"after {timeout:g} s of waiting")
                time.sleep(poll)
        yield lock.connection


class _AdvisoryLock:
    def __init__(self, account: str, state_uri: str, holder: str) -> None:
        rest = state_uri.split("://", 1)[1]
        self._conninfo = "postgresql://" + rest  # SQLAlchemy's dialect name is not libpq's
        self._account = account
        self._holder = holder[:63]  # application_name's limit

    def __enter__(self) -> _AdvisoryLock:
        self._con = psycopg.connect(self._conninfo, autocommit=True,
                                    application_name=self._holder)
        return self

    @property
    def connection(self) -> psycopg.Connection:
        return self._con

    def __exit__(self, *exc: object) -> None:
        self._con.close()  # the lock ends with the session

    def try_acquire(self) -> bool:
        return bool(self._con.execute(
            "select pg_try_advisory_lock(hashtextextended(%s, 0))",
            (NAMESPACE + self._account,)).fetchone()[0])

    def holder(self) -> str | None:
        row = self._con.execute(
            "select a.application_name from pg_locks l join pg_stat_activity a on a.pid = l.pid "
            "where l.locktype = 'advisory' and l.objsubid = 1 and l.granted and "
            "l.pid <> pg_backend_pid() and "
            "((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended(%s, 0)",
            (NAMESPACE + self._account,)).fetchone()
        return row[0] if row and row[0] else None

