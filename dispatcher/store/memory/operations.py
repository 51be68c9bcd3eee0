"""What the operator's status and the monitoring figures read of the in-memory store."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection

from dispatcher.core.model import Lane, Message, TextStatus
from dispatcher.core.tally import STORE_WRITE, Histogram
from dispatcher.store.memory.tables import MemoryTables
from dispatcher.store.port import WorkCallback, Workers

_ERRORS = frozenset({TextStatus.FAILED, TextStatus.UNDELIVERED, TextStatus.UNREACHABLE})


class MemoryOperations(MemoryTables):
    def __init__(self) -> None:
        super().__init__()
        self._write_seconds = Histogram(STORE_WRITE)

    @property
    def write_seconds(self) -> Histogram:
        return self._write_seconds

    async def queued_by_lane(self) -> dict[Lane, int]:
        return dict(
            Counter(m.lane for m in self._messages.values() if m.status is TextStatus.QUEUED)
        )

    async def recent_errors(self, limit: int) -> list[Message]:
        found: list[Message] = []
        for event in reversed(self._text_log):
            if len(found) >= limit:
                break
            if event.applied and event.status in _ERRORS:
                found.append(self._messages[event.message_id])
        return found

    def on_work(self, callback: WorkCallback) -> None:
        """One service alone on this store: all the work it has, it queued itself."""

    async def workers(self) -> Workers | None:
        """One service alone on this store: no registry of workers."""
        return None

    async def owners(self, keys: Collection[str]) -> dict[str, str] | None:
        """One service alone on this store: it holds every key."""
        return None
