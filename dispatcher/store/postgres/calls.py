"""Voice calls in PostgreSQL: each write is one statement (the call or its new
projection, its events, an account's next slot), so it is written whole or not at all.

Calls inserted by this process take their ``seq`` in the order they were asked for, as
in the other adapters (the identity column gives increasing numbers; the inserts are
sent one after the other, not raced over the pool's connections).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from dispatcher.core.calls import Call, CallEvent, CallStatus, VoiceResult
from dispatcher.core.model import Lane, Source
from dispatcher.store.postgres.base import PostgresBase, Record


class PostgresCalls(PostgresBase):
    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self._call_order = asyncio.Lock()

    async def _call_or_none(self, name: str, *args: object) -> Call | None:
        row = await self._fetchrow(name, *args)
        return call_of(row) if row is not None else None

    async def _calls(self, name: str, *args: object) -> list[Call]:
        return [call_of(row) for row in await self._fetch(name, *args)]

    async def insert_call(self, call: Call, events: Sequence[CallEvent]) -> Call:
        c = call
        params = (
            c.id, c.account, c.sender, c.recipient, c.script, c.script_name, int(c.lane),
            c.status.value, c.reason, c.provider_code, c.provider_id, c.attempt_id, c.placed_at,
            c.answered_by, c.script_done, c.idempotency_key, c.fingerprint, c.trigger,
            c.accepted_at, c.updated_at, c.campaign_id, c.expires_at,
        )  # fmt: skip
        async with self._call_order, self._transaction() as db:
            seq = await db.fetchval(self.query("insert_call"), *_event_columns(events), *params)
        return replace(call, seq=int(seq))

    async def update_call(
        self,
        call: Call,
        events: Sequence[CallEvent],
        next_slot: tuple[str, datetime] | None = None,
    ) -> None:
        c = call
        projection = (
            c.id, c.status.value, c.reason, c.provider_code, c.provider_id, c.attempt_id,
            c.placed_at, c.answered_by, c.script_done, c.updated_at,
        )  # fmt: skip
        account, slot = next_slot if next_slot is not None else (None, None)
        await self._execute("update_call", *_event_columns(events), *projection, account, slot)

    async def get_call(self, call_id: str) -> Call | None:
        return await self._call_or_none("get_call", call_id)

    async def call_by_provider_id(self, provider_id: str) -> Call | None:
        return await self._call_or_none("call_by_provider_id", provider_id)

    async def call_by_idempotency_key(self, key: str) -> Call | None:
        return await self._call_or_none("call_by_idempotency_key", key)

    async def call_history(self, call_id: str) -> list[CallEvent]:
        return [_call_event(row) for row in await self._fetch("call_history", call_id)]

    async def calls_in_status(self, statuses: Collection[CallStatus], limit: int) -> list[Call]:
        return await self._calls("calls_in_status", sorted({s.value for s in statuses}), limit)

    async def find_calls(self, recipient: str, limit: int) -> list[Call]:
        return await self._calls("find_calls", recipient, limit)

    async def call_counts(self) -> dict[CallStatus, int]:
        return {CallStatus(row["status"]): row["n"] for row in await self._fetch("call_counts")}

    async def call_slots(self) -> dict[str, datetime]:
        return {row["account"]: row["next_slot_at"] for row in await self._fetch("call_slots")}


def call_of(row: Record) -> Call:
    """A row of ``calls`` as the call it is (rows become calls here only)."""
    fields = dict(row.items())
    return Call(**{**fields, "lane": Lane(row["lane"]), "status": CallStatus(row["status"])})


def _call_event(row: Record) -> CallEvent:
    return CallEvent(
        call_id=row["call_id"], at=row["at"],
        status=CallStatus(row["status"]) if row["status"] is not None else None,
        result=VoiceResult(row["result"]) if row["result"] is not None else None,
        step=row["step"], reason=row["reason"], provider_code=row["provider_code"],
        source=Source(row["source"]), applied=row["applied"], detail=row["detail"],
    )  # fmt: skip


def _event_columns(events: Sequence[CallEvent]) -> tuple[list[Any], ...]:
    """The events as one array per column, in the order the call queries take them."""
    return (
        [e.call_id for e in events], [e.at for e in events],
        [e.status.value if e.status is not None else None for e in events],
        [e.result.value if e.result is not None else None for e in events],
        [e.step for e in events], [e.reason for e in events],
        [e.provider_code for e in events], [e.source.value for e in events],
        [e.applied for e in events], [e.detail for e in events],
    )  # fmt: skip
