"""The per-record output path: stream maps applied, records written in buffered JSON lines."""

from __future__ import annotations

import datetime
import errno
import fcntl
import logging
import os
import select
import stat
import struct
import sys
import termios
import threading
import time
import typing as t

from singer_sdk.contrib.msgspec import MsgSpecWriter, encoder
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.singerlib import RecordMessage

if t.TYPE_CHECKING:
    from singer_sdk.singerlib.encoding.simple import Message


LOGGER = logging.getLogger("tap-analytics")


class OutputClosedError(RuntimeError):
    """The reader of the tap's output (the target) went away."""

    def __init__(self) -> None:
        super().__init__("the reader of the tap's output (the target) went away: it closed "
                         "the pipe; stopping")


PIPE_BUF = select.PIPE_BUF  # a write this size or smaller to a pipe is never split
PAGE = 4096
TERMINATE_WAIT_SECONDS = 5.0  # a signal waits this long for a line in progress, no longer
F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032  # Linux fcntl commands (fcntl has them from 3.10)


class BufferedMsgSpecWriter(MsgSpecWriter):
    """The SDK's msgspec writer, writing records in 64 KiB batches, for several threads.

    - Each thread gathers its records in its own buffer, without a lock; `commit` moves
      them to the shared output under the lock, and only then applies the bookmarks those
      records advanced (`defer`): a STATE, whichever thread writes it, never covers a
      record that is not in the output before it.
    - Every non-record message (STATE above all) commits the writing thread's records and
      flushes everything before it.
    - Into a pipe, output goes in writes of whole lines of at most PIPE_BUF bytes each,
      which the kernel never splits: a tap killed outright (SIGKILL) leaves no half line
      for the target (a single line longer than that is the only exception).
    - `terminate` (SIGTERM, Ctrl-C) waits for the line being written, then writes the final
      STATE after everything committed and closes the output: nothing follows it.
    """

    FLUSH_BYTES = 1 << 16

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending = bytearray()
        self._local = threading.local()
        self.lock = threading.RLock()
        self._closed = False
        self._reader_gone = False
        self._last_state: bytes | None = None
        self._fd: int | bool | None = False  # False: not looked at yet; None: not a pipe

    def _mine(self) -> t.Any:
        local = self._local
        if not hasattr(local, "buffer"):
            local.buffer = bytearray()
            local.frame = None
            local.head = local.tail = b""
            local.deferred = []
        return local

    def write_record(self, stream: str, record: dict, version: int | None,
                     extracted: datetime.datetime) -> None:
        """A RECORD message: the record encoded into place between parts encoded once."""
        local = self._mine()
        key = (stream, version, extracted)
        if key != local.frame:
            head = {"type": "RECORD", "stream": stream}
            tail = {"version": version} if version is not None else {}
            tail["time_extracted"] = extracted
            local.frame = key
            local.head = encoder.encode(head)[:-1] + b',"record":'
            local.tail = b"," + encoder.encode(tail)[1:] + b"\n"
        buffer = local.buffer
        buffer += local.head
        encoder.encode_into(record, buffer, -1)
        buffer += local.tail
        if len(buffer) >= self.FLUSH_BYTES:
            self.commit()

    def defer(self, apply: t.Callable[[], None]) -> None:
        """Run `apply` (a bookmark moving) when this thread's records are committed."""
        self._mine().deferred.append(apply)

    def commit(self) -> None:
        """This thread's records into the output, then the bookmarks they advanced."""
        local = self._mine()
        with self.lock:
            if local.buffer:
                self._pending += local.buffer
                local.buffer = bytearray()
            for apply in local.deferred:
                apply()
            local.deferred.clear()
            if len(self._pending) >= self.FLUSH_BYTES:
                self._flush()

    def write_message(self, message: Message) -> None:
        self.commit()
        with self.lock:
            self._pending += self.format_message(message)
            if len(self._pending) >= self.FLUSH_BYTES or not isinstance(message, RecordMessage):
                self._flush()

    def write_state(self, state: dict) -> None:
        """A STATE message unless it repeats the last one; what precedes it goes out anyway.

        Encoded in one call (atomic for other threads), so a stream updating its own
        bookmark meanwhile never makes it fail half-way.
        """
        self.commit()
        with self.lock:
            line = state_line(state)
            if line != self._last_state:
                self._pending += line
                self._last_state = bytes(line)
            self._flush()

    def flush(self) -> None:
        self.commit()
        with self.lock:
            self._flush()

    def terminate(self, state: dict, code: int) -> t.NoReturn:
        """Stop the process: the records committed so far, the final STATE, then nothing.
        Records other threads had not committed are left out, and so are their bookmarks.

        It waits for a line in progress, but not for ever: a reader that stopped reading
        (or is gone) must not keep the process alive after a signal.
        """
        locked = self.lock.acquire(timeout=TERMINATE_WAIT_SECONDS)
        try:
            if locked:
                self._last_state = None
                self._pending += state_line(state)
                self._flush()
            else:
                LOGGER.error("The output did not drain in %.0fs; stopping without a final "
                             "STATE (the last one written still holds).",
                             TERMINATE_WAIT_SECONDS)
        except OutputClosedError as exc:
            LOGGER.error("tap-analytics failed: %s", exc)
        finally:
            self._closed = True
            os._exit(code)

    def _flush(self) -> None:
        pending, self._pending = self._pending, bytearray()
        if self._reader_gone:
            raise OutputClosedError
        if not pending or self._closed:
            return
        try:
            fd = self._pipe_fd()
            if fd is None:
                sys.stdout.buffer.write(pending)
                sys.stdout.flush()
            else:
                _write_lines(fd, pending)
        except BrokenPipeError:
            # not an OSError to callers: click would swallow that silently
            self._reader_gone = True
            raise OutputClosedError from None

    def _pipe_fd(self) -> int | None:
        if self._fd is False:
            self._fd = None
            try:
                fd = sys.stdout.fileno()
                if stat.S_ISFIFO(os.fstat(fd).st_mode):
                    sys.stdout.flush()
                    self._fd = fd
            except (AttributeError, OSError, ValueError):  # a stdout that is not a file
                pass
        return self._fd  # type: ignore[return-value]


