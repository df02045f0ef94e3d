"""Auth (API key, OAuth2 client credentials), retries, backoff and error messages."""

from __future__ import annotations

import datetime
import logging

import pytest
import requests
from singer_sdk.exceptions import FatalAPIError

from tap_analytics.auth import AuthError
from tap_analytics.payload import PayloadError
from tap_analytics.retries import retry_after_seconds
from tests.helpers import SECRETS
from tests.unit_support import BASE, make_tap, query, stream_of

TOKEN_URL = BASE + "/oauth/v1/token"
OAUTH = {"auth_type": "oauth2", "client_id": "cid", "client_secret": "unit-secret-999"}
SECRETS.update({"unit-key-000", "unit-secret-999", "tok-one-1111", "tok-two-2222"})


def records(tap, name="teams"):
    return list(stream_of(tap, name).get_records(None))


def test_api_key_in_query_by_default(requests_mock) -> None:
    requests_mock.get(BASE + "/v1/teams", json={"data": []})
    records(make_tap())
    request = requests_mock.request_history[0]
    assert query(request)["api_key"] == "unit-key-000"
    assert "api_key" not in request.headers


def test_api_key_in_named_header(requests_mock) -> None:
    requests_mock.get(BASE + "/v1/teams", json={"data": []})
    records(make_tap(api_key_location="header", api_key_name="X-Key"))
    request = requests_mock.request_history[0]
    assert request.headers["X-Key"] == "unit-key-000"
    assert "X-Key" not in query(request) and "api_key" not in query(request)


def test_oauth_token_is_fetched_once_and_reused(requests_mock) -> None:
    requests_mock.post(TOKEN_URL, json={"access_token": "tok-one-1111", "expires_in": 3600})
    requests_mock.get(BASE + "/v1/teams", json={"data": []})
    requests_mock.get(BASE + "/v1/fields", json={"items": []})
    tap = make_tap(**OAUTH)
    records(tap)
    records(tap, "fields")
    posts = [r for r in requests_mock.request_history if r.method == "POST"]
    assert len(posts) == 1
    form = dict(pair.split("=") for pair in posts[0].text.split("&"))
    assert form == {"grant_type": "client_credentials", "client_id": "cid",
                    "client_secret": "unit-secret-999"}
    gets = [r for r in requests_mock.request_history if r.method == "GET"]
    assert all(r.headers["Authorization"] == "Bearer tok-one-1111" for r in gets)
    assert all("api_key" not in query(r) for r in gets)


def test_oauth_token_renewed_before_it_expires(requests_mock) -> None:
    requests_mock.post(TOKEN_URL, [{"json": {"access_token": "tok-one-1111", "expires_in": 600}},
                                   {"json": {"access_token": "tok-two-2222", "expires_in": 600}}])
    requests_mock.get(BASE + "/v1/teams", json={"data": []})
    tap = make_tap(**OAUTH)
    records(tap)
    auth = tap.authenticator
    # 560 s into a 600 s token: inside the renewal margin, so the next request renews first
    auth.last_refreshed -= datetime.timedelta(seconds=560)
    records(tap)
    gets = [r for r in requests_mock.request_history if r.method == "GET"]
    assert [g.headers["Authorization"] for g in gets] == ["Bearer tok-one-1111",
                                                          "Bearer tok-two-2222"]


def test_oauth_refused_token_is_renewed_once_and_request_repeated(requests_mock) -> None:
    requests_mock.post(TOKEN_URL, [{"json": {"access_token": "tok-one-1111", "expires_in": 3600}},
                                   {"json": {"access_token": "tok-two-2222", "expires_in": 3600}}])
    requests_mock.get(BASE + "/v1/teams", [
        {"status_code": 401, "json": {"error": "unauthorized", "message": "revoked"}},
        {"json": {"data": [{"id": "t1"}]}},
    ])
    assert [r["id"] for r in records(make_tap(**OAUTH))] == ["t1"]
    posts = [r for r in requests_mock.request_history if r.method == "POST"]
    assert len(posts) == 2


def test_oauth_second_401_in_a_row_is_fatal(requests_mock) -> None:
    requests_mock.post(TOKEN_URL, json={"access_token": "tok-one-1111", "expires_in": 3600})
    requests_mock.get(BASE + "/v1/teams", status_code=401, json={"error": "unauthorized"})
    with pytest.raises(FatalAPIError, match=r"teams: GET /v1/teams answered 401"):
        records(make_tap(**OAUTH))
    assert len([r for r in requests_mock.request_history if r.method == "GET"]) == 2


def test_oauth_bad_client_credentials_is_clear_and_fatal(requests_mock) -> None:
    requests_mock.post(TOKEN_URL, status_code=401, json={"error": "invalid_client"})
    with pytest.raises(AuthError) as info:
        records(make_tap(**OAUTH))
    message = str(info.value)
    assert "POST /oauth/v1/token" in message and "invalid_client" in message
    assert "client_id and client_secret" in message
    assert requests_mock.call_count == 1


