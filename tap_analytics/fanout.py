"""Read several child listings at once on a bounded pool, yielding on the calling thread.

Workers hand records over in chunks through a bounded queue, so memory is bounded by
the pool size, not by the data, and every record is written by the caller's thread.
After the last record of a listing comes a `Finished` marker for it: when the caller
sees it, every record of that listing has been handed over. Listings start in order, and
never more than `window` past the first one not finished, so the set of listings finished
out of order (which a resumable state has to name) stays small.
"""

from __future__ import annotations

import queue
import threading
import typing as t
from dataclasses import dataclass

_DONE = object()
CHUNK = 500


@dataclass(frozen=True)
class Finished:
    """Every record of `partition` has been yielded before this."""

    partition: t.Any


def fan_out(
    partitions: t.Sequence[t.Any],
    read: t.Callable[[t.Any], t.Iterable[dict]],
    workers: int,
    window: int | None = None,
) -> t.Iterator[dict | Finished]:
    """Yield every record of `read(p)` for each partition p, then `Finished(p)`, reading
    `workers` listings at once. The first error in any worker stops the others and is
    raised here."""
    if workers <= 1 or len(partitions) <= 1:
        for partition in partitions:
            yield from read(partition)
            yield Finished(partition)
        return
    yield from _FanOut(partitions, read, workers, window).records()


class _FanOut:
    """The shared state of one fan-out: which listing is next, which are finished (the
    window), the bounded hand-over queue and the stop signal."""

    def __init__(self, partitions: t.Sequence[t.Any], read: t.Callable[[t.Any], t.Iterable[dict]],
                 workers: int, window: int | None) -> None:
        self.partitions = partitions
        self.read = read
        self.workers = min(workers, len(partitions))
        self.window = max(window or len(partitions), workers)
        self.out: queue.Queue[t.Any] = queue.Queue(maxsize=workers * 2)
        self.stop = threading.Event()
        self.turn = threading.Condition()
        self.next = 0  # the next listing to start
        self.low = 0  # the first listing not finished
        self.finished = [False] * len(partitions)

    def records(self) -> t.Iterator[dict | Finished]:
        threads = [threading.Thread(target=self._work, name=f"fanout-{i}", daemon=True)
                   for i in range(self.workers)]
        for thread in threads:
            thread.start()
        running = len(threads)
        try:
            while running:
                item = self.out.get()
                if item is _DONE:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield from item
        finally:
            self.stop.set()  # workers are daemons: on an abort they stop at their next record
            for thread in threads:
                thread.join(timeout=0.2)

    def _take(self) -> int | None:
        """The next listing to read, once it is inside the window (None: all taken)."""
        with self.turn:
            while not self.stop.is_set():
                index = self.next
                if index >= len(self.partitions):
                    return None
                if index < self.low + self.window:
                    self.next = index + 1
                    return index
                self.turn.wait(0.1)
        return None

    def _done(self, index: int) -> None:
        with self.turn:
            self.finished[index] = True
            while self.low < len(self.partitions) and self.finished[self.low]:
                self.low += 1
            self.turn.notify_all()

    def _put(self, item: t.Any) -> bool:
        while not self.stop.is_set():
            try:
                self.out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            while (index := self._take()) is not None:
                if not self._read_one(index):
                    return
                self._done(index)
        except BaseException as exc:  # handed to the caller, raised there
            self._put(exc)
        finally:
            self._put(_DONE)

    def _read_one(self, index: int) -> bool:
        """One listing, handed over in chunks; False when the fan-out was stopped."""
        partition = self.partitions[index]
        chunk: list[t.Any] = []
        for record in self.read(partition):
            chunk.append(record)
            if len(chunk) >= CHUNK:
                if not self._put(chunk):
                    return False
                chunk = []
        chunk.append(Finished(partition))
        return self._put(chunk)
