"""HTTP plumbing shared by all streams of a tap: per-thread sessions and a rate limit."""

from __future__ import annotations

import threading
import time
import typing as t

import requests
from requests.adapters import HTTPAdapter


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


class LimitedAdapter(HTTPAdapter):
    """Every request, retries included, waits its turn at the limiter."""

    def __init__(self, limiter: RateLimiter | None, **kwargs: t.Any) -> None:
        self._limiter = limiter
        super().__init__(**kwargs)

    def send(self, request: requests.PreparedRequest, *args: t.Any, **kwargs: t.Any
             ) -> requests.Response:
        if self._limiter is not None:
            self._limiter.acquire()
        return super().send(request, *args, **kwargs)


class SessionPool:
    """One `requests.Session` per thread (sessions are not thread-safe), all limited alike."""

    def __init__(self, limiter: RateLimiter | None, user_agent: str) -> None:
        self._limiter = limiter
        self._user_agent = user_agent
        self._local = threading.local()

    def new_session(self) -> requests.Session:
        session = requests.Session()
        adapter = LimitedAdapter(self._limiter, pool_connections=4, pool_maxsize=4)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["User-Agent"] = self._user_agent
        return session

    def get(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self.new_session()
        return session
