"""Bookmarks compared as instants, holding only values the API sent.

The SDK compares bookmark values as strings, so `...00Z` then `...00.500Z` (in order as
instants) reads as out of order. Here a timestamp bookmark advances by instant; any other
(an integer sequence, say) by its own order. A bookmark is always a value of a record the
API sent, never one the tap made up: a record dated after the run started (by the tap's
clock: one dated 2099, or an API whose clock runs ahead) is written but does not move the
bookmark, which stays at the last value before it. The API's timestamps are compared only
with each other: a clock behind or ahead of the tap's loses nothing.
"""

from __future__ import annotations

import datetime
import logging
import typing as t

from singer_sdk.exceptions import FatalAPIError
from singer_sdk.streams._state import StreamStateManager

from tap_analytics.payload import is_blank
from tap_analytics.timestamps import to_instant

if t.TYPE_CHECKING:
    from singer_sdk.helpers import types


PROGRESS_MARKERS = "progress_markers"  # the SDK's state layout: its finalize promotes them
LOGGER = logging.getLogger("tap-analytics")


class UnsortedListingError(FatalAPIError):
    """The API listed records out of the order of their bookmark field."""


class BookmarkStateManager(StreamStateManager):
    """Sorted, resumable bookmarks: the SDK's state layout, instants for timestamps."""

    def __init__(self, *, timestamp: bool, run_started: datetime.datetime,
                 output: t.Any = None, is_sorted: bool = False, **kwargs: t.Any) -> None:
        super().__init__(is_sorted=is_sorted, **kwargs)
        self._sorted = is_sorted
        # the tap's writer: a bookmark moves once the records before it are in the output
        self._output = output
        self._due: tuple[dict, str, t.Any] | None = None
        self._timestamp = timestamp
        self._cap = run_started
        self._last_value: t.Any = None  # the last record's value, as sent
        self._previous: t.Any = None  # its position: a sorted listing never goes below it
        self._mark: t.Any = None  # the bookmark's position (None: not looked up yet)
        self._marked = False
        self._capped = False

    def position(self, value: t.Any) -> t.Any:
        return to_instant(value) if self._timestamp else value

    def increment_state(self, latest_record: types.Record, *,
                        context: types.Context | None = None, replication_key: str) -> None:
        """A sorted listing moves its bookmark as it goes (a run stopped midway resumes
        there); any other keeps the highest value in progress markers until its end.

        Records below the bookmark (a lookback window, rows that arrived late) are written
        and leave it where it is.
        """
        value = latest_record.get(replication_key)
        if is_blank(value) or value == self._last_value:
            return  # a tie: nothing moves
        self._last_value = value
        position = self.position(value)
        if self._sorted:
            if self._previous is not None and position < self._previous:
                msg = (f"{self.stream_name}: the API listed '{replication_key}' out of order "
                       f"({value!r} after a later value); its bookmark cannot be trusted")
                raise UnsortedListingError(msg)
            self._previous = position
        if self._timestamp and position > self._cap:
            if not self._capped:
                self._capped = True
                LOGGER.getChild(self.stream_name).warning(
                    "Stream '%s': a record is dated after this run started (%s); the "
                    "bookmark stays at the last value before it, so later changes are "
                    "still read.", self.stream_name, value)
            return
        state = self.get_context_state(context)
        if not self._marked:  # the run's first record: the bookmark it starts from
            self._marked = True
            stored = state.get("replication_key_value")
            self._mark = None if stored is None else self.position(stored)
        if self._mark is not None and position <= self._mark:
            return  # the same instant in another form, or a value below the bookmark
        self._mark = position
        if not self._sorted:
            state = state.setdefault(PROGRESS_MARKERS, {
                "Note": "Progress is not resumable if interrupted."})
        if self._output is None:
            state["replication_key"] = replication_key
            state["replication_key_value"] = value
            return
        if self._due is None:
            self._output.defer(self._apply)
        self._due = (state, replication_key, value)

    def finalize_state(self, state: dict | None = None) -> None:
        """The SDK promotes progress markers here: the records go out first."""
        if self._output is not None:
            self._output.commit()
        super().finalize_state(state)

    def _apply(self) -> None:
        """The last bookmark value whose record is now in the output."""
        if self._due is not None:
            state, key, value = self._due
            self._due = None
            state["replication_key"] = key
            state["replication_key_value"] = value


class ChildProgress:
    """Which parent listings a child stream has finished, so a stopped run resumes past them.

    Kept small: parents are read in the order of their keys (as text), and the state
    holds the key up to which every listing is finished (`after`) plus the few finished
    beyond it (`done`, bounded by the read-ahead window), not an entry per parent ever
    read. It also keeps the run's table version, so that the resumed run's ACTIVATE_VERSION
    keeps the rows the stopped run wrote. A parent added meanwhile below `after` is read by
    the next run; one deleted meanwhile is simply not there to read. The entry is removed
    when the child finishes.
    """

    KEY = "progress"

    def __init__(self, stream_state: dict, lock: t.Any, version: int | None) -> None:
        saved = stream_state.get(self.KEY) or {}
        self.version = saved.get("version", version)
        self._after: str | None = saved.get("after")
        self._done: set[str] = set(saved.get("done", []))
        self._state = stream_state
        self._lock = lock
        self._order: list[str] = []
        self.resumed = bool(saved)

    def todo(self, partitions: list[dict], field: str) -> list[dict]:
        """The listings still to read, in key order."""
        ordered = sorted(partitions, key=lambda p: str(p[field]))
        self._order = [str(p[field]) for p in ordered]
        after = self._after
        return [p for p in ordered
                if not (after is not None and str(p[field]) <= after)
                and str(p[field]) not in self._done]

    def finished(self, key: t.Any) -> None:
        self._done.add(str(key))
        after = self._after
        for value in self._order:
            if after is not None and value <= after:
                continue
            if value not in self._done:
                break
            after = value
        self._after = after
        self._done = {v for v in self._done if after is None or v > after}
        with self._lock:
            self._state[self.KEY] = {"version": self.version, "after": after,
                                     "done": sorted(self._done)}

    def clear(self) -> None:
        with self._lock:
            self._state.pop(self.KEY, None)
