"""Timestamps as instants: RFC 3339 checks, parsing in any offset, the form sent to the API."""

from __future__ import annotations

import datetime
import re

UTC = datetime.timezone.utc
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z"
)
# The same shape with every field's range, as strict validators (rfc3339-validator) check
# it: no year 0000, no leap second; days past the 28th still need the calendar.
_RFC3339_RANGES = re.compile(
    r"(?!0000)\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8]|(29|3[01]))[Tt](?:[01]\d|2[0-3]):"
    r"[0-5]\d:[0-5]\d(?:\.\d+)?(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)\Z"
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


UTC_ZONES = ("Z", "z", "+00:00", "-00:00")  # the suffixes of a date-time already in UTC


def in_utc(value: str) -> str:
    """An RFC 3339 date-time written in UTC, naming the same instant; anything else as it is.

    Offsets are whole minutes, so the seconds and fraction are kept as written (digits past
    microseconds included): only the date, hour and minute move.
    """
    if value.endswith(UTC_ZONES):
        return value
    match = _RFC3339.match(value)
    if match is None:
        return value
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    offset = datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    try:
        moment = datetime.datetime(int(year), int(month), int(day), int(hour), int(minute))
        moment = moment - offset if zone[0] == "+" else moment + offset
    except (ValueError, OverflowError):
        return value  # outside years 1-9999 in UTC: as sent
    return f"{moment:%Y-%m-%dT%H:%M}:{second}{fraction or ''}Z"


_RFC3339_LINES = re.compile("(?:" + _RFC3339_RANGES.pattern.removesuffix("\\Z") + "\n)*")


def all_rfc3339(values: list[str]) -> bool:
    """`is_rfc3339` for many values at once: one regex pass over them all."""
    text = "\n".join(values) + "\n"
    one_per_line = text.count("\n") == len(values) + (not values)
    # days past the 28th need the calendar: those take the slow way
    if one_per_line and "-29" not in text and "-3" not in text:
        return _RFC3339_LINES.fullmatch(text) is not None or all(map(is_rfc3339, values))
    return all(map(is_rfc3339, values))


def is_rfc3339(value: str) -> bool:
    """Whether `value` is an RFC 3339 date-time, as strict validators check it."""
    match = _RFC3339_RANGES.match(value)
    if match is None:
        return False
    return match.group(1) is None or parse_instant(value) is not None


def to_instant(value: str | datetime.datetime) -> datetime.datetime:
    """A bookmark, start date or record value as an aware UTC instant (naive means UTC)."""
    if isinstance(value, datetime.datetime):
        moment = value
    else:
        try:  # C speed for the forms Python reads (all of RFC 3339 from 3.11 on)
            moment = datetime.datetime.fromisoformat(value)
        except ValueError:
            moment = parse_instant(value) or datetime.datetime.fromisoformat(
                value.replace("Z", "+00:00").replace("z", "+00:00"))
        if moment.tzinfo is UTC:
            return moment
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def api_form(moment: datetime.datetime) -> str:
    """What `updated_since` carries: UTC, whole seconds (floored, so never past the instant)."""
    return to_instant(moment).strftime("%Y-%m-%dT%H:%M:%SZ")

