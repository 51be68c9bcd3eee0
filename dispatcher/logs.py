"""Logging set-up, done once by the entry point. Modules only call getLogger.

Every line is one event: a stable event name (the log call's message, such as
``http.listening``) with its fields (the call's ``extra``), times in UTC. Two formats,
chosen with ``DISPATCHER_LOG_FORMAT``:

- ``text`` (the default), for people:
  ``2026-01-05T15:00:00.123Z INFO campaign.started campaign="Test 1" contacts=42``;
  a value is quoted (JSON string escapes) when it is empty or holds a space, a quote,
  an ``=``, a backslash or a control character.
- ``json``, for log collectors: one JSON object a line, ``time``, ``level``,
  ``event``, ``logger``, then the fields (and ``exception`` with the traceback).
"""

from __future__ import annotations

import enum
import json
import logging
import re
import sys
from datetime import UTC, date, datetime
from typing import Any

from dispatcher.errors import ConfigError

FORMATS = ("text", "json")
"""The log formats (``DISPATCHER_LOG_FORMAT``)."""

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_FIXED = ("time", "level", "event", "logger", "exception")
_PLAIN = re.compile(r"[^\s\"'=\\\x00-\x1f\x7f]+")


def utc_time(record: logging.LogRecord) -> str:
    """The record's time in UTC, ISO 8601 to the millisecond, with ``Z``."""
    at = datetime.fromtimestamp(record.created, UTC)
    return at.isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a log call gave in ``extra``, in the order given."""
    return {key: value for key, value in vars(record).items() if key not in _STANDARD}


def _plain(value: Any) -> Any:
    """A field's value as JSON can hold it (a time in ISO 8601, an enum's value)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return str(value)


def _text(value: Any) -> str:
    """A field's value as the text format writes it: bare, or quoted when needed."""
    text = value if isinstance(value, str) else str(_plain(value))
    if _PLAIN.fullmatch(text):
        return text
    return json.dumps(text, ensure_ascii=False)


class KeyValueFormatter(logging.Formatter):
    """``time level event key=value ...``: stable event names with structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{utc_time(record)} {record.levelname} {record.getMessage()}"
        extra = " ".join(f"{key}={_text(value)}" for key, value in fields(record).items())
        if extra:
            line = f"{line} {extra}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time``, ``level``, ``event``, ``logger``, the fields
    (one that would take a fixed key's name is written ``extra.<name>``), and
    ``exception`` when the call logged one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": utc_time(record),
            "level": record.levelname,
            "event": record.getMessage(),
            "logger": record.name,
        }
        for key, value in fields(record).items():
            entry[f"extra.{key}" if key in _FIXED else key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=_plain, separators=(",", ":"))


def configure(level: str = "INFO", log_format: str = "text") -> None:
    """Log every event at ``level`` and above to stderr, in ``log_format`` (one of
    :data:`FORMATS`; empty is ``text``)."""
    chosen = log_format.strip().lower() or "text"
    if chosen not in FORMATS:
        raise ConfigError(
            f"DISPATCHER_LOG_FORMAT: {log_format!r} is not a log format; use "
            + " or ".join(FORMATS),
            field="DISPATCHER_LOG_FORMAT",
        )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    driver = logging.getLogger("asyncpg.pool")
    driver.filters[:] = [f for f in driver.filters if not isinstance(f, _OneLine)]
    driver.addFilter(_OneLine())


class _OneLine(logging.Filter):
    """The PostgreSQL driver's pool logs each retry of a lost connection (every 1 to 60
    s while the database is down) with its traceback: the line keeps the error, without
    the traceback (the service's own store.* events say what it means)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and (exc := record.exc_info[1]) is not None:
            record.msg, record.args = f"{record.getMessage()}: {type(exc).__name__}: {exc}", None
            record.exc_info, record.exc_text = None, None
        return True


class Reminder:
    """A problem that keeps happening, logged once and then at most every ``every``
    seconds (each reminder counts what happened since the last line), instead of once
    per occurrence. Times are the caller's monotonic clock."""

    def __init__(self, every: float = 60.0) -> None:
        self._every = every
        self._last: float | None = None
        self._unsaid = 0

    def occurred(self, now: float) -> int | None:
        """Count one occurrence; the occurrences to report if a line is due, else None."""
        self._unsaid += 1
        if self._last is not None and now - self._last < self._every:
            return None
        self._last, said, self._unsaid = now, self._unsaid, 0
        return said
