"""What a kind paced on one key of the delivery engine shares: calls on their voice
account, email on its relay.

:class:`OneKey` keeps the one key's next slot and wake-up, the locks each change of an
item is made under (one per item, striped), and each status change: judged by the
kind's transition table, written with its event (and, after a send, the key's next
slot) in one store write, and counted by status and by reason. What a kind does
besides once a change is written (log it, tell the automations) is its ``saved`` hook.

It also takes the steps both kinds take alike, in the kind's own words
(:class:`Terms`) and through the kind's store verbs (:class:`Shelf`): one item per
idempotency key, the recovery of what a previous run left claimed and queued, a
refusal queued again or given up on, an attempt the provider never received, an item
whose contact opted out, and an item looked up by its id. What the kinds answer their
callers has one shape too (:class:`ItemSubmission`, :class:`ItemView`,
:class:`ItemsSummary`), each kind naming its item and its key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from dispatcher.clock import Clock
from dispatcher.core.consent import Entry as ConsentEntry
from dispatcher.core.consent import refusal
from dispatcher.core.model import Source
from dispatcher.core.status_step import Projected, StatusStep
from dispatcher.core.tally import Tally
from dispatcher.engine.keys import OncePerKey, all_locked
from dispatcher.engine.retries import GiveUp, Retry
from dispatcher.engine.scheduler import Pacer
from dispatcher.errors import Conflict, InvalidInput, NotFound, ProviderError

_STRIPES = 64

S = TypeVar("S", bound=StrEnum)  # the kind's status: a CallStatus, an EmailStatus
S_co = TypeVar("S_co", bound=StrEnum, covariant=True)


class Item(Projected[S_co], Protocol[S_co]):
    """An item of the kind (a Call, an Email), as the helper reads it."""

    @property
    def reason(self) -> str | None: ...

    @property
    def attempt_id(self) -> str | None: ...

    @property
    def idempotency_key(self) -> str | None: ...

    @property
    def fingerprint(self) -> str | None: ...


class Event(Protocol):
    @property
    def applied(self) -> bool: ...


I = TypeVar("I", bound=Item[Any])  # noqa: E741 - the item: a Call, an Email
E = TypeVar("E", bound=Event)
Slot = tuple[str, datetime]  # a key and its next slot, written with a send's result


@dataclass(frozen=True, slots=True, kw_only=True)
class Terms(Generic[S]):
    """The kind's words for the steps every kind paced on one key takes alike."""

    noun: str  # what an item is called in answers and errors: "call", "email"
    provider: str  # who takes an attempt: "provider", "relay"
    queued: S  # waiting for the key's slot
    claimed: S  # the durable intent to send, before the provider hears of it
    failed: S
    retry: str  # the reason of an item queued again after a refusal
    not_received: str  # ... after the provider said it never had the attempt
    rejected: str  # the reason of a refusal given up on, when the decision gives none
    opted_out: str  # the reason of an item whose contact opted out of the channel


