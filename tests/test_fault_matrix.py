"""Every stream under every fault kind: transient faults end with exact data, fatal ones
with one clear error naming stream, path and cause, after a single request."""

from __future__ import annotations

import pytest
from singer_sdk.exceptions import FatalAPIError

from fake_api.data import PATHS
from tap_analytics.streams import BUILTIN_STREAMS
from tests.helpers import config_for, sync
from tests.reliability import count

STREAMS = {cls.resource.name: cls.resource for cls in BUILTIN_STREAMS}
TRANSIENT = {
    "429 with Retry-After": {"kind": "429", "retry_after": "0"},
    "429 without Retry-After": {"kind": "429"},
    "500": {"kind": "500"}, "502": {"kind": "502"}, "503": {"kind": "503"},
    "504": {"kind": "504"}, "dropped connection": {"kind": "drop"},
    "read time-out": {"kind": "timeout", "delay": 1.2},
}
FATAL = {"401": "answered 401", "403": "answered 403", "404": "answered 404",
         "nonjson": "is not valid JSON", "truncated": "is not valid JSON",
         "wrongshape": "expected"}


def fault_path(stream: str) -> str:
    if stream == "segment_people":
        return "/v1/segments/segment_00001/people"
    return STREAMS[stream].path


def selection(stream: str) -> list[str]:
    return ["segments", "segment_people"] if stream == "segment_people" else [stream]


@pytest.mark.parametrize("stream", sorted(STREAMS))
@pytest.mark.parametrize("fault", sorted(TRANSIENT))
def test_transient_fault_leaves_exact_data(server, stream, fault) -> None:
    # Twice in a row on a later page where there is one, on the first page otherwise.
    paged = (STREAMS[stream].paginator.type == "offset" and stream != "segment_people"
             and len(server.ids()[stream]) > 25)
    rule = {"path": fault_path(stream), "times": 2, "after": 1 if paged else 0,
            **TRANSIENT[fault]}
    server.faults(rule)
    # a short time-out only where the fault is a time-out: a loaded machine never trips it
    timeout = 0.5 if TRANSIENT[fault]["kind"] == "timeout" else 10
    out = sync(config_for(server, page_size=25, request_timeout=timeout), selection(stream))
    keys = out.keys(stream, STREAMS[stream].primary_key)
    assert len(keys) == len(set(keys))
    assert set(keys) == server.ids()[stream]
    assert server.api.rules[0].fired == 2, "the fault was not injected"
    count("transient faults injected and survived", 2)


@pytest.mark.parametrize("stream", sorted(set(STREAMS) - {"segment_people"}))
@pytest.mark.parametrize("fault", sorted(FATAL))
def test_fatal_fault_is_one_clear_error(server, stream, fault) -> None:
    path = fault_path(stream)
    server.faults({"path": path, "kind": fault, "times": -1})
    with pytest.raises(FatalAPIError) as info:
        sync(config_for(server, page_size=25), selection(stream))
    message = str(info.value)
    assert "\n" not in message
    assert f"GET {path}" in message and FATAL[fault] in message
    if fault.isdigit():
        assert message.startswith(f"{stream}: ")
    tried = [r for r in server.requests() if r["path"] == path]
    assert len(tried) == 1, "a fatal answer must not be retried"
    count("fatal faults injected and reported", 1)


def test_paths_match_the_fake_api() -> None:
    for name, path in PATHS.items():
        if name in STREAMS:
            assert STREAMS[name].path == path
