"""One send path for every kind of engagement: texts, calls (and email next).

A kind plugs in what differs through :class:`Kind`: how the next item of a pacing
key (a sending number, a voice account) is claimed durably, what an item costs in
slots, how it is handed to the provider and how each answer is recorded. The
engine owns the rest, once:

- the pacer (:mod:`dispatcher.engine.scheduler`): one deadline heap over the pacing keys;
- the claim a little ahead of the slot (``pacing.lead``), so its write is off the
  critical path, then the wait for the slot under the key's lock;
- the slot: booked from the moment the send starts, then moved to the moment the
  channel says it handed the item over (:meth:`~dispatcher.channels.SendRequest.hand_off`);
- refusals: retried with a doubling backoff, at most ``provider.max_retries`` times
  (:mod:`dispatcher.engine.retries`), then failed with the provider's reason;
- an attempt whose outcome is unknown (the connection broke, the process died) is
  reconciled: the provider is asked whether it has it; it is never sent blindly
  again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from dispatcher.channels import Accepted, HandOff
from dispatcher.clock import Clock, Instant
from dispatcher.engine.retries import GiveUp, Retries, Retry
from dispatcher.engine.scheduler import Book, Pacer
from dispatcher.errors import OutcomeUnknown, ProviderError, StoreUnavailable

log = logging.getLogger(__name__)

I = TypeVar("I")  # noqa: E741 - the item: a Message, a Call

_STRIPES = 256


class Kind(Protocol[I]):
    """What one kind of engagement brings to the engine."""

    name: str  # the prefix of its log events: "dispatch" for texts, "call" for calls

    def item_id(self, item: I) -> str: ...

    def may_send(self, key: str) -> bool:
        """May ``key`` start a send now (not paused, held, closing)?"""
        ...

    async def claim(self, key: str, slot_at: datetime) -> I | None:
        """Take the next item of ``key``'s queue into its sending state, durably, for a
        send at ``slot_at``; None when there is none. Items that may not go (expired,
        cancelled, listed) are ended here, with their reason."""
        ...

    async def ready(self, item: I) -> bool:
        """The last check at the slot: False when the item must not go after all (the
        kind has recorded why); its slot is then not used."""
        ...

    def hold(self, item: I) -> float:
        """Seconds of its key's time a send of ``item`` takes (its cost in slots)."""
        ...

    def started(self, key: str, at: Instant) -> None:
        """A send of ``key`` started at ``at`` (for the operator's counts)."""
        ...

    async def send(self, item: I, hand_off: HandOff) -> Accepted:
        """Hand ``item`` to the provider; the channel calls ``hand_off`` as it does."""
        ...

    async def taken(self, item: I, accepted: Accepted, *, started: Instant, hold: float) -> None:
        """The provider took ``item``: record it (and the key's next slot)."""
        ...

    async def retry(self, item: I, exc: ProviderError, decision: Retry, slot_at: datetime) -> None:
        """Put ``item`` back in its queue; its key's next slot is ``slot_at``."""
        ...

    async def fail(self, item: I, exc: ProviderError, decision: GiveUp, slot_at: datetime) -> None:
        """End ``item`` as refused by the provider."""
        ...

    async def lookup(self, item: I) -> Accepted | None:
        """Did the provider receive this attempt? Never a resend."""
        ...

    async def received(self, item: I, found: Accepted) -> None:
        """Reconciled: the provider had the attempt."""
        ...

    async def not_received(self, item: I, *, running: bool) -> None:
        """Reconciled: the provider never had the attempt; queue it again (and, while
        ``running``, let its key know)."""
        ...


