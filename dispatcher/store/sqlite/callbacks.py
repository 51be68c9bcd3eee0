"""Status callbacks in SQLite: the subscriptions, the outbox and the history cursor
(``sql/sqlite_callbacks.sql``). The outbox's rows become deliveries here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dispatcher.core.callbacks import Delivery, StatusChange, Subscription
from dispatcher.core.channel import Channel
from dispatcher.core.results import Cursor
from dispatcher.store import callback_rows as cb
from dispatcher.store.sqlite import rows as r
from dispatcher.store.sqlite.connection import SQLiteConnection
from dispatcher.store.sqlite.rows import Params

_CHANGES = {  # each channel's subscribed status changes in a range, and one item's
    Channel.TEXT: ("subscribed_text_changes", "text_status_changes"),
    Channel.VOICE: ("subscribed_call_changes", "call_status_changes"),
    Channel.EMAIL: ("subscribed_email_changes", "email_status_changes"),
}


_SQLITE = cb.Dialect(when=r.at, put=r.us, stamp=r.us, unstamp=r.at, event=lambda row: row["event"])
"""Instants are microseconds since the epoch, in the columns and in the attempts' JSON;
an event's place is its row's."""


class SQLiteCallbacks(SQLiteConnection):
    async def callback_subscription(self, channel: Channel, source_id: str) -> Subscription | None:
        row = await self._one("callback_subscription", (channel.value, source_id))
        return None if row is None else cb.subscription(channel, row, _SQLITE)

    async def any_callback_subscription(self) -> bool:
        row = await self._one("any_callback_subscription", ())
        return bool(row and row[0])

    async def add_callbacks(
        self,
        deliveries: Sequence[Delivery],
        subscriptions: Sequence[Subscription] = (),
        cursor: Cursor | None = None,
    ) -> None:
        statements: list[tuple[str, Iterable[Params]]] = []
        if subscriptions:
            subscribed = [cb.subscription_params(s, _SQLITE) for s in subscriptions]
            statements.append(("upsert_callback_subscription", subscribed))
        if deliveries:
            rows = [cb.delivery_params(d, _SQLITE) for d in deliveries]
            statements.append(("insert_callback", rows))
        if cursor is not None:
            statements.append(
                ("set_callback_cursor", [(cursor.texts, cursor.calls, cursor.emails)])
            )
        if statements:
            await self._write(*statements)

    async def callback_cursor(self) -> Cursor | None:
        row = await self._one("callback_cursor", ())
        return None if row is None else Cursor(texts=row[0], calls=row[1], emails=row[2])

    async def subscribed_changes(
        self, after: Cursor, upto: Cursor, limit: int
    ) -> list[tuple[Subscription, StatusChange]]:
        found: list[tuple[Subscription, StatusChange]] = []
        for channel, start, end in cb.ranges(after, upto):
            rows = await self._rows(_CHANGES[channel][0], (start, end, limit))
            found += [cb.subscribed_change(channel, row, _SQLITE) for row in rows]
        return found

    async def status_changes(self, channel: Channel, source_id: str) -> list[StatusChange]:
        rows = await self._rows(_CHANGES[channel][1], (source_id,))
        return [cb.change(channel, row, _SQLITE) for row in rows]

    async def callback_heads(self, limit: int) -> list[Delivery]:
        return [cb.delivery(row, _SQLITE) for row in await self._rows("callback_heads", (limit,))]

    async def update_callback(self, delivery: Delivery) -> None:
        attempts = cb.attempts_json(delivery.attempts, _SQLITE)
        params = (delivery.state.value, r.us(delivery.next_at), attempts, delivery.id)
        await self._write(("update_callback", [params]))

    async def callbacks_of(self, channel: Channel, source_id: str) -> list[Delivery]:
        rows = await self._rows("callbacks_of", (channel.value, source_id))
        return [cb.delivery(row, _SQLITE) for row in rows]

    async def callback_backlog(self) -> dict[str, int]:
        return {row[0]: row[1] for row in await self._rows("callback_backlog", ())}
