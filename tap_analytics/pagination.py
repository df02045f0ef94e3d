"""Paginators for the listing shapes of the API, on the SDK's paginator classes.

A live listing changes while it is read, and an API may answer fewer records than asked.
`OffsetListing` decides where an offset listing ends whatever page sizes the API keeps
(a short page alone never ends it); on it:

- `OverlapOffsetPaginator` (every offset listing without a bookmark field): consecutive
  pages overlap by one record; when a page does not start with the record the last one
  ended on, the listing shifted under the tap (a record was deleted or inserted before
  it) and is read again from the start, records already written being skipped by key.
- `keyset.KeysetPaginator` (incremental listings): pages asked by the bookmark value.

Each paginator owns both sides of a page, as dlt's paginators do: `request_params(token)`,
the query parameters that ask for a page, and `accept(records)`, the records of the page
just fetched that are new. A `Page` (paginator and token) is what a request is made from.
"""

from __future__ import annotations

import logging
import operator
import typing as t
from dataclasses import dataclass, replace

from singer_sdk.exceptions import FatalAPIError
from singer_sdk.pagination import BaseAPIPaginator, SinglePagePaginator

from tap_analytics.payload import PayloadError, body_of, lookup

if t.TYPE_CHECKING:
    import requests

    from tap_analytics.resources import PaginatorSpec

LOGGER = logging.getLogger("tap-analytics")
MAX_REREADS = 10  # a listing that keeps shifting stops the run instead of spinning
# pages in flight for a listing without a `total`, at most: what one past its end can waste
SPECULATION = 3


class ListingKeptShiftingError(FatalAPIError):
    """A listing changed under the tap on every read of it."""


@dataclass(frozen=True)
class Page:
    """One page to request: its paginator builds the query parameters from the token."""

    paginator: t.Any
    token: t.Any

    def params(self) -> dict[str, t.Any]:
        return self.paginator.request_params(self.token)


@dataclass(frozen=True)
class Since:
    """The incremental parameter a listing sends on every request (start or bookmark)."""

    param: str | None = None
    value: t.Any = None

    def params(self) -> dict[str, t.Any]:
        return {} if self.param is None or self.value is None else {self.param: self.value}


@dataclass(frozen=True)
class OffsetToken:
    offset: int
    reread: int = 0  # how many times the listing was started again
    overlap: bool = False  # the page opens with the record the previous one ended on


@dataclass
class EndpointPaging:
    """What the listings of one endpoint (a child stream's: one listing per parent) have
    shown in this run: the largest page size it filled, and whether it was found capping.
    A child listing whose first page is short needs no probe when another listing of the
    endpoint filled a page of that size and none was capped (docs/RELIABILITY.md)."""

    filled: int = 0
    capped: bool = False

    def honours(self, limit: int) -> bool:
        return not self.capped and self.filled >= limit


def total_of(response: requests.Response, path: tuple[str, ...]) -> int | None:
    total = lookup(body_of(response), path)
    return total if isinstance(total, int) and not isinstance(total, bool) else None


