"""Timestamps as instants: RFC 3339 checks, parsing in any offset, the form sent to the API."""

from __future__ import annotations

import datetime
import re

UTC = datetime.timezone.utc
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z"
)


def parse_instant(value: str) -> datetime.datetime | None:
    """The instant an RFC 3339 date-time names (aware, in UTC); None if it is not one."""
    match = _RFC3339.match(value)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime.datetime(int(year), int(month), int(day), int(hour), int(minute),
                                   min(int(second), 59),  # a leap second reads as :59
                                   int((fraction or ".0")[1:7].ljust(6, "0")), tzinfo=UTC)
    except ValueError:
        return None
    if zone not in "Zz":
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            return None
        moment -= sign * datetime.timedelta(hours=hours, minutes=minutes)
    return moment


def is_rfc3339(value: str) -> bool:
    return parse_instant(value) is not None


def to_instant(value: str | datetime.datetime) -> datetime.datetime:
    """A bookmark, start date or record value as an aware UTC instant (naive means UTC)."""
    if isinstance(value, datetime.datetime):
        moment = value
    else:
        moment = parse_instant(value) or datetime.datetime.fromisoformat(
            value.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def api_form(moment: datetime.datetime) -> str:
    """What `updated_since` carries: UTC, whole seconds (floored, so never past the instant)."""
    return to_instant(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def state_form(moment: datetime.datetime) -> str:
    """A bookmark written by the tap itself (the run's start, when it caps a bookmark)."""
    return to_instant(moment).isoformat(timespec="microseconds").replace("+00:00", "Z")
