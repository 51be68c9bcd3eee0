"""Status callbacks in SQLite: the subscriptions, the outbox and the history cursor
(``sql/sqlite_callbacks.sql``). The outbox's rows become deliveries here."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from dispatcher.core.callbacks import (
    Attempt,
    Delivery,
    DeliveryState,
    StatusChange,
    Subscription,
)
from dispatcher.core.channel import Channel
from dispatcher.core.results import Cursor
from dispatcher.store.sqlite import rows as r
from dispatcher.store.sqlite.connection import SQLiteConnection
from dispatcher.store.sqlite.rows import Params, Row

_CHANGES = {
    Channel.TEXT: ("subscribed_text_changes", "text_status_changes"),
    Channel.VOICE: ("subscribed_call_changes", "call_status_changes"),
    Channel.EMAIL: ("subscribed_email_changes", "email_status_changes"),
}


class SQLiteCallbacks(SQLiteConnection):
    async def callback_subscription(self, channel: Channel, source_id: str) -> Subscription | None:
        row = await self._one("callback_subscription", (channel.value, source_id))
        return None if row is None else _subscription(channel, row)

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
            statements.append(("upsert_callback_subscription", [
                (s.channel.value, s.source_id, s.url, r.us(s.created_at), s.last_event,
                 s.last_seq) for s in subscriptions
            ]))  # fmt: skip
        if deliveries:
            statements.append(("insert_callback", [_row(d) for d in deliveries]))
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
        ranges = {
            Channel.TEXT: (after.texts, upto.texts), Channel.VOICE: (after.calls, upto.calls),
            Channel.EMAIL: (after.emails, upto.emails),
        }  # fmt: skip
        for channel, (start, end) in ranges.items():
            if end <= start:
                continue
            rows = await self._rows(_CHANGES[channel][0], (start, end, limit))
            found += [(_subscription(channel, row), _change(channel, row)) for row in rows]
        return found

    async def status_changes(self, channel: Channel, source_id: str) -> list[StatusChange]:
        rows = await self._rows(_CHANGES[channel][1], (source_id,))
        return [_change(channel, row) for row in rows]

    async def callback_heads(self, limit: int) -> list[Delivery]:
        return [_delivery(row) for row in await self._rows("callback_heads", (limit,))]

    async def update_callback(self, delivery: Delivery) -> None:
        await self._write(("update_callback", [(
            delivery.state.value, r.us(delivery.next_at), _attempts(delivery.attempts),
            delivery.id,
        )]))  # fmt: skip

    async def callbacks_of(self, channel: Channel, source_id: str) -> list[Delivery]:
        rows = await self._rows("callbacks_of", (channel.value, source_id))
        return [_delivery(row) for row in rows]

    async def callback_backlog(self) -> dict[str, int]:
        return {row[0]: row[1] for row in await self._rows("callback_backlog", ())}


def _subscription(channel: Channel, row: Row) -> Subscription:
    return Subscription(
        channel=channel, source_id=row["source_id"], url=row["url"],
        created_at=r.at(row["created_at"]), last_event=row["last_event"],
        last_seq=row["last_seq"],
    )  # fmt: skip


def _change(channel: Channel, row: Row) -> StatusChange:
    return StatusChange(
        channel=channel, source_id=row["source_id"], event=row["event"], status=row["status"],
        reason=row["reason"], error_code=row["provider_code"], at=r.at(row["at"]),
    )  # fmt: skip


def _attempts(attempts: Iterable[Attempt]) -> str:
    return json.dumps([[r.us(a.at), a.status_code, a.error] for a in attempts])


def _row(d: Delivery) -> Params:
    return (d.channel.value, d.source_id, d.seq, d.event, d.url, d.status, d.reason,
            d.error_code, r.us(d.at), r.us(d.created_at), d.state.value, r.us(d.next_at),
            _attempts(d.attempts))  # fmt: skip


def _delivery(row: Row) -> Delivery:
    attempts = tuple(
        Attempt(at=r.at(at), status_code=code, error=error)
        for at, code, error in json.loads(row["attempts"])
    )
    return Delivery(
        id=row["id"], channel=Channel(row["channel"]), source_id=row["source_id"],
        seq=row["seq"], event=row["event"], url=row["url"], status=row["status"],
        reason=row["reason"], error_code=row["error_code"], at=r.at(row["at"]),
        created_at=r.at(row["created_at"]), state=DeliveryState(row["state"]),
        next_at=r.at(row["next_at"]), attempts=attempts,
    )  # fmt: skip
