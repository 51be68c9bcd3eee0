"""Voice calls in memory."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime

from dispatcher.core.calls import Call, CallEvent, CallStatus
from dispatcher.store.memory.tables import MemoryTables


class MemoryCalls(MemoryTables):
    async def insert_call(self, call: Call, events: Sequence[CallEvent]) -> Call:
        stored = self._call_rows.insert(call, events)
        self._calls_to[stored.recipient].append(stored.id)
        if stored.provider_id:
            self._call_by_provider[stored.provider_id] = stored.id
        return stored

    async def update_call(
        self,
        call: Call,
        events: Sequence[CallEvent],
        next_slot: tuple[str, datetime] | None = None,
    ) -> None:
        self._call_rows.append(call.id, events)
        self._call_rows.book(next_slot)
        old = self._calls.get(call.id)
        if old is None:  # an unknown call stays unknown
            return
        # Like the SQL adapters, only the mutable fields are replaced.
        new = replace(
            old,
            status=call.status,
            reason=call.reason,
            provider_code=call.provider_code,
            provider_id=call.provider_id,
            attempt_id=call.attempt_id,
            placed_at=call.placed_at,
            answered_by=call.answered_by,
            script_done=call.script_done,
            updated_at=call.updated_at,
        )
        self._calls[call.id] = new
        if old.provider_id != new.provider_id:
            if old.provider_id and self._call_by_provider.get(old.provider_id) == call.id:
                del self._call_by_provider[old.provider_id]
            if new.provider_id:
                self._call_by_provider[new.provider_id] = call.id

    async def get_call(self, call_id: str) -> Call | None:
        return self._calls.get(call_id)

    async def call_by_provider_id(self, provider_id: str) -> Call | None:
        found = self._call_by_provider.get(provider_id)
        return self._calls[found] if found else None

    async def call_by_idempotency_key(self, key: str) -> Call | None:
        return self._call_rows.of_key(key)

    async def call_history(self, call_id: str) -> list[CallEvent]:
        return self._call_rows.history(call_id)

    async def calls_in_status(self, statuses: Collection[CallStatus], limit: int) -> list[Call]:
        return self._call_rows.in_status(statuses, limit)

    async def find_calls(self, recipient: str, limit: int) -> list[Call]:
        called = (self._calls[i] for i in self._calls_to.get(recipient, []))
        return self._call_rows.newest(called, limit)

    async def call_counts(self) -> dict[CallStatus, int]:
        return self._call_rows.counts()

    async def call_slots(self) -> dict[str, datetime]:
        return self._call_rows.slots()
