"""The rows of the SQL adapters' status-callback queries as the core's values, and
the deliveries as rows.

The SQLite and PostgreSQL stores keep the subscriptions, the outbox and the cursor
with the same named queries in their own dialects (each adapter names the queries it
runs). Here, and only here, their rows
become :class:`~dispatcher.core.callbacks.Subscription`,
:class:`~dispatcher.core.callbacks.StatusChange` and
:class:`~dispatcher.core.callbacks.Delivery` values, and a delivery becomes a row.
What differs between the dialects is how they hold an instant and where an event
stands in its history: each hands over its own :class:`Dialect`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dispatcher.core.callbacks import Attempt, Delivery, DeliveryState, StatusChange, Subscription
from dispatcher.core.channel import Channel
from dispatcher.core.results import Cursor
from dispatcher.store.engagement_rows import Row


@dataclass(frozen=True, slots=True, kw_only=True)
class Dialect:
    """How a dialect holds what the callback rows carry."""

    when: Callable[[Any], datetime]  # a column's instant, as an aware UTC datetime
    put: Callable[[datetime], Any]  # an instant, as a parameter of the column
    stamp: Callable[[datetime], Any]  # an attempt's instant, in the attempts' JSON
    unstamp: Callable[[Any], datetime]  # ... and back
    event: Callable[[Row], int]  # a status change's place in its history


def ranges(after: Cursor, upto: Cursor) -> list[tuple[Channel, int, int]]:
    """Each channel's range ``(start, end]`` of its history between two cursors, the
    empty ones left out."""
    bounds = [(Channel.TEXT, after.texts, upto.texts), (Channel.VOICE, after.calls, upto.calls),
              (Channel.EMAIL, after.emails, upto.emails)]  # fmt: skip
    return [(channel, start, end) for channel, start, end in bounds if end > start]


def subscription(channel: Channel, row: Row, d: Dialect) -> Subscription:
    return Subscription(
        channel=channel, source_id=row["source_id"], url=row["url"],
        created_at=d.when(row["created_at"]), last_event=int(row["last_event"]),
        last_seq=row["last_seq"],
    )  # fmt: skip


def subscription_params(s: Subscription, d: Dialect) -> tuple[object, ...]:
    return (s.channel.value, s.source_id, s.url, d.put(s.created_at), s.last_event, s.last_seq)


def change(channel: Channel, row: Row, d: Dialect) -> StatusChange:
    return StatusChange(
        channel=channel, source_id=row["source_id"], event=d.event(row), status=row["status"],
        reason=row["reason"], error_code=row["provider_code"], at=d.when(row["at"]),
    )  # fmt: skip


def subscribed_change(channel: Channel, row: Row, d: Dialect) -> tuple[Subscription, StatusChange]:
    """A row of a channel's subscribed status changes: the subscription and the change."""
    return subscription(channel, row, d), change(channel, row, d)


def attempts_json(attempts: Iterable[Attempt], d: Dialect) -> str:
    """The attempts as JSON: ``[[instant, HTTP status or null, error or null]]``."""
    return json.dumps([[d.stamp(a.at), a.status_code, a.error] for a in attempts])


def delivery_params(x: Delivery, d: Dialect) -> tuple[object, ...]:
    return (x.channel.value, x.source_id, x.seq, x.event, x.url, x.status, x.reason,
            x.error_code, d.put(x.at), d.put(x.created_at), x.state.value, d.put(x.next_at),
            attempts_json(x.attempts, d))  # fmt: skip


def delivery(row: Row, d: Dialect) -> Delivery:
    attempts = tuple(
        Attempt(at=d.unstamp(at), status_code=code, error=error)
        for at, code, error in json.loads(row["attempts"])
    )
    return Delivery(
        id=row["id"], channel=Channel(row["channel"]), source_id=row["source_id"],
        seq=row["seq"], event=int(row["event"]), url=row["url"], status=row["status"],
        reason=row["reason"], error_code=row["error_code"], at=d.when(row["at"]),
        created_at=d.when(row["created_at"]), state=DeliveryState(row["state"]),
        next_at=d.when(row["next_at"]), attempts=attempts,
    )  # fmt: skip
