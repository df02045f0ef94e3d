"""One sync per account at a time, whatever launches it (two Dagster instances, a schedule
tick beside a manual run, `dagster dev` beside `fleet.sh`): a lock held for the whole sync
in the database that holds the account's state (PostgreSQL: the warehouse's schema
`meltano`, or `MELTANO_DATABASE_URI`).

The lock is a session advisory lock keyed by the account's id. The server releases it
when the holder's connection ends, so a run that is killed (SIGKILL, a node lost) frees its
account at once (`orchestrate/run_guard.py` keeps it until nothing of that run runs). The
connection has TCP keepalives, and a sync checks every `TAP_ANALYTICS_FLEET_LOCK_CHECK`
seconds (5) that it still holds its lock (`LockWatch`): one whose connection dropped, or
whose session was ended, stops.

Beside it, under the same session, a slot of the account's API host: at most
`TAP_ANALYTICS_FLEET_HOST_CONCURRENCY` (default: `TAP_ANALYTICS_FLEET_CONCURRENCY`, 4)
syncs of one host at once, however each was launched (Dagster's run queue limits only the
runs that carry the host's tag: a schedule's, a job backfill's; not a run of the asset
graph, an asset backfill or `dagster asset materialize`). A run waits for a slot, and says
so.

A second sync of a busy account waits its turn (`TAP_ANALYTICS_FLEET_WHEN_BUSY=wait`, the
default: a schedule tick that merely overlaps a long run does not fail) or ends at once
with a line naming the run that holds it (`skip`).
"""

from __future__ import annotations

import contextlib
import threading
import time
import typing as t
from urllib.parse import urlsplit

import psycopg

WHEN_BUSY = "TAP_ANALYTICS_FLEET_WHEN_BUSY"
HOST_NAMESPACE = "tap-analytics host "
LOCK_CHECK = "TAP_ANALYTICS_FLEET_LOCK_CHECK"
# a connection that drops silently (a network partition, a server gone) is found within
# about 25 s, and a write the server never acknowledges fails after 30 s
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
              "keepalives_count": 3, "tcp_user_timeout": 30_000}
HELD = ("select count(*) from pg_locks where locktype = 'advisory' and granted and "
        "objsubid = 1 and pid = pg_backend_pid() and "
        "((classid::bigint << 32) | objid::bigint) = hashtextextended(%s, 0)")
CHOICES = ("wait", "skip")
NAMESPACE = "tap-analytics sync "


def fleet_concurrency(environ: t.Mapping[str, str]) -> int:
    """Accounts synced at once (`TAP_ANALYTICS_FLEET_CONCURRENCY`, the pool's limit)."""
    return int(environ.get("TAP_ANALYTICS_FLEET_CONCURRENCY") or 4)


def host_concurrency(environ: t.Mapping[str, str]) -> int:
    """Syncs at once per API host (`TAP_ANALYTICS_FLEET_HOST_CONCURRENCY`): an agency's many
    keys on one vendor share that vendor's rate limit. Default: the pool's limit."""
    value = int(environ.get("TAP_ANALYTICS_FLEET_HOST_CONCURRENCY")
                or fleet_concurrency(environ))
    if value < 1:
        raise ValueError(f"TAP_ANALYTICS_FLEET_HOST_CONCURRENCY={value}: expected 1 or more")
    return value


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
                 busy: str = "wait", poll: float = 1.0, timeout: float = float("inf"),
                 host: tuple[str, int] | None = None) -> t.Iterator[psycopg.Connection]:
    """Hold the account's lock for the block, and then a slot of `host` (its name, and
    how many syncs of it may run at once). `holder` names this run to anyone waiting.
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
        if host is not None:
            _host_slot(lock, *host, log, poll, time.monotonic() + timeout)
        yield lock.connection


def _host_slot(lock: _AdvisoryLock, host: str, slots: int, log: Info, poll: float,
               deadline: float) -> None:
    keys = [f"{HOST_NAMESPACE}{host} slot {n}" for n in range(slots)]
    told = False
    while not any(lock.try_acquire(key) for key in keys):
        if not told:
            told = True
            log.info(f"API host {host} has {slots} syncs running "
                     "(TAP_ANALYTICS_FLEET_HOST_CONCURRENCY); this run waits for a slot")
        if time.monotonic() > deadline:
            raise AccountBusy(f"API host {host} had no free slot for this sync's whole "
                              "waiting time")
        time.sleep(poll)


def conninfo(state_uri: str) -> str:
    """libpq's URI of Meltano's state database (SQLAlchemy's dialect name is not libpq's)."""
    return "postgresql://" + state_uri.split("://", 1)[1]


class _AdvisoryLock:
    def __init__(self, account: str, state_uri: str, holder: str) -> None:
        self._conninfo = conninfo(state_uri)
        self._account = account
        self._holder = holder[:63]  # application_name's limit

    def __enter__(self) -> _AdvisoryLock:
        self._con = psycopg.connect(self._conninfo, autocommit=True,
                                    application_name=self._holder, **KEEPALIVES)
        return self

    @property
    def connection(self) -> psycopg.Connection:
        return self._con

    def __exit__(self, *exc: object) -> None:
        self._con.close()  # the lock ends with the session

    def try_acquire(self, key: str | None = None) -> bool:
        """The account's lock, or the lock named `key`."""
        return bool(self._con.execute(
            "select pg_try_advisory_lock(hashtextextended(%s, 0))",
            (key or NAMESPACE + self._account,)).fetchone()[0])

    def holder(self) -> str | None:
        row = self._con.execute(
            "select a.application_name from pg_locks l join pg_stat_activity a on a.pid = l.pid "
            "where l.locktype = 'advisory' and l.objsubid = 1 and l.granted and "
            "l.pid <> pg_backend_pid() and "
            "((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended(%s, 0)",
            (NAMESPACE + self._account,)).fetchone()
        return row[0] if row and row[0] else None



def lock_check(environ: t.Mapping[str, str]) -> float:
    value = float(environ.get(LOCK_CHECK) or 5)
    if value <= 0:
        raise ValueError(f"{LOCK_CHECK}={value:g}: expected seconds > 0")
    return value


class LockWatch(threading.Thread):
    """Checks every `interval` seconds that the account's lock is still held on `con`;
    once it is not (the connection dropped, the session was ended), records why in
    `lost` and calls `on_lost` (which stops the sync)."""

    def __init__(self, con: psycopg.Connection, account: str, on_lost: t.Callable[[], None],
                 interval: float) -> None:
        super().__init__(name="account-lock-watch", daemon=True)
        self._con, self._account, self._on_lost = con, account, on_lost
        self._interval = interval
        self._done = threading.Event()
        self.lost: str | None = None

    def run(self) -> None:
        while not self._done.wait(self._interval):
            try:
                held = self._con.execute(HELD, (NAMESPACE + self._account,)).fetchone()[0]
                why = None if held else "the state database no longer counts it held"
            except psycopg.Error as exc:
                why = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
            if why is not None and not self._done.is_set():
                self.lost = (f"the account's lock was lost ({why}): the sync was stopped, so "
                             "that no other sync of the account loads beside it")
                self._on_lost()
                return

    def __enter__(self) -> LockWatch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self.join()
