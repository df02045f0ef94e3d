"""The paginator of incremental offset listings: pages asked by the bookmark value.

Incremental listings are ordered by the bookmark field, ties by id (API.md). A listing is
read from its starting value by offset, pages overlapping by one record and planned ahead
(fetched side by side, taken in order), as full-table listings are. When such a read
shifts (a record before the tap's position changed or went: the page does not open with
the record the previous one ended on), each next page asks `updated_since` = the last value
read instead (keyset), so records that change meanwhile (they move to the end) shift
nothing the tap still has to read; the records already read at that value are skipped by
key.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from tap_analytics.pagination import OffsetListing
from tap_analytics.payload import PayloadError, is_blank
from tap_analytics.timestamps import api_form, to_instant

if t.TYPE_CHECKING:
    import logging

    import requests

    from tap_analytics.resources import PaginatorSpec


@dataclass(frozen=True)
class KeysetToken:
    since: t.Any  # what the bookmark parameter carries; None on a first run
    offset: int = 0
    reread: int = 0
    overlap: bool = False


class KeysetPaginator(OffsetListing):
    """Pages of an incremental listing asked from the last bookmark value read.

    The next request is `updated_since` = the last value read (whole seconds for a
    timestamp, so every record of that second comes back) with `offset` pointing at the
    last record read: that record must open the page, or the records at that value changed
    and the value is read again from its first record. Records already read are skipped.
    """

    def __init__(self, bookmark: t.Any, spec: PaginatorSpec, page_size: int, since_param: str,
                 field: str, timestamp: bool, stream: str = "",
                 logger: logging.Logger | None = None, *, plan: bool = True) -> None:
        position = None if bookmark is None else (
            to_instant(bookmark) if timestamp else bookmark)
        super().__init__(KeysetToken(self._since_for(position, timestamp)), spec, page_size,
                         stream, logger)
        self._since_param = since_param
        self._field = field
        self._timestamp = timestamp
        # the position (instant or value) of the last record read in this run: nothing the
        # first request returns is skipped (a bookmark is compared with nothing the API sends)
        self._last: t.Any = None
        self._seen: set = set()  # ids read at exactly that position
        self._group = 0  # records of the page at or after the value the next page asks from
        self._tail: t.Any = None  # the id of the last record of the page before
        self._shifted = False
        self._plan = plan  # pages from the starting value by offset, until a shift

    def request_params(self, token: KeysetToken) -> dict[str, t.Any]:
        params = super().request_params(token)
        return params if token.since is None else {**params, self._since_param: token.since}

    def position(self, record: dict) -> t.Any:
        """Where a record stands in the listing's order; None for a record without a value
        (null, missing or empty): it is read like any other and places nothing."""
        value = record.get(self._field)
        if is_blank(value):
            return None
        if not self._timestamp:
            return value
        try:
            return to_instant(value)
        except (TypeError, ValueError):
            msg = f"{self._stream}: '{self._field}' is not an RFC 3339 date-time: {value!r}"
            raise PayloadError(msg) from None

    def _read(self, position: t.Any, ident: t.Any) -> bool:
        last = self._last
        return last is not None and position is not None and (
            position < last or (position == last and ident in self._seen))

    def accept(self, records: list[dict]) -> list[dict]:
        token = self.current_value
        self._page(records, token)
        positions = [self.position(r) for r in records]
        lead = self._lead(records, positions) if token.overlap else 0
        if token.overlap and not lead:
            self._restart("the records at the bookmark value changed")
            self._shifted = True
            return []
        self._shifted = False
        self._beyond = len(records) - lead
        if records:
            self._tail = records[-1].get("id")
        fresh = []
        for record, position in zip(records[lead:], positions[lead:], strict=True):
            if self._read(position, record.get("id")):
                continue
            fresh.append(record)
            if position is not None:
                if self._last is None or position > self._last:
                    self._last, self._seen = position, set()
                self._seen.add(record.get("id"))
        # the records at the end of the page from the value the next page asks from
        anchor = self._anchor(self._last)
        self._group = 0
        for position in reversed(positions):
            if position is None or self._anchor(position) < anchor:
                break
            self._group += 1
        return fresh

    def _lead(self, records: list[dict], positions: list[t.Any]) -> int:
        """How many records open the page that this run has read already (at least the
        last one of the page before, unless the listing changed)."""
        lead = 0
        for record, position in zip(records, positions, strict=True):
            ident = record.get("id")
            if not (self._read(position, ident) or (lead == 0 and ident == self._tail)):
                break
            lead += 1
        return lead

    def _anchor(self, position: t.Any) -> t.Any:
        """Where the next page asks from: the position, to the whole second for a time."""
        if self._timestamp and position is not None:
            return position.replace(microsecond=0)
        return position

    def has_more(self, response: requests.Response) -> bool:
        return self._shifted or super().has_more(response)

    def _plannable(self) -> bool:
        return self._plan

    def get_next(self, response: requests.Response) -> KeysetToken:
        token = self.current_value
        if self._shifted and self._plan and self._last is not None:
            # a planned read shifted: on by keyset from the last value read (its records
            # read already are skipped), no page planned from here on
            self._plan = False
            return KeysetToken(self._since_for(self._last, self._timestamp), 0, token.reread)
        if self._shifted:
            return KeysetToken(token.since, 0, token.reread + 1)
        if self._plan:  # on from the starting value by offset, as planned pages are
            offset, overlap = self._next_offset(token.offset, self._received)
            return KeysetToken(token.since, offset, token.reread, overlap)
        since = self._since_for(self._last, self._timestamp)
        if since == token.since:  # still inside one value: step on, overlapping one record
            offset, overlap = self._next_offset(token.offset, self._received)
            return KeysetToken(since, offset, token.reread, overlap)
        # the page's last record opens the next page (its value is asked from again)
        overlap = self.page_size > 1 and self._group > 0
        return KeysetToken(since, max(0, self._group - overlap), token.reread, overlap)

    @staticmethod
    def _since_for(position: t.Any, timestamp: bool) -> t.Any:
        """The bookmark parameter for a position: whole seconds (floored) for a time."""
        return api_form(position) if timestamp and position is not None else position
