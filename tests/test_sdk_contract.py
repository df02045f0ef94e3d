"""What the tap relies on in the Singer SDK's private members, one named test each.

The tap extends the SDK where no public hook does the job at the same speed or at all
(see README, "SDK upgrades"). A new SDK release that changes one of these fails here, by
name, before anything subtler breaks; `scripts/sdk_next.sh` runs this file against the
newest release a widened pin allows.
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
    assert PROGRESS_MARKERS == "progress_markers"


def test_stream_private_attributes_the_tap_sets() -> None:
    """_schema, _input_schema, _stream_maps (schema evolution), _stream_version (activate
    version), _state_manager (bookmarks), _tap_state."""
    stream = make_tap().streams["contacts"]
    for name in ("_schema", "_input_schema", "_stream_maps", "_stream_version",
                 "_state_manager", "_tap_state", "_tap"):
        assert hasattr(stream, name), name
    assert "if self._stream_maps:" in source(Stream.stream_maps.fget)  # type: ignore[attr-defined]
    assert "self._input_schema" in source(Stream.effective_schema.fget)  # type: ignore[attr-defined]


def test_stream_writers_the_tap_calls() -> None:
    for name in ("_write_state_message", "_write_schema_message",
                 "_write_activate_version_message"):
        assert callable(getattr(Stream, name)), name
    assert "_stream_version" in source(Stream.sync)
    assert "self.emit_activate_version_messages" in source(Stream.sync)


def test_rest_request_and_page_context() -> None:
    """client._fetch calls _request(prepared, context) through request_decorator."""
    assert list(inspect.signature(RESTStream._request).parameters) == [
        "self", "prepared_request", "context"]
    assert "allow_redirects=self.allow_redirects" in source(RESTStream._request)
    assert list(inspect.signature(PageContext).parameters)[:2] == [
        "stream_context", "next_page_token"]


def test_tap_private_members_the_tap_uses() -> None:
    """sync_all is reimplemented (streams side by side) from these steps; _validate_config
    gets our checks first; _handle_termination is the signal handler; _state_writer is
    replaced by the writer's."""
    body = source(Tap.sync_all)
    for step in ("self._reset_state_progress_markers()",
                 "self._set_compatible_replication_methods()",
                 "stream.finalize_state_progress_markers()", "stream.log_sync_costs()"):
        assert step in body, step
    tap = make_tap()
    assert hasattr(tap, "_state_writer") and hasattr(tap, "_config")
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
