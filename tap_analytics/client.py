"""The one base stream: every stream of the tap is an AnalyticsStream with a Resource.

It is assembled from parts, each a mixin on the SDK's RESTStream hooks:

- `retries.RetryingRequests`: one page's request, its errors and retries;
- `paging.PagedListing`: which paginator reads a listing, and its pages;
- `publication.SchemaPublication`: records fitted to the schema in force, SCHEMA messages;
- `children.ChildListings`: child listings collected from a parent, read side by side.

What is left here: configuration, the bookmark manager, and `get_records`, the order in
which a listing, its children, its state and its ACTIVATE_VERSION go out.
"""

from __future__ import annotations

import datetime
import typing as t

import requests
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.streams import RESTStream

from tap_analytics.children import ChildListings
from tap_analytics.output import BufferedMsgSpecWriter
from tap_analytics.paging import PagedListing
from tap_analytics.publication import SchemaPublication
from tap_analytics.retries import RetryingRequests
from tap_analytics.state import BookmarkStateManager, ChildProgress

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

    from tap_analytics.resources import Resource
    from tap_analytics.settings import Settings
    from tap_analytics.tap import TapAnalytics


class AnalyticsStream(RetryingRequests, PagedListing, SchemaPublication, ChildListings,
                      RESTStream[t.Any]):
    """Shared behaviour of all streams; a subclass only names its `resource`."""

    resource: t.ClassVar[Resource]
    STATE_MSG_FREQUENCY = 1000
    # Records are JSON as decoded; the Conformer fits them to the schema, once per page.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(self, tap: TapAnalytics, schema: dict | None = None) -> None:
        resource = self.resource
        self.analytics_tap = tap  # the SDK keeps it untyped, in a private attribute
        super().__init__(tap=tap, name=resource.name, schema=schema, path=resource.path)
        self.primary_keys = list(resource.primary_key)
        self.replication_key = resource.replication_key
        if resource.parent is not None:
            self.state_partitioning_keys = []
        self.pending_partitions: list[dict] = []
        self.extracted_at = datetime.datetime.now(datetime.timezone.utc)
        self._bookmarks: BookmarkStateManager | None = None
        self._state_apart = False

    @property
    def settings(self) -> Settings:
        return self.analytics_tap.settings

    @property
    def url_base(self) -> str:
        return self.settings.url_base

    @property
    def authenticator(self) -> t.Any:
        return self.analytics_tap.authenticator

    @property
    def requests_session(self) -> requests.Session:
        return self.analytics_tap.sessions.get()

    @property
    def timeout(self) -> float:  # type: ignore[override]
        return self.settings.request_timeout

    def get_replication_key_signpost(self, context: Context | None = None) -> None:
        """None: the bookmark manager keeps bookmarks at values the API sent before the
        run started, by instant (the SDK's signpost compares strings)."""
        return None

    @property
    def state_manager(self) -> BookmarkStateManager:
        """The SDK's state layout, with bookmarks compared as instants."""
        if self._bookmarks is None:
            tap = self.analytics_tap
            started = datetime.datetime.fromtimestamp(tap.initialized_at / 1000,
                                                      tz=datetime.timezone.utc)
            writer = tap.message_writer
            self._bookmarks = BookmarkStateManager(
                tap_name=self.tap_name, stream_name=self.name,
                tap_state={} if self._state_apart else self.tap_state,
                state_partitioning_keys=self.state_partitioning_keys,
                is_sorted=self.is_sorted, check_sorted=self.check_sorted,
                timestamp=bool(self.replication_key) and self.is_timestamp_replication_key,
                run_started=started,
                output=writer if isinstance(writer, BufferedMsgSpecWriter) else None)
        return self._bookmarks

    def keep_state_apart(self) -> None:
        """Read only for its children (not selected, decided when the sync starts): a
        state of its own for the run, so it reads its whole listing and the tap's state
        keeps its entry as it came in (nothing claims it was synced)."""
        self._state_apart = True
        self._bookmarks = None

    @property
    def emit_activate_version_messages(self) -> bool:
        """Never at the start, as the SDK would: `get_records` sends it once all is written."""
        return False

    @property
    def versioned(self) -> bool:
        """A full-table stream whose target drops rows the API no longer lists: one read
        whole every run. Not a child of an incremental parent (or grandparent): it reads
        only the children of the parents that changed, and the target would drop the rest."""
        if not (self.settings.emit_activate_version_messages
                and self.replication_method == "FULL_TABLE"):
            return False
        parent = self.parent_stream_type
        while parent is not None:
            if self.analytics_tap.streams[parent.resource.name].replication_method != "FULL_TABLE":
                return False
            parent = parent.parent_stream_type
        return True

    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        self.start_conformer()
        tap = self.analytics_tap
        progress = None
        if self.resource.parent is not None:
            progress = ChildProgress(self.stream_state, tap.message_writer.lock,
                                     tap.initialized_at)
        if self.versioned and self._stream_version is None:
            # ms, so two runs never share one; a resumed child keeps its stopped run's
            self._stream_version = progress.version if progress else tap.initialized_at
        try:
            if progress is None:
                yield from self.request_records(context)
            else:
                yield from self.child_records(progress)
        except Exception:
            self._write_state_message()  # keep what was finished before failing
            raise
        self.publish_pending_schema()
        self.tell_missing_cursor_values()
        if progress is not None:
            progress.clear()
        if self.versioned and self.selected:  # a parent read only for its children: nothing
            # Only a listing read to its end retires the rows of earlier versions: a failed
            # run never leaves a table emptier than it was.
            self._write_activate_version_message(self._stream_version)
        self.sync_collected_children()