@dataclass(frozen=True, slots=True, kw_only=True)
class Shelf(Generic[I, S, E]):
    """The kind's store verbs that :class:`OneKey` uses."""

    get: Callable[[str], Awaitable[I | None]]
    insert: Callable[[I, Sequence[E]], Awaitable[I]]  # a new item with its first events
    by_key: Callable[[str], Awaitable[I | None]]  # the item of an idempotency key
    write: Callable[[I, Sequence[E], Slot | None], Awaitable[None]]  # item, events, slot
    slots: Callable[[], Awaitable[Mapping[str, datetime]]]  # each key's next slot
    in_status: Callable[[Sequence[S], int], Awaitable[list[I]]]
    counts: Callable[[], Awaitable[Mapping[S, int]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemSubmission(Generic[I]):
    """A submitted item: the one stored, or the earlier one of its idempotency key."""

    item: I
    created: bool  # False when an idempotency key returned an earlier item


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemView(Generic[I, E]):
    """An item for the operator: its history, and why it is where it is."""

    item: I
    history: list[E]
    explanation: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemsSummary(Generic[S]):
    """A kind at a glance: its items by status, its queue and its one key."""

    counts: dict[S, int]
    queued: int
    in_flight: int
    next_slot_at: datetime | None
    key: str  # the pacing key: the voice account, the relay
    rate: float  # sends a second on the key


T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class _Answer(Protocol[T_co]):
    @property
    def item(self) -> T_co: ...


class ItemNamed(Generic[T]):
    """An answer's item under the name its kind gives it (``submission.call``,
    ``view.email``)."""

    def __get__(self, answer: _Answer[T] | None, owner: object) -> T:
        if answer is None:
            raise AttributeError("the item of an answer, read from the answer")
        return answer.item


class KeyNamed:
    """A summary's key under the name its kind gives it (``account``, ``relay``)."""

    def __get__(self, summary: ItemsSummary[Any] | None, owner: object) -> str:
        if summary is None:
            raise AttributeError("the key of a summary, read from the summary")
        return summary.key


class OneKey(Generic[I, S, E]):
    """One pacing key's slot and wake-up, and each status change of its items."""

    def __init__(
        self,
        *,
        pacer: Pacer,
        key: Callable[[], str],
        clock: Clock,
        queue: Sized,
        change: StatusStep[I, S, E],
        attempt: Callable[[I, str], I],
        shelf: Shelf[I, S, E],
        terms: Terms[S],
        enqueue: Callable[[I], None],
        saved: Callable[[I, I, list[E]], None],
    ) -> None:
        self._pacer = pacer
        self._key = key  # the key: the relay, the voice account
        self._clock = clock
        self._queue = queue  # the items waiting for the key's slot
        self._change = change
        self._attempt = attempt  # the item with a new attempt id
        self._shelf = shelf
        self._terms = terms
        self._enqueue = enqueue  # back in the queue, its key woken
        self._saved = saved  # the kind's own follow-up of a written change
        self._locks = [asyncio.Lock() for _ in range(_STRIPES)]
        self._keys: OncePerKey[tuple[I, bool]] = OncePerKey()
        self.counts: Counter[S] = Counter()
        self.transitions = Tally()  # status changes applied by this process, with their reason

    def lock(self, item_id: str) -> asyncio.Lock:
        """The lock every change of the item ``item_id`` is made under."""
        return self._locks[hash(item_id) % _STRIPES]

    def locked(self, item_ids: Iterable[str]) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold the locks of several items at once."""
        return all_locked(self._locks, item_ids)

    def next_slot_at(self) -> datetime | None:
        slot = self._pacer.next_slot(self._key())
        if slot is None:
            return None
        now = self._clock.now()
        return now.wall + timedelta(seconds=slot - now.mono)

    def wake(self) -> None:
        """Every queued item becomes due at the key's next slot."""
        if self._queue:
            self._pacer.wake(self._key())

    async def set(
        self,
        item: I,
        status: S,
        *,
        source: Source,
        reason: str | None = None,
        code: str | None = None,
        detail: str | None = None,
        attempt_id: str | None = None,
    ) -> I:
        """Move ``item`` to ``status`` (if its transition table allows), written; the
        item as it is afterwards. With ``attempt_id``, the new attempt it starts."""
        event, after = self._change(item, status, at=self._clock.now().wall, source=source,
                                    reason=reason, provider_code=code, detail=detail)  # fmt: skip
        if attempt_id is not None and event.applied:
            after = self._attempt(after, attempt_id)
        await self.save(item, after, [event])
        return after

    async def save(self, before: I, after: I, events: list[E], slot: Slot | None = None) -> None:
        """Write ``after`` with ``events`` (and the key's next ``slot``) in one write,
        then count the change and let the kind follow it up."""
        await self._shelf.write(after, events, slot)
        if after.status is not before.status:
            self.counts[before.status] -= 1
            self.counts[after.status] += 1
            self.transitions.add(after.status, after.reason)
        self._saved(before, after, events)

    # -- recovery --------------------------------------------------------------------
    async def recover_claimed(self, reconcile: Callable[[I], Awaitable[None]], hold: float) -> None:
        """Before pacing starts: the key's next slot as the store keeps it, and each item
        a previous run left claimed reconciled. When any was, the key waits one full
        ``hold`` from now: one may have left just before the crash."""
        now = self._clock.now()
        key = self._key()
        if (slot := (await self._shelf.slots()).get(key)) is not None:
            self._pacer.restore(key, now.mono + (slot - now.wall).total_seconds())
        claimed = await self._shelf.in_status([self._terms.claimed], 100_000)
        for item in claimed:
            await reconcile(item)
        if claimed:
            self._pacer.restore(key, now.mono + hold)

    async def recover_queued(self) -> None:
        """Before pacing starts: the queue and the counts as the store keeps them."""
        for item in await self._shelf.in_status([self._terms.queued], 1_000_000):
            self._enqueue(item)
        self.counts.clear()
        self.counts.update(await self._shelf.counts())

    # -- submission ------------------------------------------------------------------
    async def accept(self, item: I, insert: Callable[[I], Awaitable[I]]) -> tuple[I, bool]:
        """``item`` stored by ``insert``, and True; under an idempotency key already
        used, the item it made instead, and False (refused if its content differs).
        One item per key, also under concurrent retries."""
        key = item.idempotency_key
        if key is None:
            return await insert(item), True
        if not 0 < len(key) <= 255:
            raise InvalidInput("idempotency_key: must be 1 to 255 characters",
                               field="idempotency_key")  # fmt: skip

        async def make() -> tuple[I, bool]:
            found = await self._shelf.by_key(key)
            if found is not None:
                return self._same_key(item, found, key), False
            return await insert(item), True

        result, made_here = await self._keys.run(key, make)
        return result if made_here else (self._same_key(item, result[0], key), False)

    def _same_key(self, item: I, earlier: I, key: str) -> I:
        if earlier.fingerprint != item.fingerprint:
            raise Conflict(f"idempotency key {key!r} was already used for {self._terms.noun} "
                           f"{earlier.id} with different content")  # fmt: skip
        return earlier

    async def insert(self, item: I, first: E, optout: ConsentEntry | None) -> tuple[I, bool]:
        """Store a submitted ``item`` with its ``first`` event and count it. When its
        contact opted out of the channel (``optout``), it ends Failed at once;
        otherwise it is queued. The item as it is then, and whether it was queued."""
        stored = await self._shelf.insert(item, [first])
        self.counts[stored.status] += 1
        self.transitions.add(stored.status, stored.reason)
        if optout is not None:
            return await self.opted_out(stored, optout, source=Source.API), False
        self._enqueue(stored)
        return stored, True

    # -- steps every kind takes alike ------------------------------------------------
    async def get(self, item_id: str) -> I:
        """The item ``item_id``; NotFound when there is none."""
        item = await self._shelf.get(item_id)
        if item is None:
            raise NotFound(f"no {self._terms.noun} with id {item_id!r}")
        return item

    async def opted_out(self, item: I, optout: ConsentEntry, *, source: Source) -> I:
        """End ``item`` Failed: its contact opted out of the kind's channel."""
        return await self.set(item, self._terms.failed, source=source,
                              reason=self._terms.opted_out, detail=refusal(optout))  # fmt: skip

    async def retry(self, item: I, exc: ProviderError, decision: Retry) -> None:
        """The provider refused ``item`` for now: queued again, its key woken."""
        async with self.lock(item.id):
            queued = await self.set(item, self._terms.queued, source=Source.PROVIDER,
                                    reason=self._terms.retry, code=exc.provider_code,
                                    detail=decision.detail)  # fmt: skip
        self._enqueue(queued)

    async def fail(self, item: I, exc: ProviderError, decision: GiveUp) -> None:
        """The provider refused ``item`` for good: Failed with the reason."""
        async with self.lock(item.id):
            await self.set(item, self._terms.failed, source=Source.PROVIDER,
                           reason=decision.reason or self._terms.rejected,
                           code=exc.provider_code, detail=decision.detail)  # fmt: skip

    async def not_received(self, item: I) -> None:
        """Reconciled: the provider never had the attempt; queued again."""
        async with self.lock(item.id):
            queued = await self.set(
                item, self._terms.queued, source=Source.RECONCILE, reason=self._terms.not_received,
                detail=f"the {self._terms.provider} never received attempt {item.attempt_id}",
            )  # fmt: skip
        self._enqueue(queued)
