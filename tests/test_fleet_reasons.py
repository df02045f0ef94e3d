"""The reason a failed account's run prints is the line that explains, never Meltano's
summary ("Block run completed") or a link to SQLAlchemy's error pages."""

from __future__ import annotations

import pytest

from orchestrate.reasons import failure_reason

TS = "2026-12-03T10:28:39.828166Z"
REFUSED = ("Another 'dev:tap-analytics-to-target-postgres:x' pipeline is already running which "
           "started at 2026-12-03 10:28:37. Wait until 2026-12-03 10:33:38 when the job will "
           "be automatically cancelled if stale, or ignore this check using the '--force' "
           "option.")
SUMMARY = [f"{TS} [error    ] meltano      Block run completed",
           f"{TS} [info     ] meltano      Run completed"]


@pytest.mark.parametrize(("lines", "reason"), [
    ([f"{TS} [error    ] meltano      {REFUSED}", *SUMMARY], REFUSED),
    ([f"{TS} [info     ] target-postgres psycopg.OperationalError: consuming input failed: "
      "terminating connection due to administrator command cmd_type=elb consumer=True",
      f"{TS} [info     ] target-postgres (Background on this error at: "
      "https://sqlalche.me/e/20/e3q8) cmd_type=elb consumer=True", *SUMMARY],
     "psycopg.OperationalError: consuming input failed: terminating connection due to "
     "administrator command"),
    ([f"{TS} [info     ] tap-analytics failed: teams: GET /v1/teams answered 401 "
      "(unauthorized) cmd_type=elb", f"{TS} [error    ] meltano      Extractor failed",
      *SUMMARY], "teams: GET /v1/teams answered 401 (unauthorized)"),
])
def test_the_reason_is_the_line_that_explains(lines: list[str], reason: str) -> None:
    assert failure_reason(lines) == reason


TARGET_RAISED = [
    f"{TS} [info     ] target-postgres Traceback (most recent call last):",
    f"{TS} [info     ] target-postgres     for stream_map in self.mapper.stream_maps[name]:",
    f"{TS} [info     ] target-postgres KeyError: 'segments'",
    *[f'{TS} [info     ] tap-analytics METRIC: {{"type":"timer","metric":"http_request_'
      f'duration","value":0.01,"tags":{{"stream":"contacts","status":"succeeded"}}}}'] * 400,
    f"{TS} [error    ] meltano      Task exception was never retrieved",
    f"{TS} [error    ] meltano",
    "╭───────────────────── Traceback (most recent call last) ──────────────────────╮",
    "│ ❱ 333 │   │   │   await writer.wait_closed()                                 │",
    "╰──────────────────────────────────────────────────────────────────────────────╯",
    "BrokenPipeError",
]


@pytest.mark.parametrize("tap_line", [
    None, f"{TS} [info     ] tap-analytics tap-analytics failed: the reader of the tap's "
          "output (the target) went away cmd_type=elb"])
def test_a_target_that_raises_is_the_reason_however_much_follows(tap_line) -> None:
    """Meltano's own tracebacks of the broken pipe, hundreds of lines after the target's
    exception, and the tap's line that the target went away, all name no cause."""
    lines = [*TARGET_RAISED, *([tap_line] if tap_line else []), *SUMMARY]
    assert failure_reason(lines) == "KeyError: 'segments'"
