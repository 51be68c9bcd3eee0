"""Voice calls in SQLite."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime

from dispatcher.core.calls import Call, CallEvent, CallStatus
from dispatcher.store.sqlite import rows as r
from dispatcher.store.sqlite.connection import SQLiteConnection
from dispatcher.store.sqlite.rows import Params


class SQLiteCalls(SQLiteConnection):
    async def _call_or_none(self, name: str, params: Params) -> Call | None:
        row = await self._one(name, params)
        return r.call(row) if row is not None else None

    async def _calls(self, name: str, params: Params) -> list[Call]:
        return [r.call(row) for row in await self._rows(name, params)]

    async def insert_call(self, call: Call, events: Sequence[CallEvent]) -> Call:
        self._call_seq += 1  # taken now: other inserts may move it while this one waits
        stored = replace(call, seq=self._call_seq)
        await self._write(
            ("insert_call", [r.call_row(stored)]),
            ("insert_call_event", [r.call_event_row(e) for e in events]),
        )
        return stored

    async def update_call(
        self,
        call: Call,
        events: Sequence[CallEvent],
        next_slot: tuple[str, datetime] | None = None,
    ) -> None:
        c = call
        projection = (
            c.status.value, c.reason, c.provider_code, c.provider_id, c.attempt_id,
            r.us_or_none(c.placed_at), c.answered_by, int(c.script_done), r.us(c.updated_at),
            c.id,
        )  # fmt: skip
        statements: list[tuple[str, list[Params]]] = [
            ("insert_call_event", [r.call_event_row(e) for e in events]),
            ("update_call", [projection]),
        ]
        if next_slot is not None:
            account, at = next_slot
            statements.append(("set_call_slot", [(account, r.us(at))]))
        await self._write(*statements)  # one batch: one transaction

    async def get_call(self, call_id: str) -> Call | None:
        return await self._call_or_none("get_call", (call_id,))

    async def call_by_provider_id(self, provider_id: str) -> Call | None:
        return await self._call_or_none("call_by_provider_id", (provider_id,))

    async def call_by_idempotency_key(self, key: str) -> Call | None:
        return await self._call_or_none("call_by_idempotency_key", (key,))

    async def call_history(self, call_id: str) -> list[CallEvent]:
        return [r.call_event(row) for row in await self._rows("call_history", (call_id,))]

    async def calls_in_status(self, statuses: Collection[CallStatus], limit: int) -> list[Call]:
        names = sorted({s.value for s in statuses})
        return await self._calls("calls_in_status", (json.dumps(names), limit))

    async def find_calls(self, recipient: str, limit: int) -> list[Call]:
        return await self._calls("find_calls", (recipient, limit))

    async def call_counts(self) -> dict[CallStatus, int]:
        return {CallStatus(row[0]): int(row[1]) for row in await self._rows("call_counts", ())}

    async def call_slots(self) -> dict[str, datetime]:
        return {row[0]: r.at(row[1]) for row in await self._rows("call_slots", ())}
