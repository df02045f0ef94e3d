"""The pool that fetches pages ahead: every listing's next page before any listing's
second next; cancelled pages never run; its threads never hold the tap's exit."""

from __future__ import annotations

import threading

from tap_analytics.page_pool import PagePool


def test_the_nearest_page_of_any_listing_goes_first() -> None:
    before = set(threading.enumerate())  # other tests' pools may still have threads
    pool = PagePool(1)
    gate, ran = threading.Event(), []
    blocker = pool.submit(0, gate.wait)  # holds the one thread while the others queue
    futures = [pool.submit(rank, ran.append, name)
               for rank, name in [(2, "a3"), (1, "a2"), (0, "b1"), (1, "b2"), (0, "c1")]]
    cancelled = pool.submit(0, ran.append, "gone")
    assert cancelled.cancel()
    gate.set()
    blocker.result(timeout=30)
    for future in futures:
        future.result(timeout=30)
    assert ran == ["b1", "c1", "a2", "b2", "a3"]
    pool.shutdown(wait=True)
    assert not [t for t in threading.enumerate() if t not in before and t.name.startswith("page-")]


def test_an_error_reaches_the_listing_that_waits_for_the_page() -> None:
    pool = PagePool(2)

    def fails() -> None:
        raise ValueError("page 3 of teams: bad body")

    future = pool.submit(0, fails)
    assert isinstance(future.exception(timeout=30), ValueError)
    assert pool.submit(0, int, "7").result(timeout=30) == 7
    pool.shutdown(wait=True)
