"""Texts in SQLite."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from datetime import datetime

import msgspec

from dispatcher.core.model import Event, Message, TextStatus, Transition
from dispatcher.store.port import NumberState
from dispatcher.store.sqlite import rows as r
from dispatcher.store.sqlite.connection import SQLiteConnection
from dispatcher.store.sqlite.rows import Params


class SQLiteTexts(SQLiteConnection):
    async def _message_or_none(self, name: str, params: Params) -> Message | None:
        row = await self._one(name, params)
        return r.message(row) if row is not None else None

    async def _messages(self, name: str, params: Params) -> list[Message]:
        shared = r.Shared()  # the values the read's messages have in common, once
        return [r.message(row, shared) for row in await self._rows(name, params)]

    # -- submission ------------------------------------------------------------------
    async def insert_message(self, message: Message, events: Sequence[Event]) -> Message:
        [stored] = await self.insert_messages([(message, events)])
        return stored

    async def insert_messages(
        self, items: Sequence[tuple[Message, Sequence[Event]]]
    ) -> list[Message]:
        stored: list[Message] = []
        rows: list[Params] = []
        events: list[Params] = []
        for m, first_events in items:
            self._seq += 1  # taken now: other inserts may move self._seq while this one waits
            stored.append(msgspec.structs.replace(m, seq=self._seq))
            rows.append(r.message_row(m, self._seq))
            events.extend(r.event_row(e) for e in first_events)
        # Ahead of the send path's transitions: no write still gathering touches it.
        await self._write(
            ("insert_message", rows), ("insert_event", events),
            messages=[m.id for m in stored], ahead=self.new_ahead(),
        )  # fmt: skip
        return stored

    async def accepted_since(self, since: datetime) -> list[Message]:
        return await self._messages("accepted_since", (r.us(since),))

    async def by_idempotency_key(self, key: str) -> Message | None:
        return await self._message_or_none("by_idempotency_key", (key,))

    # -- the queue -------------------------------------------------------------------
    async def heads(self, senders: Sequence[str], limit: int) -> dict[str, list[Message]]:
        result: dict[str, list[Message]] = {sender: [] for sender in senders}
        for chunk in r.chunks(list(senders)):
            for message in await self._messages("heads", (json.dumps(chunk), limit)):
                result[message.sender].append(message)
        return result

    async def queued_ahead(self, message: Message) -> int:
        lane = int(message.lane)
        row = await self._one("queued_ahead", (message.sender, lane, lane, message.seq))
        return int(row[0]) if row else 0

    async def numbers(self) -> list[NumberState]:
        return [
            NumberState(
                number=row[0],
                next_slot_at=r.at_or_none(row[1]),
                paused=bool(row[2]),
                depth=int(row[3]),
            )
            for row in await self._rows("numbers", ())
        ]

    async def set_paused(self, sender: str, paused: bool) -> None:
        await self._write(("set_paused", [(sender, int(paused))]))

    async def next_expiry(self) -> datetime | None:
        row = await self._one("next_expiry", ())
        return r.at_or_none(row[0]) if row else None

    async def expired(self, now: datetime, limit: int) -> list[Message]:
        return await self._messages("expired", (r.us(now), limit))

    # -- transitions -----------------------------------------------------------------
    async def record(
        self,
        transitions: Sequence[Transition],
        next_slots: Mapping[str, datetime] | None = None,
        *,
        ahead: bool = False,
    ) -> None:
        await self._recorded(transitions, next_slots, ahead=ahead)

    def record_soon(
        self,
        transitions: Sequence[Transition],
        next_slots: Mapping[str, datetime] | None = None,
    ) -> asyncio.Future[None]:
        return self._recorded(transitions, next_slots, shared=True)

    def _recorded(
        self,
        transitions: Sequence[Transition],
        next_slots: Mapping[str, datetime] | None,
        *,
        ahead: bool = False,
        shared: bool = False,
    ) -> asyncio.Future[None]:
        # A message's own insert is never among the writes a claim goes ahead of: a
        # text is claimed only once its insert has committed (its submission waits for
        # it, and the queue's heads are read from what is committed).
        updates = [
            (
                t.event.status.value, t.event.reason, t.event.provider_code, r.us(t.event.at),
                t.provider_id, t.attempt_id, r.us_or_none(t.send_started_at), t.message_id,
            )
            for t in transitions
            if t.event.applied
        ]  # fmt: skip
        return self.enqueue(
            ("insert_event", [r.event_row(t.event) for t in transitions]),
            ("apply_transition", updates),
            ("set_next_slot", [(n, r.us(at)) for n, at in (next_slots or {}).items()]),
            messages=[t.message_id for t in transitions],
            ahead=ahead,
            shared=shared,
        )

    async def in_status(self, status: TextStatus, limit: int) -> list[Message]:
        return await self._messages("in_status", (status.value, limit))

    # -- reads -----------------------------------------------------------------------
    async def get(self, message_id: str) -> Message | None:
        return await self._message_or_none("get", (message_id,))

    async def by_provider_id(self, provider_id: str) -> Message | None:
        return await self._message_or_none("by_provider_id", (provider_id,))

    async def history(self, message_id: str) -> list[Event]:
        return [r.event(row) for row in await self._rows("history", (message_id,))]

    async def find(self, recipient: str, limit: int) -> list[Message]:
        return await self._messages("find", (recipient, limit))

    async def counts(self) -> dict[TextStatus, int]:
        return {TextStatus(row[0]): int(row[1]) for row in await self._rows("counts", ())}
