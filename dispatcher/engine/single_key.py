"""What a kind paced on one key of the delivery engine shares: calls on their voice
account, email on its relay.

:class:`OneKey` keeps the one key's next slot and wake-up, the locks each change of an
item is made under (one per item, striped), and each status change: judged by the
kind's transition table, written with its event (and, after a send, the key's next
slot) in one store write, and counted by status and by reason. What a kind does
besides once a change is written (log it, tell the automations) is its ``saved`` hook.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence, Sized
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from dispatcher.clock import Clock
from dispatcher.core.model import Source
from dispatcher.core.tally import Tally
from dispatcher.engine.keys import all_locked
from dispatcher.engine.scheduler import Pacer

_STRIPES = 64

S = TypeVar("S")  # the kind's status: a CallStatus, an EmailStatus
S_co = TypeVar("S_co", covariant=True)


class Item(Protocol[S_co]):
    """An item of the kind (a Call, an Email), as the helper reads it."""

    @property
    def id(self) -> str: ...

    @property
    def status(self) -> S_co: ...

    @property
    def reason(self) -> str | None: ...


class Event(Protocol):
    @property
    def applied(self) -> bool: ...


I = TypeVar("I", bound=Item[Any])  # noqa: E741 - the item: a Call, an Email
E = TypeVar("E", bound=Event)
S_contra = TypeVar("S_contra", contravariant=True)
E_co = TypeVar("E_co", bound=Event, covariant=True)
Slot = tuple[str, datetime]  # a key and its next slot, written with a send's result


class Change(Protocol[I, S_contra, E_co]):
    """The kind's transition table: ``item`` judged against ``status``, the event to
    append and the item as it is afterwards (unchanged unless the step applies)."""

    def __call__(
        self,
        item: I,
        status: S_contra,
        /,
        *,
        at: datetime,
        source: Source,
        reason: str | None = None,
        provider_code: str | None = None,
        detail: str | None = None,
    ) -> tuple[E_co, I]: ...


class OneKey(Generic[I, S, E]):
    """One pacing key's slot and wake-up, and each status change of its items."""

    def __init__(
        self,
        *,
        pacer: Pacer,
        key: Callable[[], str],
        clock: Clock,
        queue: Sized,
        change: Change[I, S, E],
        attempt: Callable[[I, str], I],
        write: Callable[[I, Sequence[E], Slot | None], Awaitable[None]],
        saved: Callable[[I, I, list[E]], None],
    ) -> None:
        self._pacer = pacer
        self._key = key  # the key: the relay, the voice account
        self._clock = clock
        self._queue = queue  # the items waiting for the key's slot
        self._change = change
        self._attempt = attempt  # the item with a new attempt id
        self._write = write  # the store's update of one item, events and slot: one write
        self._saved = saved  # the kind's own follow-up of a written change
        self._locks = [asyncio.Lock() for _ in range(_STRIPES)]
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
        await self._write(after, events, slot)
        if after.status is not before.status:
            self.counts[before.status] -= 1
            self.counts[after.status] += 1
            self.transitions.add(after.status, after.reason)
        self._saved(before, after, events)
