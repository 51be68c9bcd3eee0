"""Logging set-up, done once by the entry point. Modules only call getLogger."""

from __future__ import annotations

import logging
import sys

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class KeyValueFormatter(logging.Formatter):
    """``time level event key=value ...``: stable event names with structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(
            f"{key}={value}" for key, value in vars(record).items() if key not in _STANDARD
        )
        line = f"{self.formatTime(record)} {record.levelname} {record.getMessage()}"
        if fields:
            line = f"{line} {fields}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


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
