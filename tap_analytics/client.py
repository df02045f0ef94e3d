"""The one base stream: every stream of the tap is an AnalyticsStream with a Resource."""

from __future__ import annotations

import datetime
import email.utils
import logging
import random
import time
import typing as t
from concurrent.futures import Future
from urllib.parse import urlparse

import requests
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.helpers._catalog import get_selected_schema
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.streams import RESTStream
from singer_sdk.streams.rest import PageContext

from tap_analytics.auth import ClientCredentialsAuthenticator, TokenRefusedError
from tap_analytics.conform import Conformer
from tap_analytics.fanout import Finished, fan_out
from tap_analytics.http import RedirectRefusedError
from tap_analytics.output import BufferedMsgSpecWriter, record_maps, write_records
from tap_analytics.pagination import (
    KeysetToken,
    OffsetToken,
    OverlapOffsetPaginator,
    build_paginator,
)
from tap_analytics.payload import PayloadError, body_of, records_of
from tap_analytics.redact import redact
from tap_analytics.state import BookmarkStateManager, ChildProgress
from tap_analytics.timestamps import api_form, to_instant

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context
    from singer_sdk.pagination import BaseAPIPaginator

    from tap_analytics.resources import Resource
    from tap_analytics.settings import Settings

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_SECONDS = 120.0
JITTER_SHARE = 0.1


class PartitionGoneError(FatalAPIError):
    """A child listing answered 404: its parent was deleted after it was listed."""


