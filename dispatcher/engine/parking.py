"""Provider reports that arrive before their send is recorded as taken.

A carrier can report on a text or call before the service has written down the id
the carrier gave it (the report raced the acknowledgement). Such a report is held
here, by provider id, and handed back once the send is recorded. The hold is
bounded: past ``limit`` provider ids the oldest is dropped (and logged); a report
dropped so is not lost for good, since a later report or the next start's poll
brings the final status.
"""

from __future__ import annotations

import logging
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

R = TypeVar("R")

LIMIT = 10_000


class Parked(Generic[R]):
    """Early reports by provider id, oldest first."""

    def __init__(self, *, limit: int = LIMIT, what: str = "report") -> None:
        self._limit = limit
        self._what = what
        self._held: dict[str, list[R]] = {}

    def park(self, provider_id: str, report: R) -> None:
        if provider_id not in self._held and len(self._held) >= self._limit:
            oldest = next(iter(self._held))
            del self._held[oldest]
            log.warning(f"{self._what}.dropped", extra={"provider_id": oldest})
        self._held.setdefault(provider_id, []).append(report)

    def release(self, provider_id: str) -> list[R]:
        """The reports held for ``provider_id`` (none: an empty list), no longer held."""
        return self._held.pop(provider_id, [])

    def __len__(self) -> int:
        return len(self._held)
