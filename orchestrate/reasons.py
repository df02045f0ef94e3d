"""Why a `meltano run` failed, in one line: the line of its log that explains.

Meltano ends a failed run with summaries that name no cause ("Block run completed",
"Loader failed", a link to SQLAlchemy's error pages), and when the target dies while the tap
still writes, with its own tracebacks of the broken pipe ("Task exception was never
retrieved", `BrokenPipeError`), often hundreds of lines after the cause: the cause is an
earlier line, kept as the lines stream by whatever follows it.
"""

from __future__ import annotations

import re

TAP_FAILED = re.compile(r"tap-analytics failed: (.*?)(?:\s+cmd_type=|\s*$)")
# the tap's line when the target stopped reading first: the target's own error is the cause
TARGET_WENT_AWAY = "(the target) went away"
# Meltano's own error lines ("[error    ] meltano      Another ... is already running ...")
MELTANO_ERROR = re.compile(r"\[error\s*\]\s+meltano\s+(.*\S)")
# Summaries and framework noise that name no cause
GENERIC = re.compile(r"Block run completed|Run completed|Extractor failed|Loader failed|"
                     r"Run invocation could not be completed|sqlalche\.me/e/|"
                     r"Task exception was never retrieved|Exception in callback|"
                     r"BrokenPipeError|ConnectionResetError")
# An exception a plugin printed: "psycopg.OperationalError: connection ..."
EXCEPTION = re.compile(r"\b[A-Za-z_][\w.]*(?:Error|Exception|Exit)\b\)?:? .*\S")
TARGET = "target-postgres"


class FailureReason:
    """Fed every line of a run: keeps the lines that can explain a failure."""

    def __init__(self) -> None:
        self.tap: str | None = None  # the tap's one line (the last one)
        self.target: str | None = None  # the target's first exception
        self.meltano: str | None = None  # Meltano's first error that is not a summary
        self.error: str | None = None  # the last other line that says error
        self.last: str | None = None

    def feed(self, line: str) -> None:
        text = line.strip()
        if not text:
            return
        self.last = text[:500]
        match = TAP_FAILED.search(line)
        if match:
            self.tap = match.group(1).strip()
            return
        if TARGET in line:
            match = EXCEPTION.search(line.split(" cmd_type=", 1)[0])
            if match and self.target is None:
                self.target = match.group(0).strip()[:500]
                return
        match = MELTANO_ERROR.search(line)
        if match and not GENERIC.search(match.group(1)):
            self.meltano = self.meltano or match.group(1).strip()[:500]
        elif "error" in text.lower() and not GENERIC.search(text):
            self.error = text[:500]

    def reason(self) -> str:
        """The tap's line; else the target's exception (also when the tap only says the
        target went away); else Meltano's own refusal or error; never a summary."""
        if self.tap and not (self.target and TARGET_WENT_AWAY in self.tap):
            return self.tap
        return (self.target or self.meltano or self.tap or self.error or self.last
                or "meltano run failed without output")


def failure_reason(lines: list[str]) -> str:
    reasons = FailureReason()
    for line in lines:
        reasons.feed(line)
    return reasons.reason()
