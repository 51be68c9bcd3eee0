"""Texts in memory. Each number's queue is a heap ordered by
(lane, seq), so the fake stays usable for tests with many messages."""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime

import msgspec

from dispatcher.core.model import (
    INBOUND,
    Event,
    Lane,
    Message,
    TextStatus,
    Transition,
    apply,
)
from dispatcher.core.tally import Histogram
from dispatcher.store.memory.tables import MemoryTables, unique
from dispatcher.store.port import NumberState


class MemoryTexts(MemoryTables):
    _write_seconds: Histogram  # each write's time (MemoryOperations keeps it)

    # -- submission ------------------------------------------------------------------
    async def insert_message(self, message: Message, events: Sequence[Event]) -> Message:
        [stored] = await self.insert_messages([(message, events)])
        return stored

    async def insert_messages(
        self, items: Sequence[tuple[Message, Sequence[Event]]]
    ) -> list[Message]:
        unique((m.id for m, _ in items), self._messages, "message")  # all or none
        unique((m.idempotency_key for m, _ in items), self._by_key, "idempotency key")
        return [self._insert(message, events) for message, events in items]

    def _insert(self, message: Message, events: Sequence[Event]) -> Message:
        self._seq += 1
        stored = msgspec.structs.replace(message, seq=self._seq)
        self._messages[stored.id] = stored
        self._events[stored.id].extend(events)
        self._text_log.extend(events)
        self._by_recipient[stored.recipient].append(stored.id)
        if stored.status in INBOUND:  # a contact's own texts are found by the contact too
            self._by_recipient[stored.sender].append(stored.id)
        if stored.idempotency_key:
            self._by_key[stored.idempotency_key] = stored.id
        if stored.provider_id:
            self._by_provider[stored.provider_id] = stored.id
        if stored.status is TextStatus.QUEUED:
            self._accepted.append(stored.id)
            self._enqueue(stored)
        return stored

    async def accepted_since(self, since: datetime) -> list[Message]:
        accepted = (self._messages[mid] for mid in self._accepted)
        return [m for m in accepted if m.accepted_at >= since]

    async def by_idempotency_key(self, key: str) -> Message | None:
        found = self._by_key.get(key)
        return self._messages[found] if found else None

    # -- the queue -------------------------------------------------------------------
    def _enqueue(self, message: Message) -> None:
        """Put a message on its number's heap, once (stale entries are dropped lazily)."""
        if message.id not in self._on_heap:
            self._on_heap.add(message.id)
            heapq.heappush(self._queues[message.sender], (message.lane, message.seq, message.id))

    def _live_queue(self, sender: str) -> list[tuple[Lane, int, str]]:
        queue = self._queues[sender]
        while queue and self._messages[queue[0][2]].status is not TextStatus.QUEUED:
            self._on_heap.discard(heapq.heappop(queue)[2])
        return queue

    def _depth(self, sender: str) -> int:
        return sum(
            1 for *_, mid in self._queues[sender] if self._messages[mid].status is TextStatus.QUEUED
        )

    async def heads(self, senders: Sequence[str], limit: int) -> dict[str, list[Message]]:
        result: dict[str, list[Message]] = {}
        messages = self._messages
        for sender in senders:
            live: list[Message] = []
            for *_, mid in _in_order(self._live_queue(sender)):
                if (message := messages[mid]).status is TextStatus.QUEUED:
                    live.append(message)
                    if len(live) == limit:
                        break
            result[sender] = live
        return result

    async def queued_ahead(self, message: Message) -> int:
        key = (message.lane, message.seq)
        return sum(
            1
            for lane, seq, mid in self._queues[message.sender]
            if (lane, seq) < key and self._messages[mid].status is TextStatus.QUEUED
        )

    async def numbers(self) -> list[NumberState]:
        depths = {sender: self._depth(sender) for sender in self._queues}
        names = set(self._slots) | self._paused | {s for s, d in depths.items() if d}
        return [
            NumberState(
                number=n,
                next_slot_at=self._slots.get(n),
                paused=n in self._paused,
                depth=depths.get(n, 0),
            )
            for n in sorted(names)
        ]

    async def set_paused(self, sender: str, paused: bool) -> None:
        if paused:
            self._paused.add(sender)
        else:
            self._paused.discard(sender)

    async def probe(self) -> None:
        """Memory always takes writes."""

    def _queued(self) -> list[Message]:
        return [m for m in self._messages.values() if m.status is TextStatus.QUEUED]

    async def next_expiry(self) -> datetime | None:
        return min((m.expires_at for m in self._queued()), default=None)

    async def expired(self, now: datetime, limit: int) -> list[Message]:
        due = sorted((m for m in self._queued() if m.expires_at <= now), key=_seq)
        return due[:limit]

    # -- transitions -----------------------------------------------------------------
    async def record(
        self,
        transitions: Sequence[Transition],
        next_slots: Mapping[str, datetime] | None = None,
        *,
        ahead: bool = False,  # written in order all the same
    ) -> None:
        self._record(transitions, next_slots)

    def record_soon(
        self,
        transitions: Sequence[Transition],
        next_slots: Mapping[str, datetime] | None = None,
    ) -> asyncio.Future[None]:
        written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._record(transitions, next_slots)
        written.set_result(None)
        return written

    def _record(
        self,
        transitions: Sequence[Transition],
        next_slots: Mapping[str, datetime] | None,
    ) -> None:
        began = time.perf_counter()
        for sender, at in (next_slots or {}).items():
            if sender not in self._slots or at > self._slots[sender]:  # only ever later
                self._slots[sender] = at
        self._apply(transitions)
        self._write_seconds.observe(time.perf_counter() - began)

    def _apply(self, transitions: Sequence[Transition]) -> None:
        for step in transitions:
            self._events[step.message_id].append(step.event)
            self._text_log.append(step.event)
            message = self._messages.get(step.message_id)
            if message is None or not step.event.applied:  # an unknown text stays unknown
                continue
            updated = apply(message, step)
            self._messages[message.id] = updated
            if updated.provider_id and updated.provider_id != message.provider_id:
                self._by_provider[updated.provider_id] = updated.id
            if updated.status is TextStatus.QUEUED:
                self._enqueue(updated)

    async def in_status(self, status: TextStatus, limit: int) -> list[Message]:
        found = sorted((m for m in self._messages.values() if m.status is status), key=_seq)
        return found[:limit]

    # -- reads -----------------------------------------------------------------------
    async def get(self, message_id: str) -> Message | None:
        return self._messages.get(message_id)

    async def by_provider_id(self, provider_id: str) -> Message | None:
        found = self._by_provider.get(provider_id)
        return self._messages[found] if found else None

    async def history(self, message_id: str) -> list[Event]:
        return list(self._events.get(message_id, []))

    async def find(self, recipient: str, limit: int) -> list[Message]:
        found = sorted({self._messages[i] for i in self._by_recipient.get(recipient, [])},
                       key=_seq, reverse=True)  # fmt: skip
        return found[:limit]

    async def counts(self) -> dict[TextStatus, int]:
        return dict(Counter(m.status for m in self._messages.values()))


def _seq(message: Message) -> int:
    return message.seq


def _in_order(heap: list[tuple[Lane, int, str]]) -> Iterator[tuple[Lane, int, str]]:
    """A heap's entries, smallest first, without sorting it: the next one is always a
    child of one already given (k entries cost O(k log k), not the heap's size)."""
    if not heap:
        return
    frontier = [(heap[0], 0)]
    size = len(heap)
    while frontier:
        entry, i = heapq.heappop(frontier)
        yield entry
        for child in (2 * i + 1, 2 * i + 2):
            if child < size:
                heapq.heappush(frontier, (heap[child], child))
