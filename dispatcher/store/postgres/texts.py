"""Texts in PostgreSQL: each number's queue, its events, its next slot and pause flag.

A number's next slot and pause flag are its pacing key's row (``pacing_keys``, the
table the leases use), so a key taken over by another worker keeps both. The writes of
texts (new texts, recorded transitions) run one after the other in the order they were
handed over, each in a transaction: ``seq`` follows the order of submission, and
:meth:`record_soon` is ordered after every earlier write. Records handed over while the
write before them runs are written together, in one transaction (a group commit). A
write the database ends as a deadlock (its rows and a number's, locked while another
session locks them in the other order) is run again in its turn, before the writes
after it (:meth:`~dispatcher.store.postgres.base.PostgresBase._rerun`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from dispatcher.core.model import INBOUND, Event, Lane, Message, Source, TextStatus, Transition
from dispatcher.store.port import NumberState
from dispatcher.store.postgres.base import PostgresBase, Record

if TYPE_CHECKING:
    from dispatcher.store.postgres.base import Connection

_T = TypeVar("_T")


class PostgresTexts(PostgresBase):
    _last_write: asyncio.Future[Any] | None = None  # the write handed over last
    _open_records: _Records | None = None  # records handed over last, not begun yet

    # -- submission ------------------------------------------------------------------
    async def insert_message(self, message: Message, events: Sequence[Event]) -> Message:
        [stored] = await self.insert_messages([(message, events)])
        return stored

    async def insert_messages(
        self, items: Sequence[tuple[Message, Sequence[Event]]]
    ) -> list[Message]:
        if not items:
            return []
        return await asyncio.shield(
            self._in_order(lambda: self._rerun("insert_messages", lambda: self._insert(items)))
        )

    async def _insert(self, items: Sequence[tuple[Message, Sequence[Event]]]) -> list[Message]:
        messages = [m for m, _ in items]
        keys = sorted({m.sender for m in messages if m.status not in INBOUND})
        async with self._transaction() as db:
            rows = await db.fetch(
                self.query("insert_messages"), *_columns(map(_message_row, messages), 21)
            )
            await self._insert_events(db, [e for _, events in items for e in events])
            if keys:  # each sending number has its pacing key, for the leases
                await db.execute(self.query("add_pacing_keys"), keys)
        seqs: dict[str, int] = {row["id"]: row["seq"] for row in rows}
        return [msgspec.structs.replace(m, seq=seqs[m.id]) for m in messages]

    async def accepted_since(self, since: datetime) -> list[Message]:
        return await self._messages("accepted_since", since)

    async def by_idempotency_key(self, key: str) -> Message | None:
        return await self._message("by_idempotency_key", key)

    async def by_idempotency_keys(self, keys: Collection[str]) -> dict[str, Message]:
        if not keys:
            return {}
        found = await self._messages("by_idempotency_keys", list(keys))
        return {m.idempotency_key: m for m in found if m.idempotency_key is not None}

    # -- the queue -------------------------------------------------------------------
    async def heads(self, senders: Sequence[str], limit: int) -> dict[str, list[Message]]:
        result: dict[str, list[Message]] = {sender: [] for sender in senders}
        if senders and limit > 0:
            for message in await self._messages("heads", list(result), limit):
                result[message.sender].append(message)
        return result

    async def queued_ahead(self, message: Message) -> int:
        found = await self._fetchval("queued_ahead", message.sender, int(message.lane), message.seq)
        return int(found or 0)

    async def numbers(self) -> list[NumberState]:
        return [
            NumberState(number=row["number"], next_slot_at=row["next_slot_at"],
                        paused=row["paused"], depth=int(row["depth"]))
            for row in await self._fetch("numbers")
        ]  # fmt: skip

    async def set_paused(self, sender: str, paused: bool) -> None:
        await self._execute("set_paused", sender, paused)

    async def next_expiry(self) -> datetime | None:
        found: datetime | None = await self._fetchval("next_expiry")
        return found

    async def expired(self, now: datetime, limit: int) -> list[Message]:
        return await self._messages("expired", now, limit)

    # -- transitions -----------------------------------------------------------------
    async def record(
        self,
        transitions: Sequence[Transition],
        next_slots: Mapping[str, datetime] | None = None,
        *,
        ahead: bool = False,  # written in order all the same
    ) -> None:
        await asyncio.shield(self.record_soon(transitions, next_slots))

    def record_soon(
        self,
        transitions: Sequence[Transition],
        next_slots: Mapping[str, datetime] | None = None,
    ) -> asyncio.Future[None]:
        records = self._open_records
        if records is None:  # the records that follow join it until its turn comes
            records = _Records()
            written = self._in_order(lambda: self._rerun("record", lambda: self._record(records)))
            self._open_records = records
            records.written = written
        records.add(transitions, next_slots or {})
        assert records.written is not None
        return records.written

    async def _record(self, records: _Records) -> None:
        """Write ``records`` (one or more records handed over one after the other) in
        one transaction: a group commit."""
        if self._open_records is records:
            self._open_records = None
        transitions = records.transitions
        slots = sorted(records.slots.items())
        if not transitions and not slots:
            return
        async with self._transaction() as db:
            if any(t.fenced for t in transitions):
                transitions, slots = await self._fenced(db, transitions, slots)
            changes = [
                (t.event.status.value, _plain(t.event.reason), t.event.provider_code,
                 t.event.at, t.provider_id, t.attempt_id, t.send_started_at, t.message_id)
                for t in transitions
                if t.event.applied
            ]  # fmt: skip
            await self._insert_events(db, [t.event for t in transitions])
            if changes:  # in order, one by one: a text may change twice in one write
                await db.executemany(self.query("apply_transition"), changes)
            if slots:
                await db.execute(
                    self.query("set_next_slots"), [k for k, _ in slots], [at for _, at in slots]
                )

    async def _fenced(
        self, db: Connection, transitions: list[Transition], slots: list[tuple[str, datetime]]
    ) -> tuple[list[Transition], list[tuple[str, datetime]]]:
        """Drop the fenced steps whose message is no longer in the status (and epoch)
        they expect, with their events; the rows that pass stay locked until the commit.
        A number's next slot is dropped too when every fenced step of its texts was
        (the worker that wrote them no longer owns it)."""
        fenced = [t for t in transitions if t.fenced and t.from_status is not None]
        rows = await db.fetch(
            self.query("fence_check"),
            [t.message_id for t in fenced],
            [t.from_status.value for t in fenced if t.from_status is not None],
            [t.epoch for t in fenced],
        )
        passed = {row["id"] for row in rows}
        dropped = {t.message_id for t in fenced if t.message_id not in passed}
        if not dropped:
            return transitions, slots
        kept = [t for t in transitions if not (t.fenced and t.message_id in dropped)]
        senders = await db.fetch(self.query("senders_of"), sorted(dropped | passed))
        gone = {row["sender"] for row in senders if row["id"] in dropped}
        gone -= {row["sender"] for row in senders if row["id"] in passed}
        return kept, [(key, at) for key, at in slots if key not in gone]

    async def _insert_events(self, db: Connection, events: list[Event]) -> None:
        if events:
            await db.execute(self.query("insert_events"), *_columns(map(_event_row, events), 8))

    def _in_order(self, write: Callable[[], Awaitable[_T]]) -> asyncio.Future[_T]:
        """Run ``write`` once every write handed over before it has ended (whether it
        committed or failed): the writes of texts apply in the order they were made."""
        before = self._last_write
        self._open_records = None  # a later record goes after this write

        async def in_turn() -> _T:
            if before is not None:
                await asyncio.wait([before])
            return await write()

        task = asyncio.ensure_future(in_turn())
        task.add_done_callback(_seen)
        self._last_write = task
        return task

    async def close(self) -> None:
        """Close once the writes handed over have ended."""
        if (last := self._last_write) is not None:
            await asyncio.wait([last])
        await super().close()

    async def in_status(self, status: TextStatus, limit: int) -> list[Message]:
        return await self._messages("in_status", status.value, limit)

    # -- reads -----------------------------------------------------------------------
    async def get(self, message_id: str) -> Message | None:
        return await self._message("get", message_id)

    async def by_provider_id(self, provider_id: str) -> Message | None:
        return await self._message("by_provider_id", provider_id)

    async def history(self, message_id: str) -> list[Event]:
        return [_event(row) for row in await self._fetch("history", message_id)]

    async def find(self, recipient: str, limit: int) -> list[Message]:
        return await self._messages("find", recipient, limit)

    async def counts(self) -> dict[TextStatus, int]:
        return {TextStatus(row["status"]): int(row["n"]) for row in await self._fetch("counts")}

    async def _message(self, name: str, *args: object) -> Message | None:
        row = await self._fetchrow(name, *args)
        return message(row) if row is not None else None

    async def _messages(self, name: str, *args: object) -> list[Message]:
        return [message(row) for row in await self._fetch(name, *args)]


class _Records:
    """Records handed over one after the other, written together (the events in the
    order given, each number's latest next slot)."""

    def __init__(self) -> None:
        self.transitions: list[Transition] = []
        self.slots: dict[str, datetime] = {}
        self.written: asyncio.Future[None] | None = None

    def add(self, transitions: Sequence[Transition], slots: Mapping[str, datetime]) -> None:
        self.transitions.extend(transitions)
        for number, at in slots.items():
            if number not in self.slots or at > self.slots[number]:
                self.slots[number] = at


def _seen(task: asyncio.Future[Any]) -> None:
    """Mark a write's failure as seen: its caller may have stopped waiting for it."""
    if not task.cancelled():
        task.exception()


def _plain(value: str | None) -> str | None:
    """A reason as a plain string (an enum's value)."""
    return value if value is None or type(value) is str else str(value)


def _columns(rows: Iterable[tuple[object, ...]], width: int) -> list[list[object]]:
    """Rows of ``width`` values as one list per column (the array parameters of one
    statement)."""
    columns: list[list[object]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


def message(row: Record) -> Message:
    """A text from its row."""
    return Message(
        id=row["id"], seq=row["seq"], sender=row["sender"], recipient=row["recipient"],
        body=row["body"], segments=row["segments"], lane=Lane(row["lane"]),
        status=TextStatus(row["status"]), reason=row["reason"],
        provider_code=row["provider_code"], provider_id=row["provider_id"],
        attempt_id=row["attempt_id"], duplicate_of=row["duplicate_of"],
        idempotency_key=row["idempotency_key"], fingerprint=row["fingerprint"],
        accepted_at=row["accepted_at"], expires_at=row["expires_at"],
        send_started_at=row["send_started_at"], updated_at=row["updated_at"],
        campaign_id=row["campaign_id"], trigger=row["trigger"],
    )  # fmt: skip


def _message_row(m: Message) -> tuple[object, ...]:
    return (
        m.id, m.sender, m.recipient, m.body, m.segments, int(m.lane), m.status.value,
        m.status is TextStatus.QUEUED, _plain(m.reason), m.provider_code, m.provider_id,
        m.attempt_id, m.duplicate_of, m.idempotency_key, m.fingerprint, m.accepted_at,
        m.expires_at, m.send_started_at, m.updated_at, m.campaign_id, m.trigger,
    )  # fmt: skip


def _event(row: Record) -> Event:
    return Event(
        message_id=row["message_id"], at=row["at"], status=TextStatus(row["status"]),
        reason=row["reason"], provider_code=row["provider_code"], source=Source(row["source"]),
        applied=row["applied"], detail=row["detail"],
    )  # fmt: skip


def _event_row(e: Event) -> tuple[object, ...]:
    return (e.message_id, e.at, e.status.value, _plain(e.reason), e.provider_code,
            e.source.value, e.applied, e.detail)  # fmt: skip
