"""Status callbacks in PostgreSQL: the subscriptions, the outbox and the history cursor
(``sql/postgres_callbacks.sql``; the histories' order: ``history.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from dispatcher.core.callbacks import Delivery, StatusChange, Subscription
from dispatcher.core.channel import Channel
from dispatcher.core.results import Cursor
from dispatcher.store import callback_rows as cb
from dispatcher.store.postgres.history import (
    PostgresHistory,
    cursor_params,
    place,
    span,
    stored_cursor,
)

_CHANGES = {  # each channel's subscribed status changes in a range, and one item's
    Channel.TEXT: ("subscribed_text_changes", "text_status_changes"),
    Channel.VOICE: ("subscribed_call_changes", "call_status_changes"),
    Channel.EMAIL: ("subscribed_email_changes", "email_status_changes"),
}


def _as_is(value: datetime) -> datetime:
    return value


_PG = cb.Dialect(
    when=_as_is, put=_as_is, stamp=datetime.isoformat, unstamp=datetime.fromisoformat,
    event=lambda row: place(row["tx"], row["id"]),
)  # fmt: skip
"""asyncpg's instants are aware datetimes, the attempts' are ISO 8601, and an event's
place is its transaction's and its id's (``history.py``)."""


class PostgresCallbacks(PostgresHistory):
    async def callback_subscription(self, channel: Channel, source_id: str) -> Subscription | None:
        row = await self._fetchrow("callback_subscription", channel.value, source_id)
        return None if row is None else cb.subscription(channel, row, _PG)

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
                subscribed = [cb.subscription_params(s, _PG) for s in subscriptions]
                await db.executemany(self.query("upsert_callback_subscription"), subscribed)
            if deliveries:
                rows = [cb.delivery_params(d, _PG) for d in deliveries]
                await db.executemany(self.query("insert_callback"), rows)
            if cursor is not None:
                await db.execute(self.query("set_callback_cursor"), *cursor_params(cursor))

    async def callback_cursor(self) -> Cursor | None:
        return stored_cursor(await self._fetchrow("callback_cursor"))

    async def subscribed_changes(
        self, after: Cursor, upto: Cursor, limit: int
    ) -> list[tuple[Subscription, StatusChange]]:
        found: list[tuple[Subscription, StatusChange]] = []
        for channel, start, end in cb.ranges(after, upto):
            rows = await self._fetch(_CHANGES[channel][0], *span(start, end), limit)
            found += [cb.subscribed_change(channel, row, _PG) for row in rows]
        return found

    async def status_changes(self, channel: Channel, source_id: str) -> list[StatusChange]:
        rows = await self._fetch(_CHANGES[channel][1], source_id)
        return [cb.change(channel, row, _PG) for row in rows]

    async def callback_heads(self, limit: int) -> list[Delivery]:
        return [cb.delivery(row, _PG) for row in await self._fetch("callback_heads", limit)]

    async def update_callback(self, delivery: Delivery) -> None:
        await self._execute(
            "update_callback", delivery.state.value, delivery.next_at,
            cb.attempts_json(delivery.attempts, _PG), delivery.id,
        )  # fmt: skip

    async def callbacks_of(self, channel: Channel, source_id: str) -> list[Delivery]:
        rows = await self._fetch("callbacks_of", channel.value, source_id)
        return [cb.delivery(row, _PG) for row in rows]

    async def callback_backlog(self) -> dict[str, int]:
        return {row[0]: int(row[1]) for row in await self._fetch("callback_backlog")}
