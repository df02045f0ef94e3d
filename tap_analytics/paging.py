"""The paging side of a stream: which paginator reads a listing, where an incremental
listing starts, and the pages of one listing (fetched ahead where the listing allows)."""

from __future__ import annotations

import datetime
import functools
import typing as t

from tap_analytics.keyset import KeysetPaginator
from tap_analytics.pagination import (
    CursorPaginator,
    EndpointPaging,
    OffsetListing,
    OnePagePaginator,
    OverlapOffsetPaginator,
    Page,
    Since,
)
from tap_analytics.payload import PayloadError, records_of
from tap_analytics.timestamps import api_form, to_instant

if t.TYPE_CHECKING:
    import logging
    from concurrent.futures import Future

    import requests
    from singer_sdk.helpers.types import Context
    from singer_sdk.pagination import BaseAPIPaginator

    from tap_analytics.resources import PaginatorSpec


class PagedListing:
    """A mixin of `AnalyticsStream`: `request_pages` of one listing, on the SDK's
    paginator hooks (`get_new_paginator`, `get_url_params`, `parse_response`)."""

    @functools.cached_property
    def endpoint_paging(self) -> EndpointPaging:
        """What this stream's listings (one per parent, for a child) learn of its endpoint."""
        return EndpointPaging()

    @property
    def page_size(self) -> int:
        return self.resource.paginator.limit or self.settings.page_size

    @property
    def keyset(self) -> tuple[str, bool] | None:
        """(bookmark field, is a timestamp) for a listing paged by its bookmark values."""
        resource = self.resource
        if (resource.paginator.type == "offset" and resource.incremental_param
                and self.replication_key and resource.parent is None):
            return self.replication_key, self.is_timestamp_replication_key
        return None

    @property
    def is_sorted(self) -> bool:
        """Offset listings with a bookmark field are read in its order, by keyset (API.md:
        ordered by updated_at, ties by id): their state resumes mid-stream."""
        return self.keyset is not None

    def listing_start(self, context: Context | None) -> t.Any:
        """Where an incremental listing starts: the bookmark, less `lookback_seconds` for a
        timestamp (rows the API made visible after later ones are read on the next run; the
        merge on the primary key absorbs the re-read ones), or `start_date` on a first run."""
        start = self.get_starting_replication_key_value(context)
        lookback = self.settings.lookback_seconds
        if start is None or not lookback or not self.is_timestamp_replication_key:
            return start
        bookmark = self.state_manager.get_context_state(context).get("replication_key_value")
        if bookmark is None or start != bookmark:
            return start  # start_date (later than any bookmark) is where the user said
        return to_instant(start) - datetime.timedelta(seconds=lookback)

    def get_new_paginator(self, context: Context | None = None) -> BaseAPIPaginator:
        resource = self.resource
        keyset = self.keyset
        start = self.listing_start(context) if resource.incremental_param else None
        if keyset is None and start is not None and self.is_timestamp_replication_key:
            start = api_form(to_instant(start))
        # a child's records get their parent's key after paging: page by the others
        key = [k for k in self.primary_keys if k not in (context or {})] or self.primary_keys
        return build_paginator(resource.paginator, self.page_size, key=key, stream=self.name,
                               keyset=keyset, since=Since(resource.incremental_param, start),
                               logger=self.logger,
                               endpoint=self.endpoint_paging if resource.parent else None)

    def get_url_params(self, context: Context | None, next_page_token: Page) -> dict:
        """The resource's fixed parameters and what its paginator asks for this page."""
        return {**self.resource.params, **next_page_token.params()}

    def parse_response(self, response: requests.Response) -> list[dict]:
        # time_extracted of this page's records
        self.extracted_at = datetime.datetime.now(datetime.timezone.utc)
        try:
            return records_of(response, self.resource.data_selector)
        except PayloadError as exc:
            raise PayloadError(f"{self.name}: {exc}") from None

    def request_records(self, context: Context | None) -> t.Iterator[dict]:
        for page in self.request_pages(context):
            yield from page

    def request_pages(self, context: Context | None, *, conform: bool = True
                      ) -> t.Iterator[list[dict]]:
        """Each page of one listing: records stamped with their parent's key, conformed.

        An offset listing, which cannot shift unnoticed (its pages overlap), has its next
        pages fetched ahead, side by side, taken in order (`OffsetListing.planned`).
        """
        paginator = self.get_new_paginator(context)
        stamp = dict(context) if context and self.resource.parent is not None else None
        ahead: dict[t.Any, Future] = {}
        read, announced = 0, None
        with self.get_http_request_counter() as counter:
            counter.with_context(context)
            while not paginator.finished:
                self.analytics_tap.runner.check()
                token = paginator.current_value
                future = ahead.pop(_asked(paginator, token), None)
                response = future.result() if future else self.fetch(
                    context, Page(paginator, token))
                counter.increment()
                records = paginator.accept(self.parse_response(response))
                read += len(records)
                if isinstance(paginator, OffsetListing):
                    announced = paginator.announced(response)
                if records:
                    if stamp:
                        for record in records:
                            record.update(stamp)
                    yield self.conformer.conform_page(records) if conform else records
                paginator.advance(response)
                if isinstance(paginator, OffsetListing) and not paginator.finished:
                    self._fetch_ahead(context, paginator, response, ahead)
        for future in ahead.values():
            future.cancel()
        if announced is not None and context is None:
            # read by the orchestrator (orchestrate/run_report.py): its `exact` check
            self.logger.info("%s: listing read, %d records of the %d the API announced",
                             self.name, read, announced)

    def _fetch_ahead(self, context: Context | None, paginator: OffsetListing,
                     response: requests.Response, ahead: dict[t.Any, Future]) -> None:
        """Keep the listing's planned pages in flight (a bounded window), nearest first."""
        planned = {_asked(paginator, t_): t_ for t_ in
                   paginator.planned(response, self.settings.max_concurrency)}
        for asked in [a for a in ahead if a not in planned]:
            ahead.pop(asked).cancel()  # the listing was started again: plans changed
        pool = self.analytics_tap.page_pool
        for rank, (asked, token) in enumerate(planned.items()):
            if asked not in ahead:
                ahead[asked] = pool.submit(rank, self.fetch, context, Page(paginator, token))


def _asked(paginator: OffsetListing, token: t.Any) -> tuple:
    """What a page's request asks: two tokens asking the same page share one request."""
    return tuple(sorted(paginator.request_params(token).items()))


def build_paginator(spec: PaginatorSpec, page_size: int, *, key: t.Sequence[str], stream: str,
                    keyset: tuple[str, bool] | None = None, since: Since | None = None,
                    logger: logging.Logger | None = None,
                    endpoint: EndpointPaging | None = None) -> BaseAPIPaginator:
    """A fresh paginator for one listing; `keyset` is (bookmark field, is a timestamp) for a
    listing read by its bookmark values (`since.value` the raw start), `since` otherwise
    the incremental parameter every request carries."""
    since = since or Since()
    if spec.type == "offset" and keyset is not None:
        field, timestamp = keyset
        return KeysetPaginator(since.value, spec, page_size, since.param, field, timestamp,
                               stream, logger)
    if spec.type == "offset":
        return OverlapOffsetPaginator(spec, page_size, key, stream, logger, endpoint)
    if spec.type == "cursor":
        return CursorPaginator(spec, page_size, since)
    return OnePagePaginator(since)
