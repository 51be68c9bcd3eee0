"""Email in PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dispatcher.core.emails import Email, EmailEvent, EmailResult, EmailStatus
from dispatcher.core.model import Lane, Source
from dispatcher.store.postgres.base import PostgresBase, Record

if TYPE_CHECKING:
    from dispatcher.store.postgres.base import Connection


def _email(row: Record) -> Email:
    """Rows of the email queries become emails here and only here (the columns are the
    email's fields)."""
    fields = dict(row.items())
    return Email(**{**fields, "lane": Lane(row["lane"]), "status": EmailStatus(row["status"])})


def _email_event(row: Record) -> EmailEvent:
    return EmailEvent(
        email_id=row["email_id"], at=row["at"],
        status=EmailStatus(row["status"]) if row["status"] is not None else None,
        result=EmailResult(row["result"]) if row["result"] is not None else None,
        reason=row["reason"], provider_code=row["provider_code"],
        source=Source(row["source"]), applied=row["applied"], detail=row["detail"],
    )  # fmt: skip


def _email_params(e: Email) -> tuple[object, ...]:
    return (
        e.id, e.relay, e.sender, e.recipient, e.subject, e.text, e.html, int(e.lane),
        e.status.value, e.reason, e.provider_code, e.provider_id, e.attempt_id, e.sent_at,
        e.idempotency_key, e.fingerprint, e.trigger, e.campaign_id, e.accepted_at,
        e.updated_at, e.track_opens, e.track_clicks,
    )  # fmt: skip


def _event_columns(events: Sequence[EmailEvent]) -> tuple[list[object], ...]:
    """The events as one array per column (``insert_email_events``)."""
    return (
        [e.email_id for e in events], [e.at for e in events],
        [e.status.value if e.status is not None else None for e in events],
        [e.result.value if e.result is not None else None for e in events],
        [e.reason for e in events], [e.provider_code for e in events],
        [e.source.value for e in events], [e.applied for e in events],
        [e.detail for e in events],
    )  # fmt: skip


class PostgresEmails(PostgresBase):
    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        # An email's seq is its submission order: this process's inserts take theirs in
        # the order they were called (the emails go oldest first).
        self._email_order = asyncio.Lock()

    async def _append_email_events(self, db: Connection, events: Sequence[EmailEvent]) -> None:
        if events:
            await db.execute(self.query("insert_email_events"), *_event_columns(events))

    async def _email_or_none(self, name: str, *args: object) -> Email | None:
        row = await self._fetchrow(name, *args)
        return _email(row) if row is not None else None

    async def _emails(self, name: str, *args: object) -> list[Email]:
        return [_email(row) for row in await self._fetch(name, *args)]

    async def insert_email(self, email: Email, events: Sequence[EmailEvent]) -> Email:
        async with self._email_order, self._transaction() as db:
            seq = await db.fetchval(self.query("insert_email"), *_email_params(email))
            await self._append_email_events(db, events)
        return replace(email, seq=int(seq))

    async def update_email(
        self,
        email: Email,
        events: Sequence[EmailEvent],
        next_slot: tuple[str, datetime] | None = None,
    ) -> None:
        e = email
        projection = (e.id, e.status.value, e.reason, e.provider_code, e.provider_id,
                      e.attempt_id, e.sent_at, e.updated_at)  # fmt: skip
        async with self._transaction() as db:  # one transaction: all of it or none
            # Neither writes anything for an email the store does not have.
            await self._append_email_events(db, events)
            await db.execute(self.query("update_email"), *projection)
            if next_slot is not None:
                await db.execute(self.query("set_email_slot"), *next_slot)

    async def add_email_events(self, events: Sequence[EmailEvent]) -> None:
        if events:
            async with self._transaction() as db:
                await self._append_email_events(db, events)

    async def get_email(self, email_id: str) -> Email | None:
        return await self._email_or_none("get_email", email_id)

    async def email_by_idempotency_key(self, key: str) -> Email | None:
        return await self._email_or_none("email_by_idempotency_key", key)

    async def email_history(self, email_id: str) -> list[EmailEvent]:
        return [_email_event(row) for row in await self._fetch("email_history", email_id)]

    async def emails_in_status(self, statuses: Collection[EmailStatus], limit: int) -> list[Email]:
        return await self._emails("emails_in_status", sorted({s.value for s in statuses}), limit)

    async def find_emails(self, recipient: str, limit: int) -> list[Email]:
        return await self._emails("find_emails", recipient, limit)

    async def email_counts(self) -> dict[EmailStatus, int]:
        return {EmailStatus(row["status"]): row["n"] for row in await self._fetch("email_counts")}

    async def email_slots(self) -> dict[str, datetime]:
        return {row["relay"]: row["next_slot_at"] for row in await self._fetch("email_slots")}
