"""The per-record output path: stream maps applied, records written in buffered JSON lines."""

from __future__ import annotations

import datetime
import sys
import typing as t

from singer_sdk.contrib.msgspec import MsgSpecWriter, encoder
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.singerlib import RecordMessage

if t.TYPE_CHECKING:
    from singer_sdk.singerlib.encoding.simple import Message


class OutputClosedError(RuntimeError):
    """The reader of the tap's output (the target) went away."""


class BufferedMsgSpecWriter(MsgSpecWriter):
    """The SDK's msgspec writer, writing records in 64 KiB batches (stdout may be unbuffered).

    Every non-record message (STATE above all) flushes what came before it, so a STATE
    is never out before the records it covers: a crash loses no confirmed record.
    """

    FLUSH_BYTES = 1 << 16

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending = bytearray()
        self._frame_key: tuple | None = None
        self._head = self._tail = b""

    def write_record(self, stream: str, record: dict, version: int | None,
                     extracted: datetime.datetime) -> None:
        """A RECORD message: the record encoded into place between parts encoded once."""
        key = (stream, version, extracted)
        if key != self._frame_key:
            head = {"type": "RECORD", "stream": stream}
            tail = {"version": version} if version is not None else {}
            tail["time_extracted"] = extracted
            self._frame_key = key
            self._head = encoder.encode(head)[:-1] + b',"record":'
            self._tail = b"," + encoder.encode(tail)[1:] + b"\n"
        pending = self._pending
        pending += self._head
        encoder.encode_into(record, pending, -1)
        pending += self._tail
        if len(pending) >= self.FLUSH_BYTES:
            self._flush(pending)

    def write_message(self, message: Message) -> None:
        pending = self._pending
        pending += self.format_message(message)
        if len(pending) >= self.FLUSH_BYTES or not isinstance(message, RecordMessage):
            self._flush(pending)

    def _flush(self, pending: bytearray) -> None:
        # hand the buffer over first: a signal handler writing the final STATE
        # meanwhile starts a fresh one instead of writing these bytes twice
        self._pending = bytearray()
        try:
            sys.stdout.buffer.write(pending)
            sys.stdout.flush()
        except BrokenPipeError:
            # not an OSError to callers: click would swallow that silently
            msg = "the reader of the tap's output closed the pipe; stopping"
            raise OutputClosedError(msg) from None


def record_maps(stream_maps: t.Sequence[t.Any]) -> list[tuple[str, t.Any]]:
    """(alias, transform) per stream map; transform None where the map is the identity."""
    return [(m.stream_alias, None if _is_identity(m) else m.transform) for m in stream_maps]


def write_records(stream: t.Any, maps: list[tuple[str, t.Any]], record: dict) -> None:
    """The SDK's record path (stream maps) for one conformed record, no message objects."""
    extracted = stream.extracted_at
    writer = stream._tap.message_writer
    for alias, transform in maps:
        mapped = record if transform is None else transform(record)
        if mapped is None:
            continue
        if isinstance(writer, BufferedMsgSpecWriter):
            writer.write_record(alias, mapped, stream._stream_version, extracted)
        else:  # a writer handed in by the caller gets ordinary messages
            writer.write_message(RecordMessage(stream=alias, record=mapped,
                                               version=stream._stream_version,
                                               time_extracted=extracted))


def _is_identity(stream_map: t.Any) -> bool:
    """The SDK's default map, with flattening off, returns each record unchanged."""
    return type(stream_map) is SameRecordTransform and not stream_map.flattening_enabled
