"""Streams side by side: every selected stream syncs on its own thread, through the SDK's
own `Stream.sync`, while one request budget (`http.RequestBudget`) bounds what is in
flight across all of them.

Output stays valid Singer: each stream's messages come from one thread, in the order a
sequential run writes them (SCHEMA, RECORDs, ACTIVATE_VERSION); the writer's lock keeps
lines whole; a STATE covers only records already written (a record is written before its
bookmark moves, and a STATE flushes what precedes it). Parents list before their children
(a child syncs on its parent's thread). The main thread only waits, so that a signal
handler running there never cuts into a line: it waits for the line being written.

The first stream to fail stops the others at their next page; the run then writes the
state of everything written and raises that failure. With `max_concurrency` 1 the streams
run one after another (on one thread, for the same signal safety): with nothing to overlap,
threads would only contend for the interpreter.
"""

from __future__ import annotations

import threading
import typing as t

if t.TYPE_CHECKING:
    from singer_sdk import Stream


class SyncCancelled(BaseException):
    """Raised in a stream's thread when another stream has failed: stop quietly."""


class StreamRunner:
    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()

    def check(self) -> None:
        """Called between pages: stop this stream if another one failed."""
        if self.cancelled.is_set():
            raise SyncCancelled

    def run(self, streams: t.Sequence[Stream], side_by_side: bool = True) -> None:
        """Each stream on its own thread, or (`side_by_side` False: `max_concurrency` 1)
        all of them one after another on one thread, as the SDK would."""
        groups = [[stream] for stream in streams] if side_by_side else [list(streams)]
        threads = [threading.Thread(target=self._sync_all, args=(group,), daemon=True,
                                    name=f"stream-{group[0].name}") for group in groups]
        for thread in threads:
            thread.start()
        for thread in threads:
            # in short waits: a signal the kernel hands to another thread runs its Python
            # handler only when the main thread next wakes up
            while thread.is_alive():
                thread.join(0.05)
        if self._errors:
            raise self._errors[0]

    def _sync_all(self, streams: list[Stream]) -> None:
        try:
            for stream in streams:
                self.check()
                stream.sync()
                stream.finalize_state_progress_markers()
        except SyncCancelled:
            pass
        except BaseException as exc:  # handed to the main thread, raised there
            with self._lock:
                self._errors.append(exc)
            self.cancelled.set()