def retry_after_seconds(exc: BaseException | None) -> float | None:
    """The wait a 429/5xx asked for in `Retry-After` (seconds or an HTTP date)."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


class AnalyticsStream(RESTStream[t.Any]):
    """Shared behaviour of all streams; a subclass only names its `resource`."""

    resource: t.ClassVar[Resource]
    STATE_MSG_FREQUENCY = 1000
    # Records are JSON as decoded; the Conformer fits them to the schema, once per page.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(self, tap: t.Any, schema: dict | None = None) -> None:
        resource = self.resource
        super().__init__(tap=tap, name=resource.name, schema=schema, path=resource.path)
        self.primary_keys = list(resource.primary_key)
        self.replication_key = resource.replication_key
        if resource.parent is not None:
            self.state_partitioning_keys = []
        self._pending_partitions: list[dict] = []
        self.conformer: Conformer | None = None
        self._published_version = 0
        self._maps: list[tuple[str, t.Any]] | None = None
        self.extracted_at = datetime.datetime.now(datetime.timezone.utc)

    # --- configuration -------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self._tap.settings

    @property
    def url_base(self) -> str:
        return self.settings.url_base

    @property
    def authenticator(self) -> t.Any:
        return self._tap.authenticator

    @property
    def requests_session(self) -> requests.Session:
        return self._tap.sessions.get()

    @property
    def timeout(self) -> float:  # type: ignore[override]
        return self.settings.request_timeout

    @property
    def is_sorted(self) -> bool:
        """Offset listings with a bookmark field are read in its order, by keyset (API.md:
        ordered by updated_at, ties by id): their state resumes mid-stream."""
        return self.keyset is not None

    def get_replication_key_signpost(self, context: Context | None = None) -> None:
        """None: bookmarks are capped at the run's start by the state manager, by instant
        (the SDK's signpost compares strings)."""
        return None

    @property
    def page_size(self) -> int:
        return self.resource.paginator.limit or self.settings.page_size

    # --- requests ------------------------------------------------------------------

    @property
    def keyset(self) -> tuple[str, bool] | None:
        """(bookmark field, is a timestamp) for a listing paged by its bookmark values."""
        resource = self.resource
        if (resource.paginator.type == "offset" and resource.incremental_param
                and self.replication_key and resource.parent is None):
            return self.replication_key, self.is_timestamp_replication_key
        return None

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
        keyset = self.keyset
        since = self.listing_start(context) if keyset else None
        # a child's records get their parent's key after paging: page by the others
        key = [k for k in self.primary_keys if k not in (context or {})] or self.primary_keys
        return build_paginator(self.resource.paginator, self.page_size,
                               self.resource.data_selector, key=key,
                               stream=self.name, keyset=keyset, since=since)

    @property
    def state_manager(self) -> BookmarkStateManager:
        """The SDK's state layout, with bookmarks compared as instants and capped."""
        if self._state_manager is None:
            started = datetime.datetime.fromtimestamp(self._tap.initialized_at / 1000,
                                                      tz=datetime.timezone.utc)
            self._state_manager = BookmarkStateManager(
                tap_name=self.tap_name, stream_name=self.name, tap_state=self._tap_state,
                state_partitioning_keys=self.state_partitioning_keys,
                is_sorted=self.is_sorted, check_sorted=self.check_sorted,
                timestamp=bool(self.replication_key) and self.is_timestamp_replication_key,
                run_started=started, output=self._tap.message_writer
                if isinstance(self._tap.message_writer, BufferedMsgSpecWriter) else None)
        return self._state_manager

    def build_prepared_request(self, *args: t.Any, **kwargs: t.Any) -> requests.PreparedRequest:
        """Prepare without authenticating: `_request` authenticates each attempt inside the
        retry loop, so a token endpoint that fails transiently is retried too."""
        return self.requests_session.prepare_request(requests.Request(*args, **kwargs))

    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict:
        resource = self.resource
        spec = resource.paginator
        params: dict[str, t.Any] = dict(resource.params)
        if spec.type != "single_page":
            params[spec.limit_param] = self.page_size
        token = next_page_token
        if isinstance(token, KeysetToken):
            params[spec.offset_param] = token.offset
            if token.since is not None:
                params[resource.incremental_param] = token.since
            return params
        if spec.type == "offset":
            params[spec.offset_param] = token.offset if isinstance(token, OffsetToken) else 0
        elif spec.type == "cursor" and token:
            params[spec.cursor_param] = token
        if resource.incremental_param:
            start = self.listing_start(context)
            if start is not None:
                timestamp = self.is_timestamp_replication_key
                params[resource.incremental_param] = api_form(to_instant(start)) if timestamp \
                    else start
        return params

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

        An offset listing that states its `total` and cannot shift unnoticed (its pages
        overlap) has its further pages fetched side by side, taken in order.
        """
        paginator = self.get_new_paginator(context)
        stamp = dict(context) if context and self.resource.parent is not None else None
        ahead: dict[t.Any, Future] = {}
        with self.get_http_request_counter() as counter:
            counter.with_context(context)
            while not paginator.finished:
                self._tap.runner.check()
                token = paginator.current_value
                future = ahead.pop(token, None)
                response = future.result() if future else self._fetch(context, token)
                counter.increment()
                records = paginator.accept(self.parse_response(response))
                if records:
                    if stamp:
                        for record in records:
                            record.update(stamp)
                    yield self.conformer.conform_page(records) if conform else records
                paginator.advance(response)
                if isinstance(paginator, OverlapOffsetPaginator) and not paginator.finished:
                    self._fetch_ahead(context, paginator, response, ahead)
        for future in ahead.values():
            future.cancel()

    def _fetch(self, context: Context | None, token: t.Any) -> requests.Response:
        """One request for one page, with the SDK's retries, auth and checks."""
        http_request = self.get_http_request(
            page=PageContext(stream_context=context, next_page_token=token))
        prepared = self.build_prepared_request(
            method=http_request.method, url=http_request.url,
            params=http_request.encode_params(), headers=http_request.headers)
        response = self.request_decorator(self._request)(prepared, context)
        self.update_sync_costs(prepared, response, context)
        return response

    def _fetch_ahead(self, context: Context | None, paginator: OverlapOffsetPaginator,
                     response: requests.Response, ahead: dict[t.Any, Future]) -> None:
        """Keep the next pages of a listing with a known end in flight (a bounded window)."""
        planned = paginator.planned(response, self.settings.max_concurrency)
        for token in [t_ for t_ in list(ahead) if t_ not in planned]:
            ahead.pop(token).cancel()  # the listing was started again: plans changed
        pool = self._tap.page_pool
        for token in planned:
            if token not in ahead:
                ahead[token] = pool.submit(self._fetch, context, token)

    def validate_response(self, response: requests.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        message = f"{self.name}: {self._describe(response)}"
        if status in TRANSIENT_STATUSES or status >= 500:
            raise RetriableAPIError(message, response)
        if status == 401 and isinstance(self.authenticator, ClientCredentialsAuthenticator):
            token = self.authenticator.current_token(response.request)
            raise TokenRefusedError(message, token)
        if status == 404 and self.resource.parent is not None:
            raise PartitionGoneError(message)
        raise FatalAPIError(message)

    def _describe(self, response: requests.Response) -> str:
        detail = ""
        try:
            body = body_of(response)
        except FatalAPIError:
            body = None
        if isinstance(body, dict):
            parts = [str(body[k]) for k in ("error", "message") if isinstance(body.get(k), str)]
            detail = ": " + " - ".join(parts) if parts else ""
        path = urlparse(response.url).path
        return f"GET {path} answered {response.status_code} {response.reason}{detail}"

    def request_decorator(self, func: t.Callable) -> t.Callable:
        """Renew a refused OAuth token once per attempt; mask secrets in transport errors."""

        def attempt(prepared: requests.PreparedRequest, context: Context | None) -> t.Any:
            try:
                try:
                    return func(prepared, context)
                except TokenRefusedError as exc:
                    self.authenticator.invalidate(exc.token)
                    self.logger.warning("%s: access token refused, renewing it once", self.name)
                    return func(prepared, context)
            except requests.RequestException as exc:
                # urllib3 puts the full URL, query string and key included, in its messages
                raise type(exc)(f"{self.name}: {redact(str(exc))}") from None
            except RedirectRefusedError as exc:
                raise RedirectRefusedError(f"{self.name}: {exc}") from None

        return super().request_decorator(attempt)

    # --- retries -------------------------------------------------------------------

    def backoff_max_tries(self) -> int:
        return self.settings.max_retries + 1

    def backoff_wait_generator(self) -> t.Generator[float, t.Any, None]:
        """factor * 2**(n-1) before retry n, or exactly what Retry-After asks for."""
        factor = self.settings.backoff_factor
        exc = yield  # type: ignore[misc]
        retry = 0
        while True:
            asked = retry_after_seconds(exc)
            if asked is not None:
                wait = asked
                self._tap.sessions.budget.gate.pause(asked)  # every thread waits it out
            else:
                base = factor * 2**retry
                wait = base + random.uniform(0, min(1.0, base * JITTER_SHARE))
            retry += 1
            exc = yield wait

    def backoff_jitter(self, value: float) -> float:
        return value  # jitter is added by backoff_wait_generator, never to Retry-After

    def backoff_handler(self, details: t.Any) -> None:
        exc = details.get("exception")
        response = getattr(exc, "response", None)
        cause = f"status {response.status_code}" if response is not None else type(exc).__name__
        self.log(
            "%s: GET %s failed (%s); retry %d of %d in %.2fs",
            self.name, self.path, cause, details.get("tries", 0),
            self.settings.max_retries, details.get("wait", 0.0), level=logging.WARNING,
        )

    # --- records -------------------------------------------------------------------

    def _write_record_message(self, record: dict) -> None:
        """The SDK's record path, with the stream-map work decided once per schema version."""
        if self.conformer.version != self._published_version or self._maps is None:
            self._publish_schema()
        write_records(self._maps, record, self._stream_version, self.extracted_at)
        self.state_manager.is_flushed = False

    def _publish_schema(self) -> None:
        """Put a schema the conformer grew in force: stream maps, then a SCHEMA message."""
        if self._adopt_schema():
            super()._write_schema_message()
        self._maps = record_maps(self.stream_maps, self._tap.message_writer)

    def _write_schema_message(self) -> None:
        """The stream's first SCHEMA already carries the types remembered from earlier runs
        (targets create or check their columns on it)."""
        self.start_conformer()
        self._adopt_schema()
        super()._write_schema_message()

    def _adopt_schema(self) -> bool:
        """The conformer's schema as the stream's, its maps registered anew if it changed."""
        version, schema = self.conformer.snapshot()
        if version == self._published_version:
            return False
        self._schema = schema
        if self._input_schema is not None:
            self._input_schema = schema
        self._tap.mapper.register_raw_stream_schema(
            self.name, get_selected_schema(self.name, schema, self.mask), self.primary_keys)
        self._stream_maps = None
        self._published_version = version
        return True

    def start_conformer(self) -> Conformer:
        """The schema in force when the stream's SCHEMA message goes out (version 0)."""
        if self.conformer is None:
            fixed = [*self.primary_keys, *([self.replication_key] if self.replication_key else [])]
            self.conformer = Conformer(self.name, self.effective_schema, fixed=fixed,
                                       contract=self.settings.schema_contract, mask=self.mask,
                                       logger=self.logger,
                                       learning=self._tap.input_catalog is None
                                       or not self.settings.discovery_sampling,
                                       memory=self.stream_state.setdefault("types", {}))
        return self.conformer

    @property
    def emit_activate_version_messages(self) -> bool:
        """Never at the start, as the SDK would: `get_records` sends it once all is written."""
        return False

    @property
    def versioned(self) -> bool:
        """A full-table stream whose target drops rows the API no longer lists."""
        return (self.settings.emit_activate_version_messages
                and self.replication_method == "FULL_TABLE")

    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        self.start_conformer()
        progress = None
        if self.resource.parent is not None:
            progress = ChildProgress(self.stream_state, self._tap.message_writer.lock,
                                     self._tap.initialized_at)
        if self.versioned and self._stream_version is None:
            # ms, so two runs never share one; a resumed child keeps its stopped run's
            self._stream_version = progress.version if progress else self._tap.initialized_at
        try:
            if progress is None:
                yield from self.request_records(context)
            else:
                yield from self._child_records(progress)
        except Exception:
            self._write_state_message()  # keep what was finished before failing
            raise
        if progress is not None:
            progress.clear()
        if self.versioned:
            # Only a listing read to its end retires the rows of earlier versions: a failed
            # run never leaves a table emptier than it was.
            self._write_activate_version_message(self._stream_version)
        self._sync_collected_children()

    def _child_records(self, progress: ChildProgress) -> t.Iterator[dict]:
        """Every parent's listing not finished yet, side by side; a finished listing is
        recorded in the state at once (all its records are written by then)."""
        partitions, self._pending_partitions = self._pending_partitions, []
        field = self.resource.parent.placeholder
        todo = progress.todo(partitions, field)
        if progress.resumed:
            self.logger.info("Stream '%s' resumes: %d of %d parent listings left to read.",
                             self.name, len(todo), len(partitions))
        workers = self.settings.max_concurrency
        for item in fan_out(todo, self._partition_records, workers, window=4 * workers):
            if isinstance(item, Finished):
                self._tap.message_writer.commit()  # the listing's records are out first
                progress.finished(item.partition[field])
                self.state_manager.is_flushed = False
                self._write_state_message()
            else:
                yield item

    def _partition_records(self, context: dict) -> t.Iterator[dict]:
        """One child listing (its records are stamped with the parent's key)."""
        try:
            yield from self.request_records(context)
        except PartitionGoneError as exc:
            self.logger.warning("%s; skipping %s (its parent is gone)", exc, context)

    def generate_child_contexts(self, record: dict, context: Context | None
                                ) -> t.Iterable[Context | None]:
        """Collect child partitions instead of syncing each child per record.

        A record the primary stream map filters out (`__filter__`) has no children read.
        """
        if not self.child_streams or not self.stream_maps[0].get_filter_result(record):
            return ()
        for child in self.child_streams:
            spec = child.resource.parent
            if spec.field not in record:
                msg = f"{self.name}: record has no {spec.field!r} for child {child.name!r}"
                raise FatalAPIError(msg)
            child._pending_partitions.append({spec.placeholder: record[spec.field]})
        return ()

    def _sync_collected_children(self) -> None:
        for child in self.child_streams:
            if child.selected or child.has_selected_descendents:
                child.sync()
            child._pending_partitions = []
