"""What the operator's status and the monitoring figures read of SQLite."""

from __future__ import annotations

from collections.abc import Collection

from dispatcher.core.model import Lane, Message
from dispatcher.core.tally import Histogram
from dispatcher.store.port import WorkCallback, Workers
from dispatcher.store.sqlite import rows as r
from dispatcher.store.sqlite.connection import SQLiteConnection


class SQLiteOperations(SQLiteConnection):
    @property
    def write_seconds(self) -> Histogram:
        return self._write_seconds

    async def queued_by_lane(self) -> dict[Lane, int]:
        return {Lane(row[0]): int(row[1]) for row in await self._rows("queued_by_lane", ())}

    async def recent_errors(self, limit: int) -> list[Message]:
        return [r.message(row) for row in await self._rows("recent_errors", (limit,))]

    def on_work(self, callback: WorkCallback) -> None:
        """One service alone on this store: all the work it has, it queued itself."""

    async def workers(self) -> Workers | None:
        """One service alone on this store: no registry of workers."""
        return None

    async def owners(self, keys: Collection[str]) -> dict[str, str] | None:
        """One service alone on this store: it holds every key."""
        return None
