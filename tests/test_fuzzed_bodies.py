"""Random response bodies: the right records or the one clear error, never anything else."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from singer_sdk.exceptions import FatalAPIError

from tests.reliability import count
from tests.unit_support import BASE, make_tap, stream_of

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=4),
    max_leaves=12,
)
RECORD = st.fixed_dictionaries({"id": st.text(min_size=1, max_size=6)},
                               optional={"name": st.none() | st.text(max_size=5)})
BODIES = (
    JSON  # anything at all
    | st.dictionaries(st.sampled_from(["tags", "total", "paging"]), JSON, max_size=2)
    .flatmap(lambda extra: st.lists(RECORD, max_size=5).map(lambda rows: {**extra,
                                                                          "tags": rows}))
    | st.binary(max_size=30)  # not JSON, or not UTF-8
)
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(body=BODIES)
def test_any_body_gives_records_or_a_clear_error(requests_mock, body) -> None:
    requests_mock.reset()
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    requests_mock.get(BASE + "/v1/tags-management", content=content)
    stream = stream_of(make_tap(), "account_tags")
    try:
        records = list(stream.get_records(None))
    except FatalAPIError as exc:
        assert "GET /v1/tags-management" in str(exc)
        assert "\n" not in str(exc)
        count("fuzzed bodies rejected with a clear error")
        return
    assert isinstance(body, dict) and isinstance(body.get("tags"), list)
    assert records == body["tags"]
    count("fuzzed bodies read")
