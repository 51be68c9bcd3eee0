"""Texts looked up by many idempotency keys at once, in SQLite."""

from __future__ import annotations

import json
from collections.abc import Collection

from dispatcher.core.model import Message
from dispatcher.store.sqlite import rows as r
from dispatcher.store.sqlite.connection import SQLiteConnection


class SQLiteKeys(SQLiteConnection):
    async def by_idempotency_keys(self, keys: Collection[str]) -> dict[str, Message]:
        found: dict[str, Message] = {}
        for chunk in r.chunks(list(keys)):
            for row in await self._rows("by_idempotency_keys", (json.dumps(chunk),)):
                message = r.message(row)
                found[row["idempotency_key"]] = message
        return found
