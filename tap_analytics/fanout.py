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

    window = max(window or len(partitions), workers)
    out: queue.Queue[t.Any] = queue.Queue(maxsize=workers * 2)
    stop = threading.Event()
    turn = threading.Condition()
    state = {"next": 0, "low": 0}
    finished = [False] * len(partitions)

    def take() -> int | None:
        """The next listing to read, once it is inside the window (None: all taken)."""
        with turn:
            while not stop.is_set():
                index = state["next"]
                if index >= len(partitions):
                    return None
                if index < state["low"] + window:
                    state["next"] = index + 1
                    return index
                turn.wait(0.1)
        return None

    def done(index: int) -> None:
        with turn:
            finished[index] = True
            while state["low"] < len(partitions) and finished[state["low"]]:
                state["low"] += 1
            turn.notify_all()

    def put(item: t.Any) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            while (index := take()) is not None:
                partition = partitions[index]
                chunk: list[t.Any] = []
                for record in read(partition):
                    chunk.append(record)
                    if len(chunk) >= CHUNK:
                        if not put(chunk):
                            return
                        chunk = []
                chunk.append(Finished(partition))
                if not put(chunk):
                    return
                done(index)
        except BaseException as exc:  # handed to the caller, raised there
            put(exc)
        finally:
            put(_DONE)

    count = min(workers, len(partitions))
    threads = [threading.Thread(target=work, name=f"fanout-{i}", daemon=True)
               for i in range(count)]
    for thread in threads:
        thread.start()
    running = count
    try:
        while running:
            item = out.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield from item
    finally:
        stop.set()  # workers are daemons: on an abort they stop at their next record
        for thread in threads:
            thread.join(timeout=0.2)