def test_oauth_non_json_token_answer(requests_mock) -> None:
    requests_mock.post(TOKEN_URL, text="<html>login</html>")
    with pytest.raises(AuthError, match="token response is not JSON"):
        records(make_tap(**OAUTH))


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(requests_mock, status) -> None:
    requests_mock.get(BASE + "/v1/teams", [{"status_code": status, "json": {}}] * 3
                      + [{"json": {"data": [{"id": "t1"}], "total": 1}}])
    assert [r["id"] for r in records(make_tap())] == ["t1"]
    assert requests_mock.call_count == 4


def test_retries_stop_after_max_retries(requests_mock) -> None:
    requests_mock.get(BASE + "/v1/teams", status_code=503, json={})
    with pytest.raises(Exception, match="503"):
        records(make_tap(max_retries=2))
    assert requests_mock.call_count == 3


def test_connection_errors_and_timeouts_are_retried(requests_mock) -> None:
    requests_mock.get(BASE + "/v1/teams", [
        {"exc": requests.exceptions.ConnectionError("reset")},
        {"exc": requests.exceptions.ReadTimeout("slow")},
        {"json": {"data": [{"id": "t1"}]}},
    ])
    assert [r["id"] for r in records(make_tap())] == ["t1"]


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_fatal_naming_stream_path_status(requests_mock, status) -> None:
    requests_mock.get(BASE + "/v1/teams", status_code=status,
                      json={"error": "nope", "message": "explained"})
    with pytest.raises(FatalAPIError) as info:
        records(make_tap())
    assert str(info.value).startswith(f"teams: GET /v1/teams answered {status}")
    assert "explained" in str(info.value)
    assert "unit-key-000" not in str(info.value) and "?" not in str(info.value)
    assert requests_mock.call_count == 1


@pytest.mark.parametrize(("body", "fragment"), [
    (b"<html>oops</html>", "is not valid JSON"),
    (b'{"data": [{"id": 1}', "is not valid JSON"),
    (b"", "is empty"),
    (b'{"data": {"id": "x"}}', "expected a list of records at 'data', got dict"),
    (b'{"rows": []}', "'data' is missing"),
    (b'[{"id": "x"}]', "expected a JSON object with 'data', got list"),
    (b'{"data": [1, 2]}', "expected record objects at 'data', found int"),
])
def test_bad_bodies_are_clear_errors_never_empty_pages(requests_mock, body, fragment) -> None:
    requests_mock.get(BASE + "/v1/teams", content=body)
    with pytest.raises(PayloadError) as info:
        records(make_tap())
    assert "GET /v1/teams" in str(info.value) and fragment in str(info.value)


def test_backoff_waits_follow_factor_and_retry_after() -> None:
    stream = stream_of(make_tap(backoff_factor=0.5), "teams")
    gen = stream.backoff_wait_generator()
    gen.send(None)
    plain = RuntimeError("x")
    waits = [gen.send(plain) for _ in range(3)]
    for wait, base in zip(waits, [0.5, 1.0, 2.0], strict=False):
        assert base <= wait <= base * 1.1 + 1e-9

    class Resp:
        headers = {"Retry-After": "7"}

    exc = RuntimeError("429")
    exc.response = Resp()
    assert gen.send(exc) == 7.0
    assert stream.backoff_jitter(7.0) == 7.0


def test_zero_backoff_factor_means_no_wait() -> None:
    gen = stream_of(make_tap(backoff_factor=0), "teams").backoff_wait_generator()
    gen.send(None)
    assert [gen.send(RuntimeError()) for _ in range(3)] == [0, 0, 0]


def test_retry_after_http_date_and_cap() -> None:
    class Resp:
        def __init__(self, value):
            self.headers = {"Retry-After": value}

    exc = RuntimeError()
    exc.response = Resp("Wed, 21 Oct 2015 07:28:00 GMT")  # in the past: no wait
    assert retry_after_seconds(exc) == 0.0
    exc.response = Resp("99999")
    assert retry_after_seconds(exc) == 120.0
    exc.response = Resp("soon")
    assert retry_after_seconds(exc) is None


def test_retry_log_is_a_warning_without_secrets(requests_mock, caplog) -> None:
    requests_mock.get(BASE + "/v1/teams", [{"status_code": 503, "json": {}},
                                           {"json": {"data": []}}])
    with caplog.at_level(logging.INFO):
        records(make_tap())
    retries = [r for r in caplog.records if "retry 1 of 3" in r.getMessage()]
    assert retries and retries[0].levelno == logging.WARNING
    assert "GET /v1/teams failed (status 503)" in retries[0].getMessage()


def test_token_endpoint_transient_failure_is_retried(requests_mock) -> None:
    requests_mock.post(TOKEN_URL, [{"status_code": 503, "json": {}},
                                   {"json": {"access_token": "tok-one-1111", "expires_in": 60}}])
    requests_mock.get(BASE + "/v1/teams", json={"data": [{"id": "t1"}], "total": 1})
    assert [r["id"] for r in records(make_tap(**OAUTH))] == ["t1"]
    assert [r.method for r in requests_mock.request_history] == ["POST", "POST", "GET"]
