"""Status callbacks in memory: the subscriptions, the outbox and the history cursor."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from dispatcher.core.callbacks import (
    Delivery,
    DeliveryState,
    StatusChange,
    Subscription,
)
from dispatcher.core.calls import CallEvent
from dispatcher.core.channel import Channel
from dispatcher.core.emails import EmailEvent
from dispatcher.core.model import Event
from dispatcher.core.results import Cursor
from dispatcher.store.memory.tables import MemoryTables, unique

_AnyEvent = Event | CallEvent | EmailEvent


class MemoryCallbacks(MemoryTables):
    async def callback_subscription(self, channel: Channel, source_id: str) -> Subscription | None:
        return self._subscriptions.get((channel, source_id))

    async def any_callback_subscription(self) -> bool:
        return bool(self._subscriptions)

    async def add_callbacks(
        self,
        deliveries: Sequence[Delivery],
        subscriptions: Sequence[Subscription] = (),
        cursor: Cursor | None = None,
    ) -> None:
        taken = {(d.channel, d.source_id, d.seq) for d in self._outbox.values()}
        unique([f"{d.channel} {d.source_id} {d.seq}" for d in deliveries],
               {f"{c} {i} {n}" for c, i, n in taken}, "callback sequence number")  # fmt: skip
        for sub in subscriptions:
            self._subscriptions[(sub.channel, sub.source_id)] = sub
        for delivery in deliveries:
            stored = replace(delivery, id=len(self._outbox) + 1)
            self._outbox[stored.id] = stored
        if cursor is not None:
            self._callback_cursor = cursor

    async def callback_cursor(self) -> Cursor | None:
        return self._callback_cursor

    async def subscribed_changes(
        self, after: Cursor, upto: Cursor, limit: int
    ) -> list[tuple[Subscription, StatusChange]]:
        found: list[tuple[Subscription, StatusChange]] = []
        logs: list[tuple[Channel, Sequence[_AnyEvent], int, int]] = [
            (Channel.TEXT, self._text_log, after.texts, upto.texts),
            (Channel.VOICE, self._call_log, after.calls, upto.calls),
            (Channel.EMAIL, self._email_log, after.emails, upto.emails),
        ]
        for channel, log, start, end in logs:
            taken = 0
            for seq in range(start + 1, end + 1):
                if taken >= limit:
                    break
                change = _change(channel, seq, log[seq - 1])
                if change is None:
                    continue
                sub = self._subscriptions.get((channel, change.source_id))
                if sub is None:
                    continue
                found.append((sub, change))
                taken += 1
        return found

    async def status_changes(self, channel: Channel, source_id: str) -> list[StatusChange]:
        logs: dict[Channel, Sequence[_AnyEvent]] = {
            Channel.TEXT: self._text_log, Channel.VOICE: self._call_log,
            Channel.EMAIL: self._email_log,
        }  # fmt: skip
        log = logs[channel]
        changes = (_change(channel, seq, event) for seq, event in enumerate(log, start=1))
        return [c for c in changes if c is not None and c.source_id == source_id]

    async def callback_heads(self, limit: int) -> list[Delivery]:
        heads: dict[tuple[str, str], Delivery] = {}
        for delivery in self._outbox.values():
            key = (delivery.channel, delivery.source_id)
            if delivery.state is DeliveryState.PENDING and key not in heads:
                heads[key] = delivery  # the outbox is in seq order per item
        return sorted(heads.values(), key=lambda d: (d.next_at, d.id))[:limit]

    async def update_callback(self, delivery: Delivery) -> None:
        if delivery.id in self._outbox:  # an unknown delivery stays unknown
            old = self._outbox[delivery.id]
            self._outbox[delivery.id] = replace(
                old, state=delivery.state, next_at=delivery.next_at, attempts=delivery.attempts
            )

    async def callbacks_of(self, channel: Channel, source_id: str) -> list[Delivery]:
        item = (channel, source_id)
        found = [d for d in self._outbox.values() if (d.channel, d.source_id) == item]
        return sorted(found, key=lambda d: d.seq)

    async def callback_backlog(self) -> dict[str, int]:
        pending = (d.url for d in self._outbox.values() if d.state is DeliveryState.PENDING)
        return dict(Counter(pending))


def _change(channel: Channel, seq: int, event: _AnyEvent) -> StatusChange | None:
    """The status change an event is, if it is an applied one that set a status."""
    if not event.applied or event.status is None:
        return None
    source = (
        event.message_id if isinstance(event, Event)
        else event.call_id if isinstance(event, CallEvent) else event.email_id
    )  # fmt: skip
    return StatusChange(
        channel=channel, source_id=source, event=seq, status=event.status.value,
        reason=event.reason, error_code=event.provider_code, at=event.at,
    )  # fmt: skip
