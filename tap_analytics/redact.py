"""Keep secrets out of every log line, error message and metric.

Secrets (API key, client secret, access tokens) are registered here as soon as the
tap learns them; a logging filter on the root logger and `redact()` on error text
replace each of them, including their URL-encoded forms, with `***`.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import quote, quote_plus

MASK = "***"
_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
# Never log a credential-looking query parameter, even one we were not told about.
_QUERY_SECRET = re.compile(
    r"(?i)([?&](?:api[_-]?key|access_token|client_secret|token|key)=)[^&\s'\"]+"
)


def register_secret(value: object) -> None:
    """Remember a secret value so that it is masked wherever it would be printed."""
    global _pattern
    if not isinstance(value, str) or len(value) < 4:
        return
    forms = {value, quote(value, safe=""), quote_plus(value)}
    with _lock:
        if forms <= _secrets:
            return
        _secrets.update(forms)
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def redact(text: str) -> str:
    """Return `text` with every registered secret and credential query value masked."""
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return _QUERY_SECRET.sub(rf"\1{MASK}", text)


class RedactingFilter(logging.Filter):
    """Rewrite a log record's message (and its traceback text) with secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(formatted)
            record.exc_info = None
        return True


_FILTER = RedactingFilter()


def install_log_redaction() -> None:
    """Attach the filter to every handler there is (root's and any logger's own)."""
    loggers = [logging.getLogger(), *(
        logger for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger))]
    for logger in loggers:
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
