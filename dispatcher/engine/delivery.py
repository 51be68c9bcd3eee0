"""One send path for every kind of engagement: texts, calls (and email next).

A kind plugs in what differs through :class:`Kind`: how the next items of its pacing
keys (sending numbers, a voice account) are claimed durably, what an item costs in
slots, how it is handed to the provider and how each answer is recorded. The engine
owns the rest, once:

- the pacer (:mod:`dispatcher.engine.scheduler`): one deadline heap over the pacing
  keys, handing out every key due in one timer tick together;
- the claim of all those keys a little ahead of their slots, in one durable write,
  so the write is off the critical path and costs one commit per tick, not one per
  send. A kind whose key sends faster than one claim a slot (email: one relay) may
  claim several items of a key at once (``claim_ahead``): the items due within the
  lead, each started at its own slot, the key handed out again once the last has
  started. The lead is ``pacing.lead`` at least, and follows the claims' own duration
  (:data:`LEAD_MARGIN` times the slowest of the last :data:`CLAIM_SAMPLES`, at most
  :data:`MAX_LEAD`): a claim that outlasts the lead would start its sends late, and
  every send late delays its number's next one. Then one task waits for each slot in
  turn and starts the sends due (no worker pool, no lock on the send's path), at most
  :data:`~dispatcher.engine.turns.SENDS_PER_TURN` in one turn of the event loop, so a
  request never waits behind a whole tick's sends (:mod:`dispatcher.engine.turns`);
- the slot: booked from the moment the send starts, then moved to the moment the
  channel says it handed the item over (:meth:`~dispatcher.channels.SendRequest.hand_off`);
- at most ``max_in_flight`` keys handed out at once (claimed, waiting for the slot, or
  with the provider);
- refusals: retried with a doubling backoff, at most ``provider.max_retries`` times
  (:mod:`dispatcher.engine.retries`), then failed with the provider's reason;
- an attempt whose outcome is unknown (the connection broke, the process died) is
  reconciled: the provider is asked whether it has it; it is never sent blindly
  again;
- the monitoring figures of the send path, kept as plain counts
  (:mod:`dispatcher.core.tally`) and read at scrape time: each send's start after its
  slot, the provider's answer after the hand-off, the provider's errors by code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from dispatcher.channels import Accepted, HandOff
from dispatcher.clock import Clock, Instant
from dispatcher.core.tally import PROVIDER_LATENCY, SEND_LATENESS, Histogram, Tally
from dispatcher.engine.keys import KeyLocks
from dispatcher.engine.retries import GiveUp, Retries, Retry
from dispatcher.engine.scheduler import Pacer
from dispatcher.engine.turns import TurnBudget
from dispatcher.errors import LeaseLost, OutcomeUnknown, ProviderError, StoreUnavailable

log = logging.getLogger(__name__)

I = TypeVar("I")  # noqa: E741 - the item: a Message, a Call

WINDOW = 0.005
"""Seconds of slots one tick hands out together (one claim write for all of them)."""
ERROR_BACKOFF = 1.0
"""Seconds before a key whose claim or start failed unexpectedly is tried again."""
CLAIM_SAMPLES = 64
"""The last claims whose durations set the lead."""
LEAD_MARGIN = 1.5
"""The lead is this many times the slowest recent claim (at least ``pacing.lead``)."""
MAX_LEAD = 0.25
"""Seconds of lead at most: a key handed out counts against ``max_in_flight`` from
then on, and its Do Not Text check at the claim is that much older."""
ROOM_STEP = 32
"""Keys that must have come back before a saturated engine hands out more (at most an
eighth of ``max_in_flight``): its sends start a few a turn (:mod:`~dispatcher.engine.turns`),
and handing out each key as one comes back would claim them one at a time. Not a whole
batch (128): claims of 128 keys make the writer's batches long, and a submission
waits for the batch being written (docs/performance.md, "A responsive service")."""
OUTCOME_UNKNOWN = "outcome_unknown"
"""The error code counted for an attempt whose outcome is unknown."""

ClaimAhead = Callable[[Sequence[tuple[str, datetime]]], Awaitable[dict[str, list[I]]]]
"""``claim_ahead(due)``: as :meth:`Kind.claim`, but each key's next items, in the order
they go, as many as are due within the lead (the first at its ``slot_at``)."""


class Kind(Protocol[I]):
    """What one kind of engagement brings to the engine."""

    name: str  # the prefix of its log events: "dispatch" for texts, "call" for calls

    def item_id(self, item: I) -> str: ...

    def may_send(self, key: str) -> bool:
        """May ``key`` start a send now (not paused, held, closing)?"""
        ...

    async def claim(self, due: Sequence[tuple[str, datetime]]) -> dict[str, I]:
        """Take the next item of each key's queue into its sending state, all in one
        durable write, each for a send at its ``slot_at``; a key with none is left out.
        Items that may not go (expired, cancelled, listed) are ended here, with their
        reason."""
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
        max_in_flight: int,
        lead: float,
        window: float = WINDOW,
        store_fault: Callable[[StoreUnavailable], None] | None = None,
        claim_ahead: ClaimAhead[I] | None = None,
    ) -> None:
        self._kind = kind
        self._claim_ahead = claim_ahead  # several items of a key in one claim
        self._clock = clock
        self._retries = retries
        self._max = max_in_flight
        self._step = max(1, min(ROOM_STEP, max_in_flight // 8))  # room handed out at once
        self._store_fault = store_fault  # told of a refused write instead of the log
        self.pacer = Pacer(clock, self._due, lead=lead, window=window, room=self._room)
        self._least_lead = lead
        self._claims: deque[float] = deque(maxlen=CLAIM_SAMPLES)  # seconds each took
        self._locks = KeyLocks()
        self._tasks: set[asyncio.Task[None]] = set()
        self.turns = TurnBudget()  # sends started in one turn of the event loop, at most
        self._out = 0  # keys handed out by the pacer and not yet done with
        self.in_flight: Counter[str] = Counter()  # sends claimed and not yet settled, by key
        self._ahead: Counter[str] = Counter()  # a key's items claimed ahead, not started yet
        self.lateness = Histogram(SEND_LATENESS)  # each send's start after its slot
        self.latency = Histogram(PROVIDER_LATENCY)  # the provider's answer after the hand-off
        self.provider_errors = Tally()  # refusals by provider code, and unknown outcomes
        self.idle = asyncio.Event()
        self.idle.set()

    def lock(self, key: str) -> contextlib.AbstractAsyncContextManager[None]:
        """The lock a change of ``key``'s queue holds (claim, cancel, expiry). Each key
        has its own: the claims of different keys never wait for each other."""
        return self._locks.holding([key])

    def every_lock(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Every key's lock (a key first locked meanwhile waits too)."""
        return self._locks.every()

    # -- handing out -----------------------------------------------------------------
    def _room(self) -> int:
        """Keys the pacer may hand out now: none until a batch's worth has come back
        (:data:`ROOM_STEP`), so a saturated engine still claims many keys per write
        instead of one for each key that comes back."""
        room = self._max - self._out  # items claimed ahead may pass the bound
        return room if room >= self._step else 0

    def _due(self, batch: list[tuple[str, float]]) -> None:
        self._out += len(batch)
        self.idle.clear()
        self._spawn(self._dispatch(batch))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _done(self, key: str, slot: float | None = None, *, booked: bool = False) -> None:
        """``key`` is done with: booked at ``slot`` unless its send already booked it,
        and its room given back."""
        if not booked:
            self._book(key, slot)
        self._out -= 1
        if self._out == self._max - self._step:
            self.pacer.poke()
        if self._out == 0:
            self.idle.set()

    def _book(self, key: str, slot: float | None) -> None:
        """The key's next slot: booked (the key back on the heap) by its last item
        claimed; an item claimed ahead of others of its key only moves the slot later."""
        if self._ahead and self._ahead[key] > 0:
            self._ahead[key] -= 1
            if self._ahead[key] == 0:
                del self._ahead[key]
            if slot is not None:
                self.pacer.restore(key, slot)
            return
        self.pacer.book(key, slot)

    def _fault(self, exc: Exception, keys: Sequence[str]) -> None:
        if isinstance(exc, StoreUnavailable) and self._store_fault is not None:
            self._store_fault(exc)  # the service pauses: no traceback per key
        else:
            log.error("dispatch.error", exc_info=exc, extra={"keys": len(keys)})

    # -- one tick's keys -------------------------------------------------------------
    async def _dispatch(self, batch: list[tuple[str, float]]) -> None:
        """Claim the head of every key of ``batch`` in one write, then start each send
        at its slot (monotonic), in slot order."""
        kind, clock, pacer = self._kind, self._clock, self.pacer
        wanted: list[tuple[str, float]] = []
        for key, slot in batch:
            if kind.may_send(key):
                # Never before the key's next slot, even one moved since it was handed out.
                wanted.append((key, max(slot, pacer.next_slot(key) or slot)))
            else:
                self._done(key)
        if not wanted:
            return
        keys = [key for key, _ in wanted]
        now = clock.now()
        due = [(key, now.wall + timedelta(seconds=max(0.0, slot - now.mono)))
               for key, slot in wanted]  # fmt: skip
        try:
            async with self._locks.holding(keys):
                if self._claim_ahead is not None:
                    claimed = await self._claim_ahead(due)
                else:
                    claimed = {key: [item] for key, item in (await kind.claim(due)).items()}
        except Exception as exc:
            self._fault(exc, keys)
            # The keys are not lost: each is tried again after a pause.
            retry_at = clock.now().mono + ERROR_BACKOFF
            for key in keys:
                self._done(key, retry_at)
            return
        self._claimed_in(clock.now().mono - now.mono)
        plan: list[tuple[float, str, I]] = []
        for key, slot in wanted:
            items = claimed.get(key)
            if not items:
                self._done(key)
                continue
            self._out += len(items) - 1  # each item is done with once
            self._ahead[key] += len(items) - 1  # started before the key is booked
            at = slot
            for item in items:
                self.in_flight[key] += 1  # in flight from its claim: a drain waits for it
                plan.append((at, key, item))
                at += kind.hold(item)  # the earliest the next can start
        plan.sort(key=lambda entry: entry[0])
        await self._start_all(plan)

    def _claimed_in(self, seconds: float) -> None:
        """A claim took ``seconds``: hand keys out early enough for the slowest."""
        self._claims.append(seconds)
        lead = min(MAX_LEAD, max(self._least_lead, LEAD_MARGIN * max(self._claims)))
        if abs(lead - self.pacer.lead) >= 0.001:
            self.pacer.lead = lead

    async def _start_all(self, plan: list[tuple[float, str, I]]) -> None:
        """Start each claimed send at its slot. One clock read starts every send due
        at it; the channel then reports the moment it handed each over."""
        kind, clock = self._kind, self._clock
        start = clock.now()
        turns = self.turns
        for slot, key, item in plan:
            if slot > start.mono:
                await clock.sleep(slot - start.mono)
                start = clock.now()
            if not turns.pass_now():
                await turns.wait()  # the loop serves what else is waiting first
                start = clock.now()
            try:
                if not await kind.ready(item):
                    self._settled(key, slot, booked=False)  # the slot was not used
                    continue
                # The send starts now: this read books the slot until the channel
                # reports the moment it handed the item over.
                hold = kind.hold(item)
                self._book(key, start.mono + hold)
                kind.started(key, start)
                self.lateness.observe(max(0.0, start.mono - slot))
            except Exception as exc:
                self._fault(exc, [key])
                self._settled(key, clock.now().mono + ERROR_BACKOFF, booked=False)
                continue
            self._spawn(self._attempt(key, item, start, hold))

    def _settled(self, key: str, slot: float | None = None, *, booked: bool = True) -> None:
        """A claimed send is over (or will not start: then ``booked`` is False)."""
        self.in_flight[key] -= 1
        if self.in_flight[key] <= 0:
            del self.in_flight[key]
        self._done(key, slot, booked=booked)

    async def _attempt(self, key: str, item: I, start: Instant, hold: float) -> None:
        """The provider call and what follows it."""

        def handed_off(at: Instant) -> None:
            nonlocal start
            start = at
            self.pacer.restore(key, at.mono + hold)

        name, item_id = self._kind.name, self._kind.item_id(item)
        try:
            try:
                accepted = await self._kind.send(item, handed_off)
            except LeaseLost as exc:  # the provider was not called; the text is queued again
                log.warning(f"{name}.lease_lost", extra={"id": item_id, "error": str(exc)})
                return
            except OutcomeUnknown as exc:
                self.provider_errors.add(OUTCOME_UNKNOWN)
                log.warning(f"{name}.outcome_unknown", extra={"id": item_id, "error": exc})
                await self.reconcile(item, running=True)
                return
            except ProviderError as exc:
                self.latency.observe(self._clock.monotonic() - start.mono)
                self.provider_errors.add(exc.provider_code or "none")
                await self._refused(key, item, exc, start.wall + timedelta(seconds=hold))
                return
            except Exception:
                self.provider_errors.add(OUTCOME_UNKNOWN)
                log.exception(f"{name}.outcome_unknown", extra={"id": item_id})
                await self.reconcile(item, running=True)
                return
            self.latency.observe(self._clock.monotonic() - start.mono)
            self._retries.taken(item_id)
            await self._kind.taken(item, accepted, started=start, hold=hold)
        except Exception as exc:
            self._fault(exc, [key])
        finally:
            self._settled(key)

    async def _refused(self, key: str, item: I, exc: ProviderError, slot_at: datetime) -> None:
        decision = self._retries.refused(self._kind.item_id(item), exc)
        if isinstance(decision, Retry):
            # Back off: the key waits retry_backoff, then twice as long, ... from the
            # refusal on, so it is not handed out while the item goes back to its queue (a
            # claim then took the key's next item, the refused one not back yet, and sent
            # it first; or, waiting for it to be back, sent it before its backoff).
            self.pacer.restore(key, self._clock.now().mono + decision.backoff.total_seconds())
            await self._kind.retry(item, exc, decision, slot_at + decision.backoff)
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
