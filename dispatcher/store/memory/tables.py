"""The in-memory store's tables: dictionaries and lists, shared by its parts."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Container, Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from dispatcher.core.callbacks import Delivery, Subscription
from dispatcher.core.calls import Call, CallEvent, CallStatus
from dispatcher.core.campaigns import Campaign, Contact
from dispatcher.core.consent import Entry as ConsentEntry
from dispatcher.core.emails import Email, EmailEvent, EmailStatus
from dispatcher.core.model import Event, Lane, Message
from dispatcher.core.results import Cursor, Run
from dispatcher.core.status_step import Projected
from dispatcher.errors import StoreError
from dispatcher.lifecycle import Resource

RunKey = tuple[str, str, str]  # rule, source id, result: a run exists once


class MemoryTables(Resource):
    """Every table of the in-memory store. Each part of the adapter (texts, calls,
    engagement, campaigns, automations) is a mixin over these."""

    def __init__(self) -> None:
        # texts
        self._messages: dict[str, Message] = {}
        self._events: dict[str, list[Event]] = defaultdict(list)
        self._by_key: dict[str, str] = {}
        self._by_provider: dict[str, str] = {}
        self._by_recipient: dict[str, list[str]] = defaultdict(list)
        self._accepted: list[str] = []  # ids of texts inserted as Queued, in queue order
        self._queues: dict[str, list[tuple[Lane, int, str]]] = defaultdict(list)
        self._on_heap: set[str] = set()
        self._slots: dict[str, datetime] = {}
        self._paused: set[str] = set()
        # the consent ledger, in the order it was recorded, and each contact's entries
        self._consent: list[ConsentEntry] = []
        self._consent_of: dict[str, list[ConsentEntry]] = defaultdict(list)
        self._seq = 0
        # calls (and, for the other parts, their rows by id, their events and the
        # history in the order it was written)
        self._call_rows: Kept[Call, CallEvent, CallStatus] = Kept("call")
        self._calls, self._call_events = self._call_rows.items, self._call_rows.events
        self._call_log = self._call_rows.log
        self._call_by_provider: dict[str, str] = {}
        self._calls_to: dict[str, list[str]] = defaultdict(list)
        # email, the same way
        self._email_rows: Kept[Email, EmailEvent, EmailStatus] = Kept("email")
        self._emails, self._email_events = self._email_rows.items, self._email_rows.events
        self._email_log = self._email_rows.log
        # voice links and their plays
        self._voice_links: dict[str, tuple[str, str | None, str]] = {}  # message, campaign, plays
        self._plays: list[tuple[str, datetime]] = []
        # the history in the order it was written (each event's place is its index + 1)
        self._text_log: list[Event] = []
        # campaigns
        self._campaigns: dict[str, Campaign] = {}
        self._contacts: dict[str, dict[int, Contact]] = defaultdict(dict)
        self._contact_phones: dict[str, set[str]] = defaultdict(set)
        # automations
        self._runs: dict[RunKey, Run] = {}
        self._rules: dict[str, tuple[str, datetime]] = {}  # name: JSON, added at
        self._cursor: Cursor | None = None
        # status callbacks
        self._subscriptions: dict[tuple[str, str], Subscription] = {}
        self._outbox: dict[int, Delivery] = {}
        self._callback_cursor: Cursor | None = None


def refuse(what: str) -> StoreError:
    """The error of a write that breaks a constraint, as every adapter raises it."""
    return StoreError(f"constraint failed: {what} exists")


def unique(values: Iterable[str | None], taken: Container[str], what: str) -> None:
    """Raise unless the non-empty ``values`` are new to ``taken`` and to one another."""
    seen: set[str] = set()
    for value in values:
        if value is None:
            continue
        if value in taken or value in seen:
            raise refuse(f"{what} {value!r}")
        seen.add(value)


S = TypeVar("S", bound=StrEnum)
S_co = TypeVar("S_co", bound=StrEnum, covariant=True)
E = TypeVar("E")


class _Row(Projected[S_co], Protocol[S_co]):
    """A stored item of a kind kept by :class:`Kept` (a Call, an Email)."""

    @property
    def idempotency_key(self) -> str | None: ...

    @property
    def seq(self) -> int: ...


I = TypeVar("I", bound=_Row[Any])  # noqa: E741 - the item: a Call, an Email


class Kept(Generic[I, E, S]):
    """One kind's items, as calls and email keep them: by id with their events, the
    history in the order it was written, one item per idempotency key, and each
    pacing key's next slot."""

    def __init__(self, noun: str) -> None:
        self._noun = noun  # what an item is called in a refusal
        self.items: dict[str, I] = {}
        self.events: dict[str, list[E]] = defaultdict(list)
        self.log: list[E] = []  # each event's place in the history is its index + 1
        self._by_key: dict[str, str] = {}
        self._slots: dict[str, datetime] = {}
        self._seq = 0

    def insert(self, item: I, events: Sequence[E]) -> I:
        """``item`` stored with its first ``events`` and the next sequence number;
        refused if its id or its idempotency key is taken."""
        unique([item.id], self.items, self._noun)
        unique([item.idempotency_key], self._by_key, "idempotency key")
        self._seq += 1
        stored = replace(item, seq=self._seq)
        self.items[stored.id] = stored
        self.append(stored.id, events)
        if stored.idempotency_key:
            self._by_key[stored.idempotency_key] = stored.id
        return stored

    def append(self, item_id: str, events: Sequence[E]) -> None:
        self.events[item_id].extend(events)
        self.log.extend(events)

    def book(self, next_slot: tuple[str, datetime] | None) -> None:
        """A pacing key's next slot, moved only ever later."""
        if next_slot is not None:
            key, at = next_slot
            if key not in self._slots or at > self._slots[key]:
                self._slots[key] = at

    def of_key(self, key: str) -> I | None:
        found = self._by_key.get(key)
        return self.items[found] if found else None

    def history(self, item_id: str) -> list[E]:
        return list(self.events.get(item_id, []))

    def in_status(self, statuses: Collection[S], limit: int) -> list[I]:
        wanted = set(statuses)
        return sorted((i for i in self.items.values() if i.status in wanted), key=_seq)[:limit]

    @staticmethod
    def newest(items: Iterable[I], limit: int) -> list[I]:
        return sorted(items, key=_seq, reverse=True)[:limit]

    def counts(self) -> dict[S, int]:
        return dict(Counter(i.status for i in self.items.values()))

    def slots(self) -> dict[str, datetime]:
        return dict(sorted(self._slots.items()))


def _seq(item: _Row[Any]) -> int:
    return item.seq
