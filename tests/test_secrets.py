"""No secret in any output: succeeding and failing runs, query-string keys, OAuth, debug logs."""

from __future__ import annotations

import pytest

from tap_analytics.redact import MASK, redact, register_secret
from tests.helpers import config_for, oauth_config, run_cli

pytestmark = pytest.mark.e2e
DEBUG = {"TAP_ANALYTICS_LOGLEVEL": "DEBUG"}


def all_output(out) -> str:
    return out.stderr + "\n" + "\n".join(map(str, out.messages))


def test_redact_masks_registered_secrets_and_url_forms() -> None:
    register_secret("s3cr/t+key")
    text = redact("GET /v1/x?api_key=s3cr%2Ft%2Bkey&limit=1 failed; raw s3cr/t+key")
    assert "s3cr" not in text and MASK in text
    assert redact("https://h/v1/x?limit=1&access_token=abc123") == \
        f"https://h/v1/x?limit=1&access_token={MASK}"


@pytest.mark.parametrize("scenario", ["success", "dropped", "unauthorized", "unreachable"])
def test_query_string_key_never_printed(server, scenario) -> None:
    config = config_for(server, max_retries=1, page_size=60)
    if scenario == "dropped":  # urllib3 puts the whole URL, key included, in the error
        server.faults({"path": "/v1/contacts", "kind": "drop", "times": -1})
    if scenario == "unauthorized":
        server.faults({"path": "/v1/teams", "kind": "401", "times": -1})
    if scenario == "unreachable":
        config["base_url"] = "http://127.0.0.1:9"
    out = run_cli(config, env=DEBUG)
    text = all_output(out)
    assert server.api.api_key not in text
    assert (out.returncode == 0) == (scenario == "success")
    if scenario in ("dropped", "unreachable"):
        assert f"api_key={MASK}" in text  # the URL was printed, with the key masked


def test_oauth_secrets_never_printed(server) -> None:
    good = run_cli(oauth_config(server, page_size=500), env=DEBUG)
    assert good.returncode == 0
    bad = run_cli(oauth_config(server, client_secret="wrong-secret-value"), env=DEBUG)
    assert bad.returncode == 1
    assert "invalid_client" in bad.stderr.splitlines()[-1]
    server.faults({"path": "/v1/contacts", "kind": "401", "times": 2})
    refused = run_cli(oauth_config(server), env=DEBUG)
    assert refused.returncode == 1
    secrets = {server.api.client_secret, "wrong-secret-value", *server.api.tokens}
    for out in (good, bad, refused):
        text = all_output(out)
        assert not any(secret in text for secret in secrets)
