"""Read several child listings at once on a bounded pool, yielding on the calling thread.

Workers hand records over in chunks through a bounded queue, so memory is bounded
by the pool size, not by the data, and every record is written by the caller's
thread (Singer output and state stay single-threaded).
"""

from __future__ import annotations

import queue
import threading
import typing as t

_DONE = object()
CHUNK = 500


def fan_out(
    partitions: t.Sequence[t.Any],
    read: t.Callable[[t.Any], t.Iterable[dict]],
    workers: int,
) -> t.Iterator[dict]:
    """Yield every record of `read(p)` for each partition p, reading `workers` at once.

    The first error in any worker stops the others and is raised here.
    """
    if workers <= 1 or len(partitions) <= 1:
        for partition in partitions:
            yield from read(partition)
        return

    todo: queue.SimpleQueue[t.Any] = queue.SimpleQueue()
    for partition in partitions:
        todo.put(partition)
    out: queue.Queue[t.Any] = queue.Queue(maxsize=workers * 2)
    stop = threading.Event()

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
            while not stop.is_set():
                try:
                    partition = todo.get_nowait()
                except queue.Empty:
                    return
                chunk: list[dict] = []
                for record in read(partition):
                    chunk.append(record)
                    if len(chunk) >= CHUNK:
                        if not put(chunk):
                            return
                        chunk = []
                if chunk and not put(chunk):
                    return
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
