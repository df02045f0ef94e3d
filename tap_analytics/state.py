"""Bookmarks compared as instants, and never later than the run's start.

The SDK compares bookmark values as strings, so `...00Z` then `...00.500Z` (in order as
instants) reads as out of order, and one record dated 2099 would become a bookmark that
hides every later change. Here a timestamp bookmark advances by instant and stops at the
moment the run started; any other bookmark (an integer sequence, say) by its own order.
"""

from __future__ import annotations

import datetime
import typing as t

from singer_sdk.exceptions import FatalAPIError
from singer_sdk.helpers._state import PROGRESS_MARKERS
from singer_sdk.streams._state import StreamStateManager

from tap_analytics.timestamps import state_form, to_instant

if t.TYPE_CHECKING:
    from singer_sdk.helpers import types


class UnsortedListingError(FatalAPIError):
    """The API listed records out of the order of their bookmark field."""


class BookmarkStateManager(StreamStateManager):
    """Sorted, resumable bookmarks: the SDK's state layout, instants for timestamps."""

    def __init__(self, *, timestamp: bool, run_started: datetime.datetime,
                 **kwargs: t.Any) -> None:
        super().__init__(**kwargs)
        self._timestamp = timestamp
        self._cap = run_started
        self._cap_text = state_form(run_started)
        self._parsed: tuple[t.Any, t.Any] = (None, None)  # (stored value, its position)
        self._capped = False

    def position(self, value: t.Any) -> t.Any:
        return to_instant(value) if self._timestamp else value

    def increment_state(self, latest_record: types.Record, *,
                        context: types.Context | None = None, replication_key: str) -> None:
        """A sorted listing moves its bookmark as it goes (a run stopped midway resumes
        there); any other keeps the highest value in progress markers until its end."""
        value = latest_record.get(replication_key)
        if value is None:
            return
        state = self.get_context_state(context)
        if not self._is_sorted:
            state = state.setdefault(PROGRESS_MARKERS, {
                "Note": "Progress is not resumable if interrupted."})
        stored = state.get("replication_key_value")
        if stored is not None and self._parsed[0] != stored:
            self._parsed = (stored, self.position(stored))
        position = self.position(value)
        if self._timestamp and position > self._cap:
            position, value = self._cap, self._cap_text
            if not self._capped:
                self._capped = True
                self._logger.warning(
                    "Stream '%s': a record is dated after this run started (%s); the "
                    "bookmark stops at the run's start so later changes are still read.",
                    self.stream_name, latest_record.get(replication_key))
        if stored is not None and position < self._parsed[1]:
            if not self._is_sorted or self._parsed[1] == self._cap:
                return  # the highest value stays
            msg = (f"{self.stream_name}: the API listed '{replication_key}' out of order "
                   f"({latest_record.get(replication_key)!r} after {stored!r}); its "
                   "bookmark cannot be trusted")
            raise UnsortedListingError(msg)
        state["replication_key"] = replication_key
        state["replication_key_value"] = value
        self._parsed = (value, position)
