"""Texts looked up by many idempotency keys at once, in memory."""

from __future__ import annotations

from collections.abc import Collection

from dispatcher.core.model import Message
from dispatcher.store.memory.tables import MemoryTables


class MemoryKeys(MemoryTables):
    async def by_idempotency_keys(self, keys: Collection[str]) -> dict[str, Message]:
        return {key: self._messages[found] for key in keys
                if (found := self._by_key.get(key)) is not None}  # fmt: skip
