"""The threads that fetch pages ahead of the listings reading them, nearest page first.

Listings plan several pages ahead (`OffsetListing.planned`). On a first-come pool, a
listing that planned far ahead holds the request budget while another listing waits for
the one page it needs next: the listing with the longest chain of pages (one without a
`total`, which cannot plan far) ends last. Here each page carries its rank in its
listing's plan, and every listing's next page is fetched before any listing's second next.

Its threads are daemons: a page fetched ahead past a listing's end (wasted) never holds
the tap's exit.
"""

from __future__ import annotations

import itertools
import queue
import threading
import typing as t
from concurrent.futures import Future


class PagePool:
    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()  # first come first within one rank
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, rank: int, fn: t.Callable[..., t.Any], *args: t.Any) -> Future:
        """`fn(*args)` on a pool thread, before every task of a higher rank."""
        future: Future = Future()
        self._queue.put((rank, next(self._order), future, fn, args))
        with self._lock:
            if len(self._threads) < self._workers:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"page-{len(self._threads)}")
                self._threads.append(thread)
                thread.start()
        return future

    def shutdown(self, wait: bool = True) -> None:
        """Stop the threads once the tasks queued are done (or cancelled)."""
        with self._lock:
            threads, self._threads = self._threads, []
            self._workers = 0
        for _ in threads:
            self._queue.put((float("inf"), next(self._order), None, None, ()))
        if wait:
            for thread in threads:
                thread.join()

    def _work(self) -> None:
        while True:
            _, _, future, fn, args = self._queue.get()
            if future is None:
                return
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while it waited: the listing's plans changed
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the listing that waits on it
                future.set_exception(exc)
