"""Voice calls in memory."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime

from dispatcher.core.calls import Call, CallEvent, CallStatus
from dispatcher.store.memory.tables import MemoryTables, unique


class MemoryCalls(MemoryTables):
    async def insert_call(self, call: Call, events: Sequence[CallEvent]) -> Call:
        unique([call.id], self._calls, "call")
        unique([call.idempotency_key], self._call_by_key, "idempotency key")
        self._call_seq += 1
        stored = replace(call, seq=self._call_seq)
        self._calls[stored.id] = stored
        self._call_events[stored.id].extend(events)
        self._call_log.extend(events)
        self._calls_to[stored.recipient].append(stored.id)
        if stored.idempotency_key:
            self._call_by_key[stored.idempotency_key] = stored.id
        if stored.provider_id:
            self._call_by_provider[stored.provider_id] = stored.id
        return stored

    async def update_call(
        self,
        call: Call,
        events: Sequence[CallEvent],
        next_slot: tuple[str, datetime] | None = None,
    ) -> None:
        self._call_events[call.id].extend(events)
        self._call_log.extend(events)
        if next_slot is not None:
            account, at = next_slot
            if account not in self._call_slots or at > self._call_slots[account]:
                self._call_slots[account] = at
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
        found = self._call_by_key.get(key)
        return self._calls[found] if found else None

    async def call_history(self, call_id: str) -> list[CallEvent]:
        return list(self._call_events.get(call_id, []))

    async def calls_in_status(self, statuses: Collection[CallStatus], limit: int) -> list[Call]:
        wanted = set(statuses)
        found = sorted((c for c in self._calls.values() if c.status in wanted), key=_seq)
        return found[:limit]

    async def find_calls(self, recipient: str, limit: int) -> list[Call]:
        found = [self._calls[i] for i in self._calls_to.get(recipient, [])]
        return sorted(found, key=_seq, reverse=True)[:limit]

    async def call_counts(self) -> dict[CallStatus, int]:
        return dict(Counter(c.status for c in self._calls.values()))

    async def call_slots(self) -> dict[str, datetime]:
        return dict(sorted(self._call_slots.items()))


def _seq(call: Call) -> int:
    return call.seq
