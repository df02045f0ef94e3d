"""Requests, their errors and their retries: one page's request with the SDK's backoff,
authentication inside each attempt, and what each HTTP answer means (API.md)."""

from __future__ import annotations

import email.utils
import logging
import random
import time
import typing as t
from urllib.parse import urlparse

import requests
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.streams.rest import PageContext

from tap_analytics.auth import ClientCredentialsAuthenticator, TokenRefusedError
from tap_analytics.http import RedirectRefusedError
from tap_analytics.payload import body_of
from tap_analytics.redact import redact

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

    from tap_analytics.pagination import Page

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_SECONDS = 120.0
JITTER_SHARE = 0.1


class PartitionGoneError(FatalAPIError):
    """A child listing answered 404: its parent was deleted after it was listed."""


def retry_after_seconds(exc: BaseException | None) -> float | None:
    """The wait a 429/5xx asked for in `Retry-After` (seconds or an HTTP date)."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


class RetryingRequests:
    """The request side of a stream (a mixin of `AnalyticsStream`, on the SDK's RESTStream
    hooks): `fetch` one page, `validate_response`, `request_decorator`, `backoff_*`."""

    def fetch(self, context: Context | None, page: Page) -> requests.Response:
        """One request for one page, with the SDK's retries, auth and checks."""
        http_request = self.get_http_request(
            page=PageContext(stream_context=context, next_page_token=page))
        prepared = self.build_prepared_request(
            method=http_request.method, url=http_request.url,
            params=http_request.encode_params(), headers=http_request.headers)
        response = self.request_decorator(self._request)(prepared, context)
        self.update_sync_costs(prepared, response, context)
        return response

    def build_prepared_request(self, *args: t.Any, **kwargs: t.Any) -> requests.PreparedRequest:
        """Prepare without authenticating: `_request` authenticates each attempt inside the
        retry loop, so a token endpoint that fails transiently is retried too."""
        return self.requests_session.prepare_request(requests.Request(*args, **kwargs))

    def validate_response(self, response: requests.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        message = f"{self.name}: {self._describe(response)}"
        if status in TRANSIENT_STATUSES or status >= 500:
            raise RetriableAPIError(message, response)
        if status == 401 and isinstance(self.authenticator, ClientCredentialsAuthenticator):
            token = self.authenticator.current_token(response.request)
            raise TokenRefusedError(message, token)
        if status == 404 and self.resource.parent is not None:
            raise PartitionGoneError(message)
        raise FatalAPIError(message)

    def _describe(self, response: requests.Response) -> str:
        detail = ""
        try:
            body = body_of(response)
        except FatalAPIError:
            body = None
        if isinstance(body, dict):
            parts = [str(body[k]) for k in ("error", "message") if isinstance(body.get(k), str)]
            detail = ": " + " - ".join(parts) if parts else ""
        path = urlparse(response.url).path
        return f"GET {path} answered {response.status_code} {response.reason}{detail}"

    def request_decorator(self, func: t.Callable) -> t.Callable:
        """Renew a refused OAuth token once per attempt; mask secrets in transport errors."""

        def attempt(prepared: requests.PreparedRequest, context: Context | None) -> t.Any:
            try:
                try:
                    return func(prepared, context)
                except TokenRefusedError as exc:
                    self.authenticator.invalidate(exc.token)
                    self.logger.warning("%s: access token refused, renewing it once", self.name)
                    return func(prepared, context)
            except requests.RequestException as exc:
                # urllib3 puts the full URL, query string and key included, in its messages
                raise type(exc)(f"{self.name}: {redact(str(exc))}") from None
            except RedirectRefusedError as exc:
                raise RedirectRefusedError(f"{self.name}: {exc}") from None

        return super().request_decorator(attempt)

    def backoff_max_tries(self) -> int:
        return self.settings.max_retries + 1

    def backoff_wait_generator(self) -> t.Generator[float, t.Any, None]:
        """factor * 2**(n-1) before retry n, or exactly what Retry-After asks for."""
        factor = self.settings.backoff_factor
        exc = yield  # type: ignore[misc]
        retry = 0
        while True:
            asked = retry_after_seconds(exc)
            if asked is not None:
                wait = asked
                self.analytics_tap.sessions.budget.pause(asked)  # every thread waits it out
            else:
                base = factor * 2**retry
                wait = base + random.uniform(0, min(1.0, base * JITTER_SHARE))
            retry += 1
            exc = yield wait

    def backoff_jitter(self, value: float) -> float:
        return value  # jitter is added by backoff_wait_generator, never to Retry-After

    def backoff_handler(self, details: t.Any) -> None:
        exc = details.get("exception")
        response = getattr(exc, "response", None)
        cause = f"status {response.status_code}" if response is not None else type(exc).__name__
        self.log(
            "%s: GET %s failed (%s); retry %d of %d in %.2fs",
            self.name, self.path, cause, details.get("tries", 0),
            self.settings.max_retries, details.get("wait", 0.0), level=logging.WARNING,
        )
