"""Which accounts stopped syncing: each account's last successful sync, read for every
account at once from Meltano's runs in the state database (one query, whatever the number
of accounts), judged against `TAP_ANALYTICS_FLEET_STALE_HOURS` (24).

A sync of some tables of an account counts as a sync of the account. An account that never
synced is stale until it does.
"""

from __future__ import annotations

import datetime
import typing as t
from dataclasses import dataclass

import psycopg

from orchestrate.account_lock import conninfo

STALE_HOURS = "TAP_ANALYTICS_FLEET_STALE_HOURS"
JOB = ":tap-analytics-to-target-postgres:"  # Meltano's job name: <environment><JOB><account>


def stale_after(environ: t.Mapping[str, str]) -> datetime.timedelta:
    hours = float(environ.get(STALE_HOURS) or 24)
    if hours <= 0:
        raise ValueError(f"{STALE_HOURS}={hours:g}: expected hours > 0")
    return datetime.timedelta(hours=hours)


def last_syncs(state_uri: str) -> dict[str, datetime.datetime]:
    """Each account's last successful sync (UTC), from one query of Meltano's runs."""
    with psycopg.connect(conninfo(state_uri), autocommit=True) as con:
        rows = con.execute("select job_name, max(ended_at) from runs where state = 'SUCCESS' "
                           "and job_name like %s group by job_name", (f"%{JOB}%",)).fetchall()
    last: dict[str, datetime.datetime] = {}
    for job, ended in rows:
        if ended is None:
            continue
        if ended.tzinfo is None:  # Meltano keeps UTC without a zone
            ended = ended.replace(tzinfo=datetime.timezone.utc)
        account = job.rsplit(JOB, 1)[1]
        last[account] = max(ended, last.get(account, ended))
    return last


@dataclass(frozen=True)
class Verdict:
    account: str
    last: datetime.datetime | None
    stale: bool

    def description(self, limit: datetime.timedelta) -> str:
        hours = f"{limit.total_seconds() / 3600:g} h ({STALE_HOURS})"
        if self.last is None:
            return f"never synced successfully (stale after {hours})"
        when = self.last.isoformat(timespec="seconds")
        return (f"last synced successfully at {when}: "
                + (f"more than {hours} ago" if self.stale else f"within {hours}"))


def judge(accounts: t.Iterable[str], last: t.Mapping[str, datetime.datetime],
          now: datetime.datetime, limit: datetime.timedelta) -> list[Verdict]:
    return [Verdict(a, last.get(a), a not in last or now - last[a] > limit) for a in accounts]
