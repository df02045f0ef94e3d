"""Authenticators: an API key (query or header) and OAuth2 client credentials."""

from __future__ import annotations

import datetime
import threading
import typing as t
from urllib.parse import urlparse

import requests
from singer_sdk.authenticators import APIKeyAuthenticator, OAuthAuthenticator
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

from tap_analytics.redact import register_secret

if t.TYPE_CHECKING:
    from tap_analytics.settings import Settings

# Renew this long before `expires_in` runs out (at most a tenth of the lifetime).
RENEW_MARGIN_SECONDS = 60.0
TOKEN_TIMEOUT_SECONDS = 60


class AuthError(FatalAPIError):
    """Credentials were refused; retrying cannot help."""


class TokenRefusedError(AuthError):
    """A data request answered 401 although it carried a bearer token."""

    def __init__(self, message: str, token: str | None) -> None:
        super().__init__(message)
        self.token = token


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class ClientCredentialsAuthenticator(OAuthAuthenticator):
    """OAuth2 client credentials, shared by all streams and threads of one tap.

    The token is reused until shortly before it expires; a token refused early
    (revoked) is renewed once by the stream, which then repeats the request.
    """

    def __init__(self, *, token_url: str, client_id: str, client_secret: str,
                 timeout: float = TOKEN_TIMEOUT_SECONDS,
                 session: requests.Session | None = None) -> None:
        super().__init__(auth_endpoint=token_url, client_id=client_id,
                         client_secret=client_secret)
        self._lock = threading.Lock()
        self._timeout = timeout
        self.clock: t.Callable[[], datetime.datetime] = _utc_now  # tests pass a fake one
        # the tap's own session (redirect policy, pool), not the SDK authenticator's
        self.token_session = session or requests.Session()

    @property
    def oauth_request_body(self) -> dict:
        return {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }

    def is_token_valid(self) -> bool:
        if self.access_token is None or self.last_refreshed is None:
            return False
        if not self.expires_in:
            return True
        margin = min(RENEW_MARGIN_SECONDS, self.expires_in / 10)
        age = self.clock() - self.last_refreshed
        return age.total_seconds() < self.expires_in - margin

    def authenticate_request(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        with self._lock:
            if not self.is_token_valid():
                self.update_access_token()
            token = self.access_token
        request.headers["Authorization"] = f"Bearer {token}"
        return request

    def current_token(self, request: requests.PreparedRequest) -> str | None:
        value = request.headers.get("Authorization", "")
        return value.removeprefix("Bearer ") or None

    def invalidate(self, token: str | None) -> None:
        """Forget `token` unless another thread has already replaced it."""
        with self._lock:
            if token is None or token == self.access_token:
                self.access_token = None
                self.last_refreshed = None

    def update_access_token(self) -> None:
        where = f"POST {urlparse(self.auth_endpoint).path}"
        self.logger.info("Requesting a new OAuth2 access token (%s)", where)
        requested = self.clock()
        try:
            response = self.token_session.post(self.auth_endpoint, data=self.oauth_request_payload,
                                          timeout=self._timeout)
        except requests.RequestException as exc:
            msg = f"{where}: token request failed: {type(exc).__name__}"
            raise RetriableAPIError(msg) from None
        if response.status_code == 429 or response.status_code >= 500:
            raise RetriableAPIError(f"{where}: token request answered {response.status_code}",
                                    response)
        if response.status_code >= 400:
            error = _error_code(response)
            raise AuthError(
                f"{where}: token request refused with {response.status_code} {error}: "
                "check client_id and client_secret"
            )
        try:
            body = response.json()
            token = body["access_token"]
            if not isinstance(token, str) or not token:
                raise TypeError
        except (ValueError, KeyError, TypeError):
            start = response.text[:80]
            raise AuthError(
                f"{where}: token response is not JSON with an access_token; starts {start!r}"
            ) from None
        register_secret(token)
        expires = body.get("expires_in")
        self.access_token = token
        self.expires_in = int(expires) if isinstance(expires, (int, float)) and expires else None
        self.last_refreshed = requested


def _error_code(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return "(no JSON error body)"
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    return "(no error code)"


def build_authenticator(settings: Settings,
                        session: requests.Session | None = None) -> t.Any:
    """The one authenticator a tap shares across its streams."""
    if settings.auth_type == "oauth2":
        register_secret(settings.client_secret)
        return ClientCredentialsAuthenticator(
            token_url=settings.token_url, client_id=settings.client_id or "",
            client_secret=settings.client_secret or "", timeout=settings.request_timeout,
            session=session,
        )
    register_secret(settings.api_key)
    return APIKeyAuthenticator(
        key=settings.api_key_name, value=settings.api_key or "",
        location="params" if settings.api_key_location == "query" else "header",
    )
