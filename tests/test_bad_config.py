"""Every setting with a wrong type, an out-of-range value or a wrong combination: one line
naming it, no request made, no value echoed."""

from __future__ import annotations

import pytest

from tap_analytics.settings import ConfigError
from tap_analytics.tap import TapAnalytics
from tests.helpers import config_for, run_cli
from tests.reliability import count

WRONG_TYPE = {
    "base_url": 42, "auth_type": 1, "api_key": 12345678, "api_key_location": True,
    "api_key_name": 7, "client_id": ["x"], "client_secret": 99999, "token_url": 3.5,
    "start_date": 20260101, "page_size": "many", "max_retries": 1.5, "backoff_factor": "slow",
    "request_timeout": [], "max_concurrency": 2.5, "max_requests_per_second": "fast",
    "resources": "all",
}
OUT_OF_RANGE = {
    "base_url": "api.example.com", "auth_type": "basic", "api_key_location": "cookie",
    "token_url": "token", "start_date": "last tuesday", "page_size": 1001, "max_retries": -1,
    "backoff_factor": -1, "request_timeout": 0, "max_concurrency": 65,
    "max_requests_per_second": -5,
}
COMBINATIONS = [
    ({"auth_type": "api_key", "api_key": None}, "api_key"),
    ({"auth_type": "oauth2", "api_key": None}, "client_id"),
    ({"auth_type": "oauth2", "client_id": "c"}, "client_secret"),
    ({"resources": [{"name": "x", "endpoint": {"data_selector": "data"}}]}, "resources"),
    ({"resources": [{"name": "x", "endpoint": {"path": "/x", "paginator": "pages"}}]},
     "resources"),
    ({"resources": [{"name": "x", "endpoint": "/x"}, {"name": "x", "endpoint": "/y"}]},
     "resources"),
    ({"resources": [{"name": "x", "endpoint": {"path": "/x/{id}", "params": {
        "id": {"type": "resolve", "resource": "nowhere", "field": "id"}}}}]}, "resources"),
    # the SDK's Singer BATCH setting: refused, its path would skip SCHEMA and table versions
    ({"batch_config": {"encoding": {"format": "jsonl", "compression": "gzip"},
                       "storage": {"root": "file:///tmp"}}}, "batch_config"),
]
CASES = ([(name, {name: value}, name) for name, value in WRONG_TYPE.items()]
         + [(name, {name: value}, name) for name, value in OUT_OF_RANGE.items()]
         + [(f"combination-{i}", overrides, name) for i, (overrides, name)
            in enumerate(COMBINATIONS)])


@pytest.mark.parametrize(("case", "overrides", "setting"), CASES, ids=[c[0] for c in CASES])
def test_bad_setting_is_named_before_any_request(server, case, overrides, setting) -> None:
    config = config_for(server)
    config.update(overrides)
    with pytest.raises(ConfigError) as info:
        TapAnalytics(config=config)
    message = str(info.value)
    assert f"setting '{setting}'" in message and "\n" not in message
    for key in ("api_key", "client_secret"):
        if key in overrides and overrides[key] is not None:
            assert str(overrides[key]) not in message
    assert server.requests() == []
    count("bad configurations tried")


@pytest.mark.parametrize("overrides", [{"page_size": 0}, {"api_key": 12345678},
                                       {"auth_type": "oauth2"}, {"resources": "all"},
                                       {"batch_config": {"encoding": {"format": "jsonl"}}}])
def test_cli_bad_config_is_one_line_and_exit_2(server, overrides) -> None:
    config = config_for(server)
    config.update(overrides)
    out = run_cli(config)
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "Invalid configuration: setting '" in errors[0]
    assert "12345678" not in out.stderr
    assert server.requests() == []
