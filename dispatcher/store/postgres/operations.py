"""What the operator's status and the monitoring figures read of PostgreSQL (the probe
and the write times are the base's)."""

from __future__ import annotations

from dispatcher.core.model import Lane, Message
from dispatcher.store.postgres.base import PostgresBase
from dispatcher.store.postgres.texts import message


class PostgresOperations(PostgresBase):
    async def queued_by_lane(self) -> dict[Lane, int]:
        return {Lane(row["lane"]): int(row["n"]) for row in await self._fetch("queued_by_lane")}

    async def recent_errors(self, limit: int) -> list[Message]:
        if limit <= 0:
            return []
        return [message(row) for row in await self._fetch("recent_errors", limit)]