class Delivery(Generic[I]):
    """The send path of one kind, paced per key."""

    def __init__(
        self,
        kind: Kind[I],
        clock: Clock,
        *,
        retries: Retries,
        workers: int,
        lead: float,
        store_fault: Callable[[StoreUnavailable], None] | None = None,
    ) -> None:
        self._kind = kind
        self._clock = clock
        self._retries = retries
        self.pacer = Pacer(
            clock, self._dispatch, workers=workers, lead=lead, store_fault=store_fault
        )
        self._locks = [asyncio.Lock() for _ in range(_STRIPES)]
        self.in_flight: Counter[str] = Counter()  # sends claimed and not yet settled, by key
        self.idle = asyncio.Event()
        self.idle.set()

    def lock(self, key: str) -> asyncio.Lock:
        """The lock a change of ``key``'s queue holds (claim, cancel, expiry)."""
        return self._locks[hash(key) % _STRIPES]

    @property
    def locks(self) -> list[asyncio.Lock]:
        return self._locks

    async def _dispatch(self, key: str, slot: float, book: Book) -> None:
        """Send the head of ``key``'s queue at ``slot`` (monotonic). The claim is made
        a little ahead of it, so its write is off the critical path."""
        async with self.lock(key):
            if not self._kind.may_send(key):
                return
            # Never before the key's next slot, even one moved since it was handed out.
            slot = max(slot, self.pacer.next_slot(key) or slot)
            now = self._clock.now()
            slot_at = now.wall + timedelta(seconds=max(0.0, slot - now.mono))
            item = await self._kind.claim(key, slot_at)
            if item is None:
                return
            self.in_flight[key] += 1  # in flight from its claim: a drain waits for it
            self.idle.clear()
        try:
            async with self.lock(key):
                if (wait := slot - self._clock.now().mono) > 0:
                    await self._clock.sleep(wait)
                if not await self._kind.ready(item):
                    book(slot)  # the slot was not used
                    return
                # The send starts now: this read books the slot until the channel
                # reports the moment it handed the item over. Nothing between the two
                # yields to the loop.
                start = self._clock.now()
                hold = self._kind.hold(item)
                book(start.mono + hold)
                self._kind.started(key, start)
            await self._attempt(key, item, start, hold)
        finally:
            self.in_flight[key] -= 1
            if self.in_flight[key] <= 0:
                del self.in_flight[key]
            if not self.in_flight:
                self.idle.set()

    async def _attempt(self, key: str, item: I, start: Instant, hold: float) -> None:
        """The provider call and what follows it."""

        def handed_off(at: Instant) -> None:
            nonlocal start
            start = at
            self.pacer.restore(key, at.mono + hold)

        name, item_id = self._kind.name, self._kind.item_id(item)
        try:
            accepted = await self._kind.send(item, handed_off)
        except OutcomeUnknown as exc:
            log.warning(f"{name}.outcome_unknown", extra={"id": item_id, "error": exc})
            await self.reconcile(item, running=True)
            return
        except ProviderError as exc:
            await self._refused(key, item, exc, start.wall + timedelta(seconds=hold))
            return
        except Exception:
            log.exception(f"{name}.outcome_unknown", extra={"id": item_id})
            await self.reconcile(item, running=True)
            return
        self._retries.taken(item_id)
        await self._kind.taken(item, accepted, started=start, hold=hold)

    async def _refused(self, key: str, item: I, exc: ProviderError, slot_at: datetime) -> None:
        decision = self._retries.refused(self._kind.item_id(item), exc)
        if isinstance(decision, Retry):
            # Back off: the key waits retry_backoff, then twice as long, ... beyond its slot.
            await self._kind.retry(item, exc, decision, slot_at + decision.backoff)
            self.pacer.restore(key, self._clock.now().mono + decision.backoff.total_seconds())
            self.pacer.wake(key)
            return
        await self._kind.fail(item, exc, decision, slot_at)
        log.info(
            f"{self._kind.name}.failed",
            extra={"id": self._kind.item_id(item), "code": exc.provider_code},
        )

    async def reconcile(self, item: I, *, running: bool) -> None:
        """Settle an attempt whose outcome is unknown: ask the provider, never resend
        blindly. If the provider cannot be asked now, the item stays in its sending
        state and is settled at the next start."""
        name, item_id = self._kind.name, self._kind.item_id(item)
        try:
            found = await self._kind.lookup(item)
        except ProviderError as exc:
            log.warning(f"{name}.reconcile_failed", extra={"id": item_id, "error": exc})
            return
        if found is not None:
            await self._kind.received(item, found)
        else:
            await self._kind.not_received(item, running=running)
        log.info(f"{name}.reconciled", extra={"id": item_id, "received": found is not None})
