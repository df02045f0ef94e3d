"""The record side of a stream: records fitted to the schema in force (`conform.py`), and
a schema that grew put in force before the first record that needs it (SCHEMA message,
stream maps registered anew). Through public SDK hooks: `schema`, `effective_schema` and
`stream_maps` return the published schema and its maps."""

from __future__ import annotations

import typing as t

from singer_sdk.helpers._catalog import get_selected_schema

from tap_analytics.conform import Conformer
from tap_analytics.output import record_maps, write_records

if t.TYPE_CHECKING:
    from singer_sdk.mapper import StreamMap


class SchemaPublication:
    """A mixin of `AnalyticsStream`."""

    conformer: Conformer | None = None
    discovered_schema: dict | None = None  # what discovery learned from the API
    _published: dict | None = None  # the schema in force once the conformer changed it
    _published_version = 0
    _maps: list | None = None
    _schema_due = False  # the SDK asked for the SCHEMA; it goes out with the first record

    @property
    def schema(self) -> dict:
        for schema in (self._published, self.discovered_schema):
            if schema is not None:
                return schema
        return super().schema

    @property
    def effective_schema(self) -> dict:
        return self._published if self._published is not None else super().effective_schema

    @property
    def stream_maps(self) -> list[StreamMap]:
        if self._published is not None:  # registered anew with the published schema
            return self.analytics_tap.mapper.stream_maps[self.name]
        return super().stream_maps

    def start_conformer(self) -> Conformer:
        """The schema in force when the stream's SCHEMA message goes out (version 0)."""
        if self.conformer is None:
            fixed = [*self.primary_keys, *([self.replication_key] if self.replication_key else [])]
            tap = self.analytics_tap
            self.conformer = Conformer(self.name, self.effective_schema, fixed=fixed,
                                       contract=self.settings.schema_contract, mask=self.mask,
                                       logger=self.logger,
                                       learning=tap.input_catalog is None
                                       or not self.settings.discovery_sampling,
                                       memory=self.stream_state.setdefault("types", {}),
                                       utc=self.settings.utc_timestamps,
                                       cursor=self.replication_key and (
                                           self.replication_key,
                                           self.settings.on_cursor_value_missing))
        return self.conformer

    def _write_record_message(self, record: dict) -> None:
        """The SDK's record path, with the stream-map work decided once per schema version."""
        if (self._schema_due or self.conformer.version != self._published_version
                or self._maps is None):
            self._publish_schema()
        write_records(self._maps, record, self._stream_version, self.extracted_at)
        self.state_manager.is_flushed = False

    def _publish_schema(self) -> None:
        """Put a schema the conformer grew in force: stream maps, then a SCHEMA message."""
        if self._adopt_schema() or self._schema_due:
            self._schema_due = False
            super()._write_schema_message()
        self._maps = record_maps(self.stream_maps, self.analytics_tap.message_writer)

    def _write_schema_message(self) -> None:
        """The SDK asks for the stream's SCHEMA before its first page is read: it goes out
        with the first record instead (or when the listing ends empty), so that it already
        holds the fields that page taught the conformer, and the types remembered from
        earlier runs. A target then creates the table with every column at once, instead
        of creating it and altering it (and, for target-postgres, re-making its sink) when
        a second SCHEMA follows."""
        self.start_conformer()
        self._schema_due = True

    def tell_missing_cursor_values(self) -> None:
        """Once per stream and run: how many records had no bookmark value."""
        count = self.conformer.missing_cursor if self.conformer else 0
        if count:
            mode = self.settings.on_cursor_value_missing
            done = "dropped" if mode == "exclude" else "written with a null"
            self.logger.warning(
                "Stream '%s': %d records had no '%s' (null, missing or empty): %s; they do not "
                "move the bookmark (on_cursor_value_missing %s).", self.name, count,
                self.replication_key, done, mode)

    def publish_pending_schema(self) -> None:
        """The SCHEMA of a listing that ended before any record (targets still create the
        table, and an ACTIVATE_VERSION needs it first)."""
        if self._schema_due:
            self._publish_schema()

    def _adopt_schema(self) -> bool:
        """The conformer's schema as the stream's, its maps registered anew if it changed."""
        version, schema = self.conformer.snapshot()
        if version == self._published_version:
            return False
        self._published = schema
        self.analytics_tap.mapper.register_raw_stream_schema(
            self.name, get_selected_schema(self.name, schema, self.mask), self.primary_keys)
        self._published_version = version
        return True