class OffsetListing(BaseAPIPaginator[t.Any]):
    """Shared by the offset shapes: where a listing ends, whatever page sizes the API keeps.

    A page shorter than asked does not end the listing by itself: APIs cap pages below the
    asked `limit` without saying so. Nor does `total`: an API may stop counting (report
    500 of 2,000). The listing ends at a page that brings nothing past its overlap, or at a
    short page that reaches the `total` (without a `total`, the one request after a short
    page). A full page never ends it. A `total` that a page reads past is not used again
    in the listing, to plan pages nor to end it. An API found capping is told once, and read
    at its cap from then on.
    """

    def __init__(self, start: t.Any, spec: PaginatorSpec, page_size: int, stream: str,
                 logger: logging.Logger | None = None,
                 endpoint: EndpointPaging | None = None) -> None:
        super().__init__(start)
        self._endpoint = endpoint
        self.page_size = page_size
        self.asked = page_size  # what the settings ask, for the warning
        self._spec = spec
        self._total_path = tuple(spec.total_path.split("."))
        self._stream = stream
        self._logger = logger or LOGGER
        self._received = 0
        self._beyond = 0  # records of the page past the overlap
        self._short: int | None = None  # the size of the last page, when shorter than asked
        self._warned = False
        self._full_run = 0  # pages in a row that came back full
        self._after_full = False
        self._miscounted = False  # a page was read past the listing's `total`

    def request_params(self, token: t.Any) -> dict[str, t.Any]:
        return {self._spec.limit_param: self.page_size, self._spec.offset_param: token.offset}

    def announced(self, response: requests.Response) -> int | None:
        """The listing's `total`, when the page states one."""
        return total_of(response, self._total_path)

    def _total(self, response: requests.Response) -> int | None:
        """The listing's `total` while no page has been read past it, else None (called
        once per page, before the paginator advances)."""
        total = None if self._miscounted else total_of(response, self._total_path)
        listed = self.current_value.offset + self._received
        if total is None or listed <= total:
            return total
        self._miscounted = True
        self._logger.warning(
            "Stream '%s': the API's total (%d) is below the records it lists (%d so far): "
            "the listing is read until a page ends it.", self._stream, total, listed)
        return None

    def accept(self, records: list[dict]) -> list[dict]:
        raise NotImplementedError

    def _page(self, records: list[dict], token: t.Any) -> None:
        self._after_full = self._full_run > 0  # the page before this one came back full
        self._received = len(records)
        self._full_run = self._full_run + 1 if len(records) >= self.page_size else 0
        self._beyond = len(records) - 1 if token.overlap else len(records)

    def has_more(self, response: requests.Response) -> bool:
        received = self._received
        total = self._total(response)
        token = self.current_value
        if self._beyond <= 0:  # nothing past the overlap: the listing is read, unless...
            if token.overlap and received == 1 < self.page_size and self._after_full and (
                    total is None or token.offset + 1 < total):
                # ...the page after a full one is the record it overlaps, alone: an API that
                # has begun to cap its pages at one record answers that too (after a short
                # page it is the probe's answer: the end); the page after that record tells
                self._short = 1
                return True
            return False
        # a full page never ends a listing, whatever `total` says
        more = total is None or received >= self.page_size or token.offset + received < total
        if self._short is not None:  # the page before was short, and this one brought more
            self._capped(self._short)
        self._short = received if more and received < self.page_size else None
        if total is not None and self._short is not None:  # short of what total promises
            self._capped(self._short)
            self._short = None
        endpoint = self._endpoint
        if endpoint is not None and received >= self.page_size:
            endpoint.filled = max(endpoint.filled, self.page_size)
        elif (endpoint is not None and self._short is not None and self.current_value.offset == 0
              and endpoint.honours(self.page_size)):
            self._short = None
            return False  # a short first page of an endpoint known to fill its pages: the end
        return more

    def _capped(self, cap: int) -> None:
        """The API answers at most `cap` records a page: read the rest at that size."""
        if cap >= self.page_size:
            return
        if self._endpoint is not None:
            self._endpoint.capped = True
        self.page_size = max(1, cap)
        if self._warned:
            self._logger.info("Stream '%s': the API now answers at most %d records a page.",
                              self._stream, cap)
            return
        self._warned = True
        self._logger.warning(
            "Stream '%s': the API answered %d records to a page of %d and had more: it caps "
            "its pages. The rest of the listing is read %d at a time; page_size %d (or the "
            "resource's paginator limit) avoids the extra requests.",
            self._stream, cap, self.asked, cap, cap)

    def _next_offset(self, offset: int, received: int) -> tuple[int, bool]:
        """Where the next page starts: on the last record received (an overlap of one), or
        right after it when a page cannot hold an overlap and something new."""
        if received > 1 and self.page_size > 1:
            return offset + received - 1, True
        return offset + received, False

    def planned(self, response: requests.Response, window: int) -> list[t.Any]:
        """The next pages (at most `window` of them), which can be fetched before this one is
        read: their overlaps still tell a shift. Up to the listing's `total` when it states
        one; without it, as many as the listing has given full pages in a row (a listing
        that keeps filling its pages is read further ahead, one that ends wastes at most
        that many requests). A page that comes back shorter than planned only costs the
        pages planned after it."""
        token = self.current_value
        if self.page_size < 2 or window < 2 or not self._plannable():
            return []  # one request at a time (max_concurrency 1): read in the caller's thread
        step = self.page_size - 1
        total = None if self._miscounted else total_of(response, self._total_path)
        if total is not None:
            later = range(token.offset + step, total - 1, step)
        else:
            ahead = min(window, self._full_run, SPECULATION)
            later = range(token.offset + step, token.offset + step * ahead, step)
        return [token, *(replace(token, offset=o, overlap=True) for o in later)][:window]

    def _plannable(self) -> bool:
        return True

    def _restart(self, why: str) -> None:
        self._short = None
        if self.current_value.reread >= MAX_REREADS:
            msg = (f"{self._stream}: the listing changed under the tap on each of "
                   f"{MAX_REREADS + 1} reads ({why}); try again when it is quieter")
            raise ListingKeptShiftingError(msg)


