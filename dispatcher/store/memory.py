"""The in-memory store: a public fake, run through the same contract suite as SQLite.

It keeps each number's queue as a heap ordered by (lane, seq), so it stays usable
for tests with many messages.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from dispatcher import metrics
from dispatcher.calls import Call, CallEvent, CallStatus
from dispatcher.lifecycle import Resource
from dispatcher.metrics import EngagementRow, MetricsQuery
from dispatcher.model import (
    INBOUND,
    DntEntry,
    Event,
    Lane,
    Message,
    TextStatus,
    Transition,
    apply,
)
from dispatcher.store import NumberState
from dispatcher.store.automation_verbs import MemoryAutomations
from dispatcher.store.campaign_verbs import MemoryCampaigns


class MemoryStore(MemoryCampaigns, MemoryAutomations, Resource):
    """Everything in dictionaries; nothing survives the process."""

    def __init__(self) -> None:
        self._messages: dict[str, Message] = {}
        self._events: dict[str, list[Event]] = defaultdict(list)
        self._by_key: dict[str, str] = {}
        self._by_provider: dict[str, str] = {}
        self._by_recipient: dict[str, list[str]] = defaultdict(list)
        self._accepted_to: dict[str, str] = {}
        self._queues: dict[str, list[tuple[Lane, int, str]]] = defaultdict(list)
        self._slots: dict[str, datetime] = {}
        self._paused: set[str] = set()
        self._dnt: dict[str, DntEntry] = {}
        self._seq = 0
        self._on_heap: set[str] = set()
        self._calls: dict[str, Call] = {}
        self._call_events: dict[str, list[CallEvent]] = defaultdict(list)
        self._call_by_key: dict[str, str] = {}
        self._call_by_provider: dict[str, str] = {}
        self._calls_to: dict[str, list[str]] = defaultdict(list)
        self._call_slots: dict[str, datetime] = {}
        self._call_seq = 0
        self._voice_links: dict[str, tuple[str, str | None]] = {}  # message id, campaign
        self._plays: list[tuple[str, datetime]] = []
        self._link_messages: dict[str, tuple[str, str]] = {}  # token -> message id, plays
        self._text_log: list[Event] = []  # every text event, in the order written
        self._call_log: list[CallEvent] = []  # every call event, in the order written

    @classmethod
    def from_url(cls, url: str, **_options: object) -> MemoryStore:
        return cls()

    # -- submission ------------------------------------------------------------------
    async def insert_messages(
        self, items: Sequence[tuple[Message, Sequence[Event]]]
    ) -> list[Message]:
        return [await self.insert_message(message, events) for message, events in items]

    async def accepted_since(self, since: datetime) -> list[Message]:
        return sorted(
            (
                self._messages[mid]
                for mid in self._accepted_to.values()
                if self._messages[mid].accepted_at >= since
            ),
            key=_seq,
        )

    async def insert_message(self, message: Message, events: Sequence[Event]) -> Message:
        self._seq += 1
        stored = replace(message, seq=self._seq)
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
            self._accepted_to[stored.recipient] = stored.id
            self._enqueue(stored)
        return stored

    async def by_idempotency_key(self, key: str) -> Message | None:
        found = self._by_key.get(key)
        return self._messages[found] if found else None

    async def last_accepted_to(self, recipient: str) -> Message | None:
        found = self._accepted_to.get(recipient)
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

    async def head(self, sender: str) -> Message | None:
        queue = self._live_queue(sender)
        return self._messages[queue[0][2]] if queue else None

    async def heads(self, senders: Sequence[str], limit: int) -> dict[str, list[Message]]:
        result: dict[str, list[Message]] = {}
        for sender in senders:
            live = [
                self._messages[mid]
                for *_, mid in sorted(self._live_queue(sender))
                if self._messages[mid].status is TextStatus.QUEUED
            ]
            result[sender] = live[:limit]
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

    async def set_next_slot(self, sender: str, at: datetime) -> None:
        self._move_slot(sender, at)

    def _move_slot(self, sender: str, at: datetime) -> None:
        """A next slot only moves later."""
        if sender not in self._slots or at > self._slots[sender]:
            self._slots[sender] = at

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
        due = sorted((m for m in self._queued() if m.expires_at <= now), key=lambda m: m.seq)
        return due[:limit]

    # -- transitions -----------------------------------------------------------------
    async def record(
        self,
        transitions: Sequence[Transition],
        next_slots: Mapping[str, datetime] | None = None,
    ) -> None:
        for sender, at in (next_slots or {}).items():
            self._move_slot(sender, at)
        for step in transitions:
            message = self._messages[step.message_id]
            self._events[message.id].append(step.event)
            self._text_log.append(step.event)
            if not step.event.applied:
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

    # -- Do Not Text list ------------------------------------------------------------
    async def dnt_add(self, entry: DntEntry) -> DntEntry:
        return self._dnt.setdefault(entry.number, entry)

    async def dnt_remove(self, number: str) -> bool:
        return self._dnt.pop(number, None) is not None

    async def dnt_get(self, number: str) -> DntEntry | None:
        return self._dnt.get(number)

    async def dnt_many(self, numbers: Collection[str]) -> dict[str, DntEntry]:
        return {n: self._dnt[n] for n in numbers if n in self._dnt}

    async def dnt_list(self, limit: int) -> list[DntEntry]:
        return sorted(self._dnt.values(), key=lambda e: e.added_at)[:limit]

    # -- voice calls -----------------------------------------------------------------
    async def insert_call(self, call: Call, events: Sequence[CallEvent]) -> Call:
        self._call_seq += 1
        stored = replace(call, seq=self._call_seq)
        self._calls[stored.id] = stored
        self._call_events[stored.id].extend(events)
        self._call_log.extend(events)
        self._calls_to[stored.recipient].append(stored.id)
        if stored.idempotency_key:
            self._call_by_key[stored.idempotency_key] = stored.id
        if stored.provider_id:
            self._call_by_provider[stored.provider_id] = stored.id
        return stored

    async def update_call(
        self,
        call: Call,
        events: Sequence[CallEvent],
        next_slot: tuple[str, datetime] | None = None,
    ) -> None:
        old = self._calls[call.id]  # an unknown call raises KeyError before any change
        # Like the SQL adapters, only the mutable fields are replaced.
        new = replace(
            old,
            status=call.status,
            reason=call.reason,
            provider_code=call.provider_code,
            provider_id=call.provider_id,
            attempt_id=call.attempt_id,
            placed_at=call.placed_at,
            answered_by=call.answered_by,
            script_done=call.script_done,
            updated_at=call.updated_at,
        )
        self._call_events[call.id].extend(events)
        self._call_log.extend(events)
        self._calls[call.id] = new
        if old.provider_id != new.provider_id:
            if old.provider_id and self._call_by_provider.get(old.provider_id) == call.id:
                del self._call_by_provider[old.provider_id]
            if new.provider_id:
                self._call_by_provider[new.provider_id] = call.id
        if next_slot is not None:
            account, at = next_slot
            if account not in self._call_slots or at > self._call_slots[account]:
                self._call_slots[account] = at

    async def get_call(self, call_id: str) -> Call | None:
        return self._calls.get(call_id)

    async def call_by_provider_id(self, provider_id: str) -> Call | None:
        found = self._call_by_provider.get(provider_id)
        return self._calls[found] if found else None

    async def call_by_idempotency_key(self, key: str) -> Call | None:
        found = self._call_by_key.get(key)
        return self._calls[found] if found else None

    async def call_history(self, call_id: str) -> list[CallEvent]:
        return list(self._call_events.get(call_id, []))

    async def calls_in_status(self, statuses: Collection[CallStatus], limit: int) -> list[Call]:
        wanted = set(statuses)
        found = sorted((c for c in self._calls.values() if c.status in wanted), key=_call_seq)
        return found[:limit]

    async def find_calls(self, recipient: str, limit: int) -> list[Call]:
        found = [self._calls[i] for i in self._calls_to.get(recipient, [])]
        return sorted(found, key=_call_seq, reverse=True)[:limit]

    async def call_counts(self) -> dict[CallStatus, int]:
        return dict(Counter(c.status for c in self._calls.values()))

    async def call_slots(self) -> dict[str, datetime]:
        return dict(sorted(self._call_slots.items()))

    # -- voice links and engagement metrics ------------------------------------------
    async def add_voice_link(
        self,
        token: str,
        *,
        message_id: str,
        campaign_id: str | None,
        message: str,
        created_at: datetime,
    ) -> None:
        self._voice_links.setdefault(token, (message_id, campaign_id))
        self._link_messages.setdefault(token, (message_id, message))

    async def voice_link(self, token: str) -> tuple[str, str] | None:
        return self._link_messages.get(token)

    async def record_play(self, token: str, at: datetime) -> None:
        self._plays.append((token, at))

    async def engagement(self, query: MetricsQuery) -> list[EngagementRow]:
        rows: list[EngagementRow] = []
        for message in self._messages.values():
            rows += metrics.text_rows(message, self._events.get(message.id, ()))
        for call in self._calls.values():
            rows += metrics.call_rows(call, self._call_events.get(call.id, ()))
        for token, at in self._plays:
            if (link := self._voice_links.get(token)) is not None:
                message_id, campaign_id = link
                rows.append(metrics.play_row(
                    message_id=message_id, at=at, campaign_id=campaign_id,
                    message=self._messages.get(message_id),
                ))  # fmt: skip
        made: list[tuple[str, Message | Call]] = [
            *(("text", m) for m in self._messages.values()),
            *(("voice", c) for c in self._calls.values()),
        ]
        for channel, item in made:
            _, source_id = metrics.parse_trigger(item.trigger)
            source = self._engagement(source_id) if source_id else None
            row = metrics.activity_row(
                channel=channel, item_id=item.id, at=item.accepted_at, trigger=item.trigger,
                source_sender=source.sender if source else None,
                source_campaign=source.campaign_id if source else None,
            )  # fmt: skip
            if row is not None:
                rows.append(row)
        return [row for row in rows if query.matches(row)]

    def _engagement(self, item_id: str) -> Message | Call | None:
        return self._messages.get(item_id) or self._calls.get(item_id)


def _seq(message: Message) -> int:
    return message.seq


def _call_seq(call: Call) -> int:
    return call.seq
