"""Status callbacks in PostgreSQL: the subscriptions, the outbox and the history cursor
(``sql/postgres_callbacks.sql``; the histories' order: ``history.py``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime

from dispatcher.core.callbacks import (
    Attempt,
    Delivery,
    DeliveryState,
    StatusChange,
    Subscription,
)
from dispatcher.core.channel import Channel
from dispatcher.core.results import Cursor
from dispatcher.store.postgres.base import Record
from dispatcher.store.postgres.history import (
    PostgresHistory,
    cursor_params,
    place,
    span,
    stored_cursor,
)

_CHANGES = {
    Channel.TEXT: ("subscribed_text_changes", "text_status_changes"),
    Channel.VOICE: ("subscribed_call_changes", "call_status_changes"),
    Channel.EMAIL: ("subscribed_email_changes", "email_status_changes"),
}


class PostgresCallbacks(PostgresHistory):
    async def callback_subscription(self, channel: Channel, source_id: str) -> Subscription | None:
        row = await self._fetchrow("callback_subscription", channel.value, source_id)
        return None if row is None else _subscription(channel, row)

    async def any_callback_subscription(self) -> bool:
        return bool(await self._fetchval("any_callback_subscription"))

    async def add_callbacks(
        self,
        deliveries: Sequence[Delivery],
        subscriptions: Sequence[Subscription] = (),
        cursor: Cursor | None = None,
    ) -> None:
        if not deliveries and not subscriptions and cursor is None:
            return
        async with self._transaction() as db:
            if subscriptions:
                await db.executemany(self.query("upsert_callback_subscription"), [
                    (s.channel.value, s.source_id, s.url, s.created_at, s.last_event, s.last_seq)
                    for s in subscriptions
                ])  # fmt: skip
            if deliveries:
                await db.executemany(self.query("insert_callback"), [_row(d) for d in deliveries])
            if cursor is not None:
                await db.execute(self.query("set_callback_cursor"), *cursor_params(cursor))

    async def callback_cursor(self) -> Cursor | None:
        return stored_cursor(await self._fetchrow("callback_cursor"))

    async def subscribed_changes(
        self, after: Cursor, upto: Cursor, limit: int
    ) -> list[tuple[Subscription, StatusChange]]:
        found: list[tuple[Subscription, StatusChange]] = []
        ranges = {
            Channel.TEXT: (after.texts, upto.texts), Channel.VOICE: (after.calls, upto.calls),
            Channel.EMAIL: (after.emails, upto.emails),
        }  # fmt: skip
        for channel, (start, end) in ranges.items():
            if end <= start:
                continue
            rows = await self._fetch(_CHANGES[channel][0], *span(start, end), limit)
            found += [(_subscription(channel, row), _change(channel, row)) for row in rows]
        return found

    async def status_changes(self, channel: Channel, source_id: str) -> list[StatusChange]:
        rows = await self._fetch(_CHANGES[channel][1], source_id)
        return [_change(channel, row) for row in rows]

    async def callback_heads(self, limit: int) -> list[Delivery]:
        return [_delivery(row) for row in await self._fetch("callback_heads", limit)]

    async def update_callback(self, delivery: Delivery) -> None:
        await self._execute(
            "update_callback", delivery.state.value, delivery.next_at,
            _attempts(delivery.attempts), delivery.id,
        )  # fmt: skip

    async def callbacks_of(self, channel: Channel, source_id: str) -> list[Delivery]:
        rows = await self._fetch("callbacks_of", channel.value, source_id)
        return [_delivery(row) for row in rows]

    async def callback_backlog(self) -> dict[str, int]:
        return {row[0]: int(row[1]) for row in await self._fetch("callback_backlog")}


def _subscription(channel: Channel, row: Record) -> Subscription:
    return Subscription(
        channel=channel, source_id=row["source_id"], url=row["url"],
        created_at=row["created_at"], last_event=int(row["last_event"]),
        last_seq=row["last_seq"],
    )  # fmt: skip


def _change(channel: Channel, row: Record) -> StatusChange:
    return StatusChange(
        channel=channel, source_id=row["source_id"], event=place(row["tx"], row["id"]),
        status=row["status"], reason=row["reason"], error_code=row["provider_code"],
        at=row["at"],
    )  # fmt: skip


def _attempts(attempts: Iterable[Attempt]) -> str:
    """The attempts as JSON: ``[[ISO 8601 time, HTTP status or null, error or null]]``."""
    return json.dumps([[a.at.isoformat(), a.status_code, a.error] for a in attempts])


def _row(d: Delivery) -> tuple[object, ...]:
    return (d.channel.value, d.source_id, d.seq, d.event, d.url, d.status, d.reason,
            d.error_code, d.at, d.created_at, d.state.value, d.next_at,
            _attempts(d.attempts))  # fmt: skip


def _delivery(row: Record) -> Delivery:
    attempts = tuple(
        Attempt(at=datetime.fromisoformat(at), status_code=code, error=error)
        for at, code, error in json.loads(row["attempts"])
    )
    return Delivery(
        id=row["id"], channel=Channel(row["channel"]), source_id=row["source_id"],
        seq=row["seq"], event=int(row["event"]), url=row["url"], status=row["status"],
        reason=row["reason"], error_code=row["error_code"], at=row["at"],
        created_at=row["created_at"], state=DeliveryState(row["state"]),
        next_at=row["next_at"], attempts=attempts,
    )  # fmt: skip
