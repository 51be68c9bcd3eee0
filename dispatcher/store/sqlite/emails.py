"""Email in SQLite."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime

from dispatcher.core.emails import Email, EmailEvent, EmailStatus
from dispatcher.store.sqlite import rows as r
from dispatcher.store.sqlite.connection import SQLiteConnection
from dispatcher.store.sqlite.rows import Params


class SQLiteEmails(SQLiteConnection):
    _email_seq = 0  # the last seq given, read at open

    async def open(self) -> None:
        await super().open()
        row = await self._one("email_max_seq", ())
        self._email_seq = int(row[0]) if row else 0

    async def _email_or_none(self, name: str, params: Params) -> Email | None:
        row = await self._one(name, params)
        return r.email(row) if row is not None else None

    async def insert_email(self, email: Email, events: Sequence[EmailEvent]) -> Email:
        self._email_seq += 1  # taken now: other inserts may move it while this one waits
        stored = replace(email, seq=self._email_seq)
        await self._write(
            ("insert_email", [r.email_row(stored)]),
            ("insert_email_event", [r.email_event_row(e) for e in events]),
        )
        return stored

    async def update_email(
        self,
        email: Email,
        events: Sequence[EmailEvent],
        next_slot: tuple[str, datetime] | None = None,
    ) -> None:
        e = email
        projection = (
            e.status.value, e.reason, e.provider_code, e.provider_id, e.attempt_id,
            r.us_or_none(e.sent_at), r.us(e.updated_at), e.id,
        )  # fmt: skip
        statements: list[tuple[str, list[Params]]] = [
            # Neither writes anything for an email the store does not have.
            ("insert_email_event", [r.email_event_row(event) for event in events]),
            ("update_email", [projection]),
        ]
        if next_slot is not None:
            relay, at = next_slot
            statements.append(("set_email_slot", [(relay, r.us(at))]))
        await self._write(*statements)  # one batch: one transaction

    async def add_email_events(self, events: Sequence[EmailEvent]) -> None:
        # Written only for an email the store has (insert_email_event's condition).
        if events:
            await self._write(("insert_email_event", [r.email_event_row(e) for e in events]))

    async def get_email(self, email_id: str) -> Email | None:
        return await self._email_or_none("get_email", (email_id,))

    async def email_by_idempotency_key(self, key: str) -> Email | None:
        return await self._email_or_none("email_by_idempotency_key", (key,))

    async def email_history(self, email_id: str) -> list[EmailEvent]:
        return [r.email_event(row) for row in await self._rows("email_history", (email_id,))]

    async def emails_in_status(self, statuses: Collection[EmailStatus], limit: int) -> list[Email]:
        names = sorted({s.value for s in statuses})
        rows = await self._rows("emails_in_status", (json.dumps(names), limit))
        return [r.email(row) for row in rows]

    async def find_emails(self, recipient: str, limit: int) -> list[Email]:
        return [r.email(row) for row in await self._rows("find_emails", (recipient, limit))]

    async def email_counts(self) -> dict[EmailStatus, int]:
        return {EmailStatus(row[0]): int(row[1]) for row in await self._rows("email_counts", ())}

    async def email_slots(self) -> dict[str, datetime]:
        return {row[0]: r.at(row[1]) for row in await self._rows("email_slots", ())}
