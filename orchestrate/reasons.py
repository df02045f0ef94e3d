"""Why a `meltano run` failed, in one line: the line of its log that explains.

Meltano ends a failed run with summaries that name no cause ("Block run completed",
"Loader failed", a link to SQLAlchemy's error pages): the cause is an earlier line.
"""

from __future__ import annotations

import re

TAP_FAILED = re.compile(r"tap-analytics failed: (.*?)(?:\s+cmd_type=|\s*$)")
# Meltano's own error lines ("[error    ] meltano      Another ... is already running ...")
MELTANO_ERROR = re.compile(r"\[error\s*\]\s+meltano\s+(.*\S)")
# Summaries that name no cause
GENERIC = re.compile(r"Block run completed|Run completed|Extractor failed|Loader failed|"
                     r"Run invocation could not be completed|sqlalche\.me/e/")
# An exception a plugin printed: "psycopg.OperationalError: connection ..."
EXCEPTION = re.compile(r"\b[A-Za-z_][\w.]*(?:Error|Exception|Exit)\b\)?:? .*\S")


def failure_reason(lines: list[str]) -> str:
    """The first line that explains: the tap's one line; else Meltano's own refusal or
    error; else the target's exception; never Meltano's summary ("Block run completed")."""
    for line in reversed(lines):
        match = TAP_FAILED.search(line)
        if match:
            return match.group(1).strip()
    for line in lines:
        match = MELTANO_ERROR.search(line)
        if match and not GENERIC.search(match.group(1)):
            return match.group(1).strip()[:500]
    for line in lines:
        if "target-postgres" not in line:
            continue
        match = EXCEPTION.search(line.split(" cmd_type=", 1)[0])
        if match:
            return match.group(0).strip()[:500]
    errors = [ln for ln in lines if "error" in ln.lower() and not GENERIC.search(ln)]
    return (errors or lines or ["meltano run failed without output"])[-1].strip()[:500]
