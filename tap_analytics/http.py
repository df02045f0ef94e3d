"""HTTP plumbing shared by all streams of a tap: sessions, one request budget, redirects.

Every request, retries and token requests included, passes the tap's `RequestBudget`:
at most `max_concurrency` in flight across all streams and threads (fewer after a 429:
halved on each, grown back by one per round of successes), no request while any thread's
`Retry-After` runs, and request starts spaced by `max_requests_per_second`.
"""

from __future__ import annotations

import threading
import time
import typing as t
from urllib.parse import urlparse

import requests
from requests.adapters import HTTPAdapter
from singer_sdk.exceptions import FatalAPIError


class RateLimiter:
    """Spaces request starts at least 1/rate seconds apart, across all threads."""

    def __init__(self, per_second: float, clock: t.Callable[[], float] = time.monotonic,
                 sleep: t.Callable[[float], None] = time.sleep) -> None:
        self._interval = 1.0 / per_second
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            self._sleep(start - now)


class RequestGate:
    """One pause for everybody: a `Retry-After` seen by one request holds back all others."""

    def __init__(self, clock: t.Callable[[], float] = time.monotonic,
                 sleep: t.Callable[[float], None] = time.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._until = 0.0
        self._lock = threading.Lock()

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, self._clock() + seconds)

    def wait(self) -> None:
        while True:
            left = self._until - self._clock()
            if left <= 0:
                return
            self._sleep(left)


class RequestBudget:
    """Requests in flight across the tap, shrinking on 429s and growing back (AIMD)."""

    def __init__(self, limit: int, limiter: RateLimiter | None = None,
                 gate: RequestGate | None = None) -> None:
        self.ceiling = limit
        self.limit = limit
        self.in_flight = 0
        self.peak = 0
        self._successes = 0
        self._cond = threading.Condition()
        self.limiter = limiter
        self.gate = gate or RequestGate()

    def acquire(self) -> None:
        self.gate.wait()
        with self._cond:
            while self.in_flight >= self.limit:
                self._cond.wait()
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        if self.limiter is not None:
            self.limiter.acquire()
        self.gate.wait()  # a pause that began while this request waited for its turn

    def pause(self, seconds: float) -> None:
        """Every request waits `seconds` from now (an API's Retry-After)."""
        self.gate.pause(seconds)

    def release(self, throttled: bool) -> None:
        with self._cond:
            self.in_flight -= 1
            if throttled:
                self.limit = max(1, self.limit // 2)
                self._successes = 0
            elif self.limit < self.ceiling:
                self._successes += 1
                if self._successes >= self.limit:
                    self.limit += 1
                    self._successes = 0
            self._cond.notify_all()


class RedirectRefusedError(FatalAPIError):
    """A response redirected to a host the tap sends no credentials to."""


class GuardedSession(requests.Session):
    """Follows redirects only within the hosts the tap was configured with.

    requests drops `Authorization` on a redirect to another host, but not an API key in
    a header or in the query string (the Location usually repeats the query): a redirect
    elsewhere is refused before anything is sent there.
    """

    def __init__(self, allowed: t.Iterable[str]) -> None:
        super().__init__()
        self.allowed = {_origin(url) for url in allowed}

    def rebuild_auth(self, prepared_request: requests.PreparedRequest,
                     response: requests.Response) -> None:
        target = _origin(prepared_request.url or "")
        if target not in self.allowed:
            source = urlparse(response.request.url or "").path
            msg = (f"GET {source} answered {response.status_code} with a redirect to another "
                   f"host ({_origin(prepared_request.url or '')[1]}); refused: "
                   "credentials are only sent to the configured API and token hosts")
            raise RedirectRefusedError(msg)
        super().rebuild_auth(prepared_request, response)


def _origin(url: str) -> tuple[str, str]:
    parts = urlparse(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    return parts.scheme, f"{(parts.hostname or '').lower()}:{port}"


class BudgetAdapter(HTTPAdapter):
    """Every request, retries included, takes its place in the budget."""

    def __init__(self, budget: RequestBudget, **kwargs: t.Any) -> None:
        self._budget = budget
        super().__init__(**kwargs)

    def send(self, request: requests.PreparedRequest, *args: t.Any, **kwargs: t.Any
             ) -> requests.Response:
        self._budget.acquire()
        throttled = False
        try:
            response = super().send(request, *args, **kwargs)
            throttled = response.status_code == 429
            return response
        finally:
            self._budget.release(throttled)


class SessionPool:
    """One guarded `requests.Session` per thread (sessions are not thread-safe)."""

    def __init__(self, budget: RequestBudget, user_agent: str,
                 allowed: t.Iterable[str]) -> None:
        self.budget = budget
        self._user_agent = user_agent
        self._allowed = tuple(allowed)
        self._local = threading.local()

    def new_session(self) -> requests.Session:
        session = GuardedSession(self._allowed)
        adapter = BudgetAdapter(self.budget, pool_connections=4, pool_maxsize=4)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["User-Agent"] = self._user_agent
        return session

    def get(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self.new_session()
        return session
