"""What a strict target asks of a tap's messages beyond each RECORD's schema: every message
names a selected stream, and a stream's SCHEMA comes before its RECORDs and its
ACTIVATE_VERSION (target-postgres stops on an ACTIVATE_VERSION of a stream it has no
SCHEMA for)."""

from __future__ import annotations

import typing as t


def assert_singer_order(messages: t.Iterable[dict], selected: t.Collection[str],
                        state_before: dict | None = None) -> None:
    """Messages only for `selected` streams, SCHEMA first; STATE bookmarks only for them
    (or as `state_before` had them: a stream not synced keeps its bookmark untouched)."""
    before = (state_before or {}).get("bookmarks", {})
    schemas: set[str] = set()
    for number, message in enumerate(messages, 1):
        kind = message["type"]
        if kind == "STATE":
            for stream, mark in message["value"].get("bookmarks", {}).items():
                assert stream in selected or mark == before.get(stream), (
                    f"message {number}: STATE has a bookmark for {stream!r}, not selected")
            continue
        stream = message["stream"]
        assert stream in selected, f"message {number}: {kind} of {stream!r}, not selected"
        if kind == "SCHEMA":
            schemas.add(stream)
        else:
            assert stream in schemas, f"message {number}: {kind} of {stream!r} before its SCHEMA"