class OverlapOffsetPaginator(OffsetListing):
    """`limit`/`offset` pages overlapping by one record; a shift means a second read."""

    def __init__(self, spec: PaginatorSpec, page_size: int, key: t.Sequence[str],
                 stream: str = "", logger: logging.Logger | None = None,
                 endpoint: EndpointPaging | None = None) -> None:
        super().__init__(OffsetToken(0), spec, page_size, stream, logger, endpoint)
        # the record's key as it comes from the API (a child's parent key is stamped later)
        self._key_of = operator.itemgetter(*key)
        self._written: set[tuple] = set()  # keys written, for a listing read again
        self._last: tuple | None = None  # the key the previous page ended on
        self._previous: list = []  # the keys of the page before
        self._shifted = False

    def key_of(self, record: dict) -> t.Any:
        try:
            return self._key_of(record)
        except KeyError:
            return None  # the conformer names a record without its key

    def accept(self, records: list[dict]) -> list[dict]:
        token = self.current_value
        self._page(records, token)
        keys = self._keys(records)
        if token.overlap and keys and keys == self._previous:
            self._beyond = 0  # the page before, again: an endpoint that ignores offset
            return []
        self._previous = keys
        if token.overlap and (not records or keys[0] != self._last):
            self._restart("a page did not start where the previous one ended")
            self._shifted = True
            return []
        self._shifted = False
        if records:
            self._last = keys[-1]
        start = 1 if token.overlap else 0
        fresh, new = records[start:], keys[start:]
        written = self._written
        again = written.intersection(new) if written else None
        if again:  # a listing read again, or an API that repeats records (ignoring offset)
            kept = [i for i, key in enumerate(new) if key not in again]
            fresh, new = [fresh[i] for i in kept], [new[i] for i in kept]
        written.update(new)
        if not token.reread:  # a page of records read already ends the listing
            self._beyond = len(new)
        return fresh

    def _keys(self, records: list[dict]) -> list:
        try:
            return list(map(self._key_of, records))
        except KeyError:
            return [self.key_of(r) for r in records]

    def has_more(self, response: requests.Response) -> bool:
        return self._shifted or super().has_more(response)

    def get_next(self, response: requests.Response) -> OffsetToken:
        token = self.current_value
        if self._shifted:
            return OffsetToken(0, token.reread + 1)
        offset, overlap = self._next_offset(token.offset, self._received)
        return OffsetToken(offset, token.reread, overlap)



class CursorPaginator(BaseAPIPaginator["str | None"]):
    """Opaque cursors at `cursor_path`; absent, null or empty means the last page."""

    def __init__(self, spec: PaginatorSpec, page_size: int, since: Since) -> None:
        super().__init__(None)
        self._spec = spec
        self._page_size = page_size
        self._since = since
        self._path = tuple(spec.cursor_path.split("."))

    def request_params(self, token: str | None) -> dict[str, t.Any]:
        params = {self._spec.limit_param: self._page_size, **self._since.params()}
        return {**params, self._spec.cursor_param: token} if token else params

    def accept(self, records: list[dict]) -> list[dict]:
        return records

    def get_next(self, response: requests.Response) -> str | None:
        cursor = lookup(body_of(response), self._path)
        if cursor is None or cursor == "":
            return None
        if not isinstance(cursor, (str, int)) or isinstance(cursor, bool):
            msg = f"cursor at '{'.'.join(self._path)}' is a {type(cursor).__name__}"
            raise PayloadError(msg)
        return str(cursor)


class OnePagePaginator(SinglePagePaginator):
    def __init__(self, since: Since) -> None:
        super().__init__()
        self._since = since

    def request_params(self, token: t.Any) -> dict[str, t.Any]:
        return self._since.params()

    def accept(self, records: list[dict]) -> list[dict]:
        return records
