"""Paginators for the three listing shapes of the API, on the SDK's paginator classes."""

from __future__ import annotations

import typing as t

from singer_sdk.pagination import BaseAPIPaginator, OffsetPaginator, SinglePagePaginator

from tap_analytics.payload import PayloadError, body_of, lookup, records_of

if t.TYPE_CHECKING:
    import requests

    from tap_analytics.resources import PaginatorSpec


class AnalyticsOffsetPaginator(OffsetPaginator):
    """`limit`/`offset` pages: ends on a short (or empty) page, or once offset >= total."""

    def __init__(
        self, page_size: int, selector: tuple[str, ...] | None, total_path: str = "total"
    ) -> None:
        super().__init__(start_value=0, page_size=page_size)
        self._selector = selector
        self._total_path = tuple(total_path.split("."))

    def has_more(self, response: requests.Response) -> bool:
        received = len(records_of(response, self._selector))
        if received < self.page_size:
            return False
        total = lookup(body_of(response), self._total_path)
        if isinstance(total, int) and not isinstance(total, bool):
            return self.current_value + received < total
        return True


class CursorPaginator(BaseAPIPaginator["str | None"]):
    """Opaque cursors at `cursor_path`; absent, null or empty means the last page."""

    def __init__(self, cursor_path: str) -> None:
        super().__init__(None)
        self._path = tuple(cursor_path.split("."))

    def get_next(self, response: requests.Response) -> str | None:
        cursor = lookup(body_of(response), self._path)
        if cursor is None or cursor == "":
            return None
        if not isinstance(cursor, (str, int)) or isinstance(cursor, bool):
            msg = f"cursor at '{'.'.join(self._path)}' is a {type(cursor).__name__}"
            raise PayloadError(msg)
        return str(cursor)


def build_paginator(
    spec: PaginatorSpec, page_size: int, selector: tuple[str, ...] | None
) -> BaseAPIPaginator:
    """A fresh paginator for one listing."""
    if spec.type == "offset":
        return AnalyticsOffsetPaginator(page_size, selector, spec.total_path)
    if spec.type == "cursor":
        return CursorPaginator(spec.cursor_path)
    return SinglePagePaginator()
