"""What the tap relies on in the Singer SDK's private members, one named test each.

The tap uses public hooks where the SDK has them (`state_manager`, `schema`,
`effective_schema`, `stream_maps`, `state_writer`, `tap_state`, the backoff and request
hooks). The private members left, and why no public way does the job:

- `Stream._write_record_message` (publication.py): the record path, stream maps decided
  once per schema version (13% less CPU per record than the SDK's).
- `Stream._write_schema_message`, `_write_state_message`, `_write_activate_version_message`,
  `_stream_version` (publication.py, children.py, client.py): a SCHEMA when the schema
  grows, a STATE after each child listing, ACTIVATE_VERSION only after a whole listing.
- `RESTStream._request` (retries.py): one page's request inside the SDK's backoff,
  authenticated per attempt.
- `Tap.sync_all`'s steps, `_reset_state_progress_markers` and
  `_set_compatible_replication_methods` (tap.py): `sync_all` is final, and streams side by
  side reimplement it from its steps.
- `Tap._validate_config`, `_config` (tap.py): the tap's one-line checks before the SDK's.
- `Tap._handle_termination` (tap.py): the signal handler, a final STATE after the line
  being written.
- `helpers._catalog.get_selected_schema`, `pop_deselected_record_properties`
  (publication.py, conform.py): selection applied to a schema that grows.

A new SDK release that changes one of these fails here, by name, before anything subtler
breaks; `scripts/sdk_next.sh` runs this file against the newest release a widened pin
allows.
"""

from __future__ import annotations

import inspect

from singer_sdk import Stream, Tap
from singer_sdk.helpers._catalog import get_selected_schema, pop_deselected_record_properties
from singer_sdk.helpers._state import PROGRESS_MARKERS
from singer_sdk.singerlib import SelectionMask
from singer_sdk.streams import RESTStream
from singer_sdk.streams._state import StreamStateManager
from singer_sdk.streams.rest import PageContext

from tap_analytics.tap import TapAnalytics
from tests.unit_support import make_tap


def source(function: object) -> str:
    return inspect.getsource(function)  # type: ignore[arg-type]


def test_sync_records_writes_a_record_before_moving_its_bookmark() -> None:
    """client._write_record_message replaces the SDK's; state moves after the write."""
    body = source(Stream._sync_records)
    assert body.index("self._write_record_message(record)") < body.index(
        "self._increment_stream_state(record")
    assert "_write_state_message()" in body  # every STATE_MSG_FREQUENCY records, and last


def test_increment_stream_state_goes_through_the_state_manager() -> None:
    """state.BookmarkStateManager.increment_state takes over the comparison."""
    assert "self.state_manager.increment_state(" in source(Stream._increment_stream_state)
    parameters = inspect.signature(StreamStateManager.increment_state).parameters
    assert list(parameters) == ["self", "latest_record", "context", "replication_key"]
    init = inspect.signature(StreamStateManager.__init__).parameters
    assert {"stream_name", "tap_state", "state_partitioning_keys", "is_sorted",
            "check_sorted", "tap_name"} <= set(init)
    assert "finalize_state_progress_markers(state)" in source(StreamStateManager.finalize_state)


def test_progress_markers_key() -> None:
    """state.PROGRESS_MARKERS is the tap's own copy of the SDK's key."""
    from tap_analytics.state import PROGRESS_MARKERS as OURS

    assert PROGRESS_MARKERS == OURS == "progress_markers"


def test_public_hooks_the_tap_overrides() -> None:
    """publication.py returns the published schema and the maps registered for it; the
    SDK's own properties read the same places."""
    stream = make_tap().streams["contacts"]
    for name in ("schema", "effective_schema", "state_manager", "tap_state", "_stream_version"):
        assert hasattr(stream, name), name
    assert isinstance(Stream.stream_maps, property)
    assert "self._tap.mapper.stream_maps[self.name]" in source(
        Stream.stream_maps.fget)  # type: ignore[attr-defined]
    assert "self._tap.state_writer.write_state(" in source(Stream._write_state_message)
    assert isinstance(Tap.state_writer, property)


def test_stream_writers_the_tap_calls() -> None:
    for name in ("_write_state_message", "_write_schema_message",
                 "_write_activate_version_message"):
        assert callable(getattr(Stream, name)), name
    assert "_stream_version" in source(Stream.sync)
    assert "self.emit_activate_version_messages" in source(Stream.sync)


def test_rest_request_and_page_context() -> None:
    """retries.fetch calls _request(prepared, context) through request_decorator."""
    assert list(inspect.signature(RESTStream._request).parameters) == [
        "self", "prepared_request", "context"]
    assert "allow_redirects=self.allow_redirects" in source(RESTStream._request)
    assert list(inspect.signature(PageContext).parameters)[:2] == [
        "stream_context", "next_page_token"]


def test_tap_private_members_the_tap_uses() -> None:
    """sync_all is reimplemented (streams side by side) from these steps; _validate_config
    gets our checks first; _handle_termination is the signal handler."""
    body = source(Tap.sync_all)
    for step in ("self._reset_state_progress_markers()",
                 "self._set_compatible_replication_methods()",
                 "stream.finalize_state_progress_markers()", "stream.log_sync_costs()"):
        assert step in body, step
    tap = make_tap()
    assert hasattr(tap, "_config")
    assert "raise_errors" in inspect.signature(Tap._validate_config).parameters
    assert "self._handle_termination" in source(Tap._setup_signal_handlers)
    assert "validate_config=cls.dynamic_catalog" in source(Tap.cb_discover)
    assert "tap.run_discovery()" in source(Tap.cb_discover)


def test_catalog_helpers() -> None:
    schema = {"properties": {"a": {"type": "string"}, "b": {"type": "string"}}}
    mask = SelectionMask({(): True, ("properties", "b"): False})
    assert set(get_selected_schema("s", schema, mask)["properties"]) == {"a"}
    record = {"a": 1, "b": 2, "c": 3}
    pop_deselected_record_properties(record, schema, mask)
    assert record == {"a": 1, "c": 3}  # unknown properties follow the stream's selection


def test_the_tap_class_still_overrides_what_it_means_to() -> None:
    overridden = {name for name, value in vars(TapAnalytics).items() if callable(value)}
    assert {"sync_all", "_validate_config", "_handle_termination", "run_discovery",
            "discover_streams"} <= overridden