def state_line(state: dict) -> bytes:
    """A STATE message, the state encoded in one C call: other threads cannot change it
    half-way (the SDK's `to_dict` walks it in Python first)."""
    return b'{"type":"STATE","value":' + encoder.encode(state) + b"}\n"


def _write_lines(fd: int, data: bytearray) -> None:
    """Write whole lines in writes of at most PIPE_BUF bytes; a longer line alone, once the
    pipe has room for all of it (`_write_whole`)."""
    view = memoryview(data)
    start, size = 0, len(data)
    while start < size:
        end = start + PIPE_BUF
        if end < size:
            cut = data.rfind(b"\n", start, end)
            end = cut + 1 if cut >= start else data.find(b"\n", end) + 1 or size
        else:
            end = size
        if end - start > PIPE_BUF:
            _write_whole(fd, view[start:end])
        else:
            os.write(fd, view[start:end])  # at most PIPE_BUF: never split
        start = end
    view.release()


def _write_whole(fd: int, line: memoryview) -> None:
    """A line longer than PIPE_BUF (a big STATE, say) in one write() that cannot block:
    it waits until the pipe has room for all of it, so a kill cannot leave half of it.
    A reader that goes away meanwhile ends the wait (BrokenPipeError), as a write would."""
    need = len(line) + 2 * PAGE  # a partly filled page buffer may not take more bytes
    try:
        capacity = fcntl.fcntl(fd, F_GETPIPE_SZ)
        if need > capacity:
            capacity = fcntl.fcntl(fd, F_SETPIPE_SZ, 1 << (need - 1).bit_length())
        if capacity - _queued(fd) < need:
            _wait_for_room(fd, capacity, need)
    except BrokenPipeError:
        raise
    except OSError:  # a pipe that will not grow: write it as well as can be done
        pass
    written = 0
    while written < len(line):
        written += os.write(fd, line[written:])


def _wait_for_room(fd: int, capacity: int, need: int) -> None:
    """Until the reader has drained the pipe enough; POLLERR on a pipe's write end means
    its reader closed it (Linux), and nothing will ever drain it then."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    gone = select.POLLERR | select.POLLHUP
    while capacity - _queued(fd) < need:
        if any(events & gone for _, events in poller.poll(10)):
            raise BrokenPipeError(errno.EPIPE, "the pipe's reader is gone")
        time.sleep(0.001)  # the reader is draining the pipe


def _queued(fd: int) -> int:
    """Bytes waiting in the pipe (FIONREAD works on either end on Linux)."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def record_maps(stream_maps: t.Sequence[t.Any], writer: t.Any
                ) -> list[tuple[str, t.Any, t.Callable[..., None]]]:
    """(alias, transform, write) per stream map, decided once per schema version: transform
    None where the map is the identity; write is ours, or one that makes ordinary messages
    for a writer the caller handed in."""
    if isinstance(writer, BufferedMsgSpecWriter):
        write = writer.write_record
    else:
        def write(alias: str, record: dict, version: int | None,
                  extracted: datetime.datetime) -> None:
            writer.write_message(RecordMessage(stream=alias, record=record, version=version,
                                               time_extracted=extracted))
    return [(m.stream_alias, None if _is_identity(m) else m.transform, write)
            for m in stream_maps]


def write_records(maps: list[tuple[str, t.Any, t.Callable[..., None]]], record: dict,
                  version: int | None, extracted: datetime.datetime) -> None:
    """The SDK's record path (stream maps) for one conformed record, no message objects."""
    for alias, transform, write in maps:
        mapped = record if transform is None else transform(record)
        if mapped is not None:
            write(alias, mapped, version, extracted)


def _is_identity(stream_map: t.Any) -> bool:
    """The SDK's default map, with flattening off, returns each record unchanged."""
    return type(stream_map) is SameRecordTransform and not stream_map.flattening_enabled


class OutputStateWriter:
    """The tap's state writer: STATE through the writer's lock, records flushed first even
    when the STATE repeats the last one (the SDK's writer then writes, and flushes, nothing)."""

    def __init__(self, writer: BufferedMsgSpecWriter) -> None:
        self._writer = writer

    def write_state(self, state: dict) -> None:
        self._writer.write_state(state)
