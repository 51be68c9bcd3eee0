"""Texts on the delivery engine: the texts kind, each sending number's queue, and the
expiry sweep.

The engine (:mod:`dispatcher.engine.delivery`) paces each sending number and runs
every attempt; this desk brings what is particular to texts: the queue of each
number lives in the store and memory holds a short buffer of its head
(:mod:`dispatcher.engine.queues`); a claim ends the texts that may no longer go (expired,
or their contact on the Do Not Text list); a send holds its number one slot per
segment; the provider's answers and receipts move a text through its statuses
(:data:`dispatcher.core.model.TEXT_TABLE`). Receipts are merged by
:mod:`dispatcher.engine.receipts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial

from dispatcher.channels import Accepted, HandOff, SendRequest
from dispatcher.clock import Instant
from dispatcher.core.channel import Channel
from dispatcher.core.consent import refusal
from dispatcher.core.model import (
    WAITING,
    Message,
    Reason,
    Source,
    TextStatus,
    Transition,
    is_expired,
    slot_seconds,
    transition,
)
from dispatcher.core.results import TEXT_RESULTS, Observed
from dispatcher.core.tally import Tally
from dispatcher.engine.delivery import OUTCOME_UNKNOWN, Delivery
from dispatcher.engine.events import Outcome
from dispatcher.engine.intake import new_id
from dispatcher.engine.ownership import Head, Owner, owner_for
from dispatcher.engine.queues import BUFFER, Queues
from dispatcher.engine.receipts import Receipts
from dispatcher.engine.recent import RecentSends
from dispatcher.engine.retries import GiveUp, Retries, Retry
from dispatcher.engine.wiring import Wiring
from dispatcher.errors import LeaseLost, ProviderError, StoreUnavailable
from dispatcher.store.leasing import KeyWork, Start, StartOutcome

log = logging.getLogger(__name__)

_EXPIRY_BATCH = 500
_ERRORS_KEPT = 20  # texts that ended in error, for status's recent_errors
_ERRORS = frozenset({TextStatus.FAILED, TextStatus.UNDELIVERED, TextStatus.UNREACHABLE})

OptOut = Callable[[str, str], Awaitable[None]]
"""``opt_out(contact, reason)``: put a contact on the Do Not Text list (as the carrier
said it replied STOP)."""


class TextDesk:
    """The texts half of the service. Owned and run by the Dispatcher."""

    name = "dispatch"

    def __init__(
        self,
        wiring: Wiring,
        *,
        store_faulted: Callable[[], bool],
        opt_out: OptOut,
    ) -> None:
        config, store, channel = wiring.config, wiring.store, wiring.channel
        self._config, self._store, self._channel = config, store, channel
        self._clock = clock = wiring.clock
        self._bus = wiring.bus
        self._store_fault = store_fault = wiring.store_fault
        self._may_send = wiring.may_send
        self._opt_out = opt_out
        self.queues = Queues()
        self.engine: Delivery[Message] = Delivery(
            self, clock, retries=Retries(config.provider),
            max_in_flight=config.pacing.max_in_flight, lead=config.pacing.lead.total_seconds(),
            store_fault=store_fault,
        )  # fmt: skip
        self.pacer = self.engine.pacer
        self.receipts = Receipts(
            self, channel=channel, store=store, store_fault=store_fault, faulted=store_faulted
        )
        self._consent = wiring.consent
        self.sent_count = 0  # sends started by this process
        self.sends = RecentSends()  # started in the last minute, per number and in all
        self.errors: deque[Message] = deque(maxlen=_ERRORS_KEPT)  # Failed, Undelivered, ...
        self.transitions = Tally()  # status changes applied by this process, with their reason
        self._watched: asyncio.Future[None] | None = None  # the last write handed over soon
        self._watched_leaving: list[str] = []  # the texts its writes move out of Sending
        self._expiry_wake = asyncio.Event()
        self._next_expiry: datetime | None = None
        self.closing = False
        # Which numbers this process paces: all (a store of its own) or those it leases.
        self.owner: Owner = owner_for(
            store, clock, name=str(config.home), address=config.http.base_url,
            lease_seconds=config.store.lease.total_seconds(), faulted=store_faulted,
            store_fault=store_fault,
        )  # fmt: skip
        self.owner.attach(self)
        self.queues.sole_writer = not self.owner.shared
        self._settling: set[str] = set()  # texts being reconciled by the lease loop
        self._writing: set[str] = set()  # texts whose move out of Sending is being written
        # Texts whose move out of Sending was written since the leases' turn began reading
        # what its numbers hold (None: no read under way): found Sending by that read,
        # they are not left Sending.
        self._written_since: set[str] | None = None
        # Numbers whose claim is under way: the texts it starts are Sending in the store
        # before the start's answer arrives and the engine counts them in flight.
        # (A number's lock is held through its claim: one claim at a time per number.)
        self._claiming: set[str] = set()
        # On a store several workers share, the write of each number's last Sent, handed
        # over soon: a start refused busy while it is under way waits for it
        # (:meth:`_wake_when_written`).
        self._sent_writes: dict[str, asyncio.Future[None]] = {}

    # -- what the service tells the desk ---------------------------------------------
    def accepted(self, message: Message) -> None:
        """A text was stored: queue it (or, if it ended at once, count its outcome)."""
        self.queues.counted(None, message.status)
        self.transitions.add(message.status, message.reason)
        if message.status is not TextStatus.QUEUED:
            self.outcome(message)
            log.info("dispatch.%s", message.reason, extra={"message_id": message.id})
            return
        self.queues.added(message)
        self.pacer.wake(message.sender)
        if self._next_expiry is None or message.expires_at < self._next_expiry:
            self._next_expiry = message.expires_at
            self._expiry_wake.set()

    def outcome(self, message: Message) -> None:
        """A text reached a result (or left its queue): kept for the operator's recent
        errors, and published for the automations and the campaigns (cheap: no I/O)."""
        if message.status in _ERRORS:
            self.errors.append(message)
        if message.campaign_id is not None:
            self._bus.publish(Outcome(
                campaign_id=message.campaign_id, item_id=message.id, status=message.status,
                reason=message.reason, expires_at=message.expires_at,
            ))  # fmt: skip
        if self._bus.wanted(Observed) and (result := TEXT_RESULTS.get(message.status)):
            self._bus.publish(Observed(
                result=result, source_id=message.id, contact=message.recipient,
                sender=message.sender, campaign_id=message.campaign_id,
                at=message.updated_at,  # the moment of its status change: no clock read
            ))  # fmt: skip

    async def record(
        self,
        steps: Sequence[Transition],
        next_slots: Mapping[str, datetime] | None = None,
        *,
        ahead: bool = False,
    ) -> None:
        """Persist transitions (one atomic write) and keep the counts in step; ``ahead``:
        a claim, which the store may commit before the Sent and Delivered handed over
        earlier (never before a write of its own messages)."""
        steps = self.owner.fence(steps)
        leaving = self._leaving(steps)
        try:
            await self._store.record(steps, next_slots, ahead=ahead)
        except BaseException:
            self._writing.difference_update(leaving)
            raise
        self._wrote(leaving)
        self.counted(steps)

    def record_soon(
        self, steps: Sequence[Transition], next_slots: Mapping[str, datetime] | None = None
    ) -> asyncio.Future[None]:
        """Persist transitions without waiting for their commit (after a send: the
        intent was durable before it). The counts move now; a write the store refuses
        is reported as a store fault, and what it held is settled as after a crash.
        Returns the write, done once it has ended."""
        steps = self.owner.fence(steps)
        leaving = self._leaving(steps)
        written = self._store.record_soon(steps, next_slots)
        self.counted(steps)
        if written is not self._watched:  # a store may share one future per batch
            self._watched, self._watched_leaving = written, []
            written.add_done_callback(partial(self._written, self._watched_leaving))
        self._watched_leaving += leaving  # one callback a batch, not one per text
        return written

    def _leaving(self, steps: Sequence[Transition]) -> list[str]:
        """The texts ``steps`` move out of Sending: being written, they are not texts
        left Sending by a worker gone (:meth:`work`)."""
        leaving = [s.message_id for s in steps if s.from_status is TextStatus.SENDING]
        self._writing.update(leaving)
        return leaving

    def _written(self, leaving: list[str], written: asyncio.Future[None]) -> None:
        """A write handed over soon ended: the texts it moved out of Sending are no
        longer being written, and a refused write is reported."""
        exc = None if written.cancelled() else written.exception()
        if exc is None and not written.cancelled():
            self._wrote(leaving)
            return
        self._writing.difference_update(leaving)
        if exc is None:
            return
        if isinstance(exc, StoreUnavailable):
            self._store_fault(exc)
        else:
            log.error("dispatch.write_failed", exc_info=exc)

    def _wrote(self, leaving: list[str]) -> None:
        """The texts ``leaving`` moved out of Sending are written."""
        self._writing.difference_update(leaving)
        if self._written_since is not None:
            self._written_since.update(leaving)

    def reading_work(self) -> None:
        """The leases' turn begins to read what the held numbers hold (then
        :meth:`work`): a text it finds Sending whose move out of Sending is written from
        now on is not one left Sending."""
        self._written_since = set()

    def counted(self, steps: Sequence[Transition]) -> None:
        """Transitions written (here, or by the owner: the start of sends): keep the
        counts in step."""
        for step in steps:
            if (event := step.event).applied:
                self.queues.counted(step.from_status, event.status)
                self.transitions.add(event.status, event.reason)

    def stop(self) -> None:
        self.closing = True
        self.pacer.stop()
        self._expiry_wake.set()

    def wake_all(self) -> None:
        """Every number with a queue becomes due at its next slot."""
        for number, queue in self.queues.items():
            if queue.depth:
                self.pacer.wake(number)

    # -- the texts kind, for the engine ----------------------------------------------
    def item_id(self, item: Message) -> str:
        return item.id

    def may_send(self, key: str) -> bool:
        return (self._may_send() and not self.closing and not self.queues[key].paused
                and self.owner.owns(key))  # fmt: skip

    def hold(self, item: Message) -> float:
        """Seconds a send of ``item`` holds its number: its segments' slots + guard."""
        rate = self._config.pacing.rate_of(item.sender)
        return slot_seconds(item.segments, rate) + self._config.pacing.guard.total_seconds()

    async def claim(self, due: Sequence[tuple[str, datetime]]) -> dict[str, Message]:
        """Take the head of each number's queue into Sending, all in one write, ending
        expired and listed heads on the way. A head whose validity ends before its
        ``slot_at`` is left to the expiry sweep, which ends it on time and wakes the
        number again. The heads of every number whose buffer is empty are read in one
        query."""
        keys = [key for key, _ in due]
        self._claiming.update(keys)
        try:
            return await self._claim(due)
        finally:
            self._claiming.difference_update(keys)

    async def _claim(self, due: Sequence[tuple[str, datetime]]) -> dict[str, Message]:
        queues, claimed = self.queues, {}
        slots = dict(due)
        steps: list[Transition] = []
        ended: list[Message] = []
        taken: list[Message] = []  # heads out of the buffers, back in if the write fails
        try:
            while due:
                await self._read_heads([key for key, _ in due if queues.needs_read(key)])
                now = self._clock.now().wall
                again: list[tuple[str, datetime]] = []
                for key, slot_at in due:
                    # A buffer still empty after its read has nothing to send now (the
                    # count said more: texts another worker took, or writes in flight
                    # here): the number waits to be woken, never read again in a loop.
                    had = bool(queues[key].buffer)
                    item = self._take(key, slot_at, now, steps=steps, ended=ended, taken=taken)
                    if item is not None:
                        claimed[key] = item
                    elif had and queues.needs_read(key):
                        again.append((key, slot_at))  # its buffer ran out on ended heads
                if again:
                    # What ended is written before the queue is read again. The claims
                    # wait for the start below, with the rest: on a store several
                    # workers share, a claim is a start under its number's lease, never
                    # a plain write (one written here went Sending with no lease's
                    # epoch, so no fenced change could ever settle it).
                    claiming = {item.id for item in claimed.values()}
                    await self.record([s for s in steps if s.message_id not in claiming],
                                      ahead=True)  # fmt: skip
                    steps = [s for s in steps if s.message_id in claiming]
                    taken = [head for head in taken if head.id in claiming]
                due = again
            # The intent to send is durable before the provider hears of any of them.
            key_of = {m.id: key for key, m in claimed.items()}
            heads = [
                Head(number, step, slots[number], self.hold(claimed[number]))
                for step in steps
                if (number := key_of.get(step.message_id)) is not None
                and step.event.status is TextStatus.SENDING
            ]
            refused = await self.owner.start(steps, heads)
        except BaseException:
            for head in taken:
                queues.added(head)
            raise
        for message in ended:
            self.outcome(message)
        if refused:
            self._refused(refused, claimed, taken)
        return claimed

    def _refused(
        self, refused: Mapping[str, Start], claimed: dict[str, Message], taken: list[Message]
    ) -> None:
        """Starts the leases refused: each head goes back in its buffer (unless it is no
        longer Queued), and its number waits for the slot the database gave."""
        by_id = {m.id: m for m in taken}
        now = self._clock.now()
        for key, start in refused.items():
            item = claimed.pop(key)
            if start.outcome is not StartOutcome.NOT_QUEUED:
                self.queues.added(by_id[item.id])
            if start.outcome is StartOutcome.TOO_EARLY and start.next_slot_at is not None:
                ahead = (start.next_slot_at - now.wall).total_seconds()
                self.pacer.restore(key, now.mono + ahead)
            if start.outcome in (StartOutcome.TOO_EARLY, StartOutcome.NOT_QUEUED):
                self.pacer.wake(key)
            elif start.outcome is StartOutcome.BUSY:
                self._wake_when_written(key)
            why = str(start.outcome)
            log.info("dispatch.start_refused", extra={"sender": key, "id": item.id, "why": why})

    def _wake_when_written(self, key: str) -> None:
        """A start of ``key`` refused ``busy``: a text of it is still Sending in the store.
        When it is this worker's own last one, whose Sent is still being written (the
        writes lag on a busy database), the number is woken once that write has ended,
        to start at once; it was left until the leases' next turn read it (every 2 s,
        more while the turn's reads are slow): with 2,000 busy numbers x 10 on one
        worker, 1,434 of 22,033 starts were refused so, each losing its number a second
        or more. A text left Sending by another worker (no write of its own here) is the
        turn's, which reconciles it first: not woken, so never refused again and again."""
        written = self._sent_writes.pop(key, None)
        if written is None:
            return
        if written.done():
            self.pacer.wake(key)
        else:
            written.add_done_callback(lambda _: self.pacer.wake(key))

    async def _read_heads(self, keys: list[str]) -> None:
        if not keys:
            return
        heads = await self._store.heads(keys, BUFFER)
        ledger = await self._consent.read({m.recipient for ms in heads.values() for m in ms})
        listed = frozenset(ledger)  # one for every number of the read
        for key in keys:
            self.queues.refilled(key, heads[key], listed, ledger)

    def _take(
        self,
        key: str,
        slot_at: datetime,
        now: datetime,
        *,
        steps: list[Transition],
        ended: list[Message],
        taken: list[Message],
    ) -> Message | None:
        """The next head of ``key`` that may go, into Sending; the heads before it that
        may not go, ended. None when the buffer has none to send now."""
        queue = self.queues[key]
        while queue.buffer:
            head = queue.buffer[0]
            if is_expired(head, now):
                step, after = transition(head, TextStatus.UNSENT, at=now, source=Source.SCHEDULER,
                                         reason=Reason.EXPIRED)  # fmt: skip
            elif is_expired(head, slot_at):
                return None
            elif optout := self._consent.blocking(
                queue.ledger,
                head.recipient,
                channel=Channel.TEXT,
                sender=head.sender,
                campaign=head.campaign_id,
            ):
                step, after = transition(
                    head, TextStatus.FAILED, at=now, source=Source.SCHEDULER,
                    reason=Reason.DO_NOT_TEXT, detail=refusal(optout),
                )  # fmt: skip
            else:
                step, after = transition(
                    head, TextStatus.SENDING, at=now, source=Source.SCHEDULER,
                    attempt_id=new_id("att"),
                )  # fmt: skip
                self.queues.left(head)
                taken.append(head)
                steps.append(step)
                return after
            self.queues.left(head)
            taken.append(head)
            steps.append(step)
            ended.append(after)
        return None

    async def ready(self, item: Message) -> bool:
        if item.recipient not in self._consent.changed:  # no I/O unless it changed here
            return True
        optout = await self._consent.check(
            item.recipient, channel=Channel.TEXT, sender=item.sender, campaign=item.campaign_id
        )
        if optout is None:
            return True
        step, failed = transition(  # opted out while it waited for its slot
            item, TextStatus.FAILED, at=self._clock.now().wall, source=Source.SCHEDULER,
            reason=Reason.DO_NOT_TEXT, detail=refusal(optout),
        )  # fmt: skip
        self.record_soon([step])  # the sends due with it do not wait for this write
        self.outcome(failed)
        return False

    def started(self, key: str, at: Instant) -> None:
        self.sent_count += 1
        self.sends.add(key, at.mono)

    async def send(self, item: Message, hand_off: HandOff) -> Accepted:
        if not self.owner.may_call(item.sender, item.id):
            await self._untrusted(item)
            raise LeaseLost(f"the lease on {item.sender} may have lapsed before the send")
        # No await between the check and the call: the lease is trusted at the call.
        return await self._channel.send(self.request(item, hand_off))

    async def _untrusted(self, item: Message) -> None:
        """The number's lease may have lapsed before the send: the provider was not
        called; the text goes back to its queue (fenced: unless the number's new owner
        has settled it already)."""
        step, queued = transition(
            item, TextStatus.QUEUED, at=self._clock.now().wall, source=Source.SCHEDULER,
            reason=Reason.NOT_RECEIVED,
            detail="the lease on its number may have lapsed before the send: not sent",
        )  # fmt: skip
        async with self._putting_back(item.sender):
            await self.record([step])
            if self.owner.owns(item.sender):
                self.queues.added(queued)
                self.pacer.wake(item.sender)

    def _putting_back(self, number: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Held while a started text of ``number`` goes back to its queue (its lease no
        longer trusted before the provider call, the provider never had it, or the
        provider asked to retry it), from before its write to its return to the buffer:
        the number's lock, which its claims hold. Without it, a claim between the two
        took the number's next text out of the buffer (the first not back in it yet) and
        started it: the next text left first. A claim already under way ends first; on a
        store several workers share its start of the next text is refused (``busy``)
        while the first is still Sending, so nothing of the number passes it. On a store
        of its own, such a claim (the provider's answer came after the number's next
        slot) has sent the next text already."""
        return self.engine.lock(number)

    async def taken(
        self, item: Message, accepted: Accepted, *, started: Instant, hold: float
    ) -> None:
        step, sent = transition(
            item, TextStatus.SENT, at=self._clock.now().wall, source=Source.PROVIDER,
            provider_id=accepted.provider_id, send_started_at=started.wall,
        )  # fmt: skip
        written = self.record_soon(
            [step], next_slots={item.sender: started.wall + timedelta(seconds=hold)}
        )
        if self.owner.shared:  # only a start under a lease is refused busy
            self._sent_writes[item.sender] = written
        self.receipts.awaiting(sent)
        self.outcome(sent)
        log.debug("dispatch.sent", extra={"message_id": item.id, "sender": item.sender})
        self.receipts.unpark(accepted.provider_id)

    async def retry(
        self, item: Message, exc: ProviderError, decision: Retry, slot_at: datetime
    ) -> None:
        step, queued = transition(
            item, TextStatus.QUEUED, at=self._clock.now().wall, source=Source.PROVIDER,
            reason=Reason.RETRY, provider_code=exc.provider_code, detail=decision.detail,
        )  # fmt: skip
        async with self._putting_back(item.sender):
            await self.record([step], next_slots={item.sender: slot_at})
            self.queues.added(queued)

    async def fail(
        self, item: Message, exc: ProviderError, decision: GiveUp, slot_at: datetime
    ) -> None:
        if exc.permanent_reason == Reason.OPTED_OUT:
            reason = f"the contact replied STOP (provider code {exc.provider_code})"
            await self._opt_out(item.recipient, reason)
        step, failed = transition(
            item, TextStatus.FAILED, at=self._clock.now().wall, source=Source.PROVIDER,
            reason=decision.reason or Reason.PROVIDER_REJECTED,
            provider_code=exc.provider_code, detail=decision.detail,
        )  # fmt: skip
        await self.record([step], next_slots={item.sender: slot_at})
        self.outcome(failed)

    async def lookup(self, item: Message) -> Accepted | None:
        return await self._channel.lookup(self.request(item))

    async def received(self, item: Message, found: Accepted) -> None:
        now = self._clock.now().wall
        started = found.received_at or now
        step, sent = transition(
            item, TextStatus.SENT, at=now, source=Source.RECONCILE,
            provider_id=found.provider_id, send_started_at=started,
            detail=f"the provider has attempt {item.attempt_id}",
        )  # fmt: skip
        slot = started + timedelta(seconds=self.hold(item))
        await self.record([step], next_slots={item.sender: slot})
        self.receipts.awaiting(sent)
        self.outcome(sent)
        if (receipt := await self._channel.poll(found.provider_id)) is not None:
            self.receipts.report(receipt)

    async def not_received(self, item: Message, *, running: bool) -> None:
        step, queued = transition(
            item, TextStatus.QUEUED, at=self._clock.now().wall, source=Source.RECONCILE,
            reason=Reason.NOT_RECEIVED,
            detail=f"the provider never received attempt {item.attempt_id}",
        )  # fmt: skip
        if not running:  # at a restore: every number is locked, or none is paced yet
            await self.record([step])
            return
        async with self._putting_back(item.sender):
            await self.record([step])
            self.queues.added(queued)
            self.pacer.wake(item.sender)

    def request(self, message: Message, hand_off: HandOff | None = None) -> SendRequest:
        return SendRequest(
            message_id=message.id,
            attempt_id=message.attempt_id or "",
            sender=message.sender,
            recipient=message.recipient,
            body=message.body,
            segments=message.segments,
            validity=min(self._config.pacing.validity, message.expires_at - message.accepted_at),
            claimed_at=message.updated_at if message.status is TextStatus.SENDING else None,
            handed_off=hand_off,
        )

    # -- start-up and recovery -------------------------------------------------------
    async def restore(self) -> None:
        """Settle in-doubt sends, then read each number's queue, pause flag and next
        slot, the counts and the last errors, from the store (at start, and after a
        store fault)."""
        in_doubt: list[Message] = []
        if self.owner.adopts_at_restore():  # else each owner settles its own numbers'
            in_doubt = await self._store.in_status(TextStatus.SENDING, limit=1_000_000)
        for message in in_doubt:
            await self.engine.reconcile(message, running=False)
        doubtful: dict[str, float] = {}
        for m in in_doubt:
            doubtful[m.sender] = max(doubtful.get(m.sender, 0.0), self.hold(m))
        self.queues.counts.clear()
        self.queues.counts.update(await self._store.counts())
        # The operator's last errors are the store's: they survive a restart.
        self.errors.clear()
        self.errors.extend(reversed(await self._store.recent_errors(_ERRORS_KEPT)))
        now = self._clock.now()
        for state in await self._store.numbers():
            queue = self.queues[state.number]
            queue.paused = state.paused
            self.queues.set_depth(state.number, state.depth)
            queue.buffer.clear()  # read again when the number is next due
            if state.next_slot_at is not None:
                ahead = (state.next_slot_at - now.wall).total_seconds()
                self.pacer.restore(state.number, now.mono + ahead)
            if state.number in doubtful:
                # A send may have left just before the crash: wait one full slot.
                self.pacer.restore(state.number, now.mono + doubtful[state.number])
            if state.depth:
                self.pacer.wake(state.number)

    # -- what the leases tell the desk -----------------------------------------------
    def lost(self, keys: Collection[str]) -> None:
        """This process no longer paces ``keys``: their buffers and slots are dropped (the
        next owner reads them from the store)."""
        for key in keys:
            self.queues[key].buffer.clear()
            self.pacer.forget(key)
            self._sent_writes.pop(key, None)

    async def work(self, found: Sequence[KeyWork]) -> None:
        """What the held numbers hold now (read at each turn of the leases): depths,
        pause flags and next slots follow the store; texts left Sending by another
        worker (or by this one, unfinished) are reconciled with the provider before
        anything else is sent from their number; numbers with texts queued are woken. A
        number whose claim is under way is not settled: the text its start has just made
        Sending is this worker's own, not yet counted in flight. Nor is a text the owner
        may not settle (a lease no longer trusted, or a newer owner's start)."""
        try:
            await self._work(found)
        finally:
            self._written_since = None

    async def _work(self, found: Sequence[KeyWork]) -> None:
        now = self._clock.now()
        for w in found:
            queue = self.queues[w.key]
            queue.paused = w.paused
            if w.queued != queue.depth:
                self.queues.set_depth(w.key, w.queued)
            if w.next_slot_at is not None:
                self.pacer.restore(w.key, now.mono + (w.next_slot_at - now.wall).total_seconds())
            if w.sending and not self.engine.in_flight.get(w.key) and w.key not in self._claiming:
                await self._settle_left(w.key, w.sending)
            if w.queued and not w.paused:
                self.pacer.wake(w.key)

    async def _settle_left(self, key: str, sending: Sequence[tuple[str, int | None]]) -> None:
        for message_id, epoch in sending:
            # A text whose move out of Sending this worker is writing, or has written since
            # the read began, is its own: not read again. Each was read, one round trip
            # after the other in the turn: with 2,000 busy numbers on a worker sending
            # 1,000 a second, most of its numbers had their last Sent being written (or
            # written once the read's answer came, their next text not started yet), and
            # the turn, which sheds numbers to workers that join, took tens of seconds:
            # workers that joined a busy one were given no number in a whole run.
            if message_id in self._settling or not self._may_settle(key, message_id, epoch):
                continue
            self._settling.add(message_id)
            try:
                message = await self._store.get(message_id)
                if (message is None or message.status is not TextStatus.SENDING
                        or not self._may_settle(key, message_id, epoch)):  # fmt: skip
                    continue  # asked again after the read: either may have changed
                self.owner.started(message_id, epoch)
                # Its outcome is unknown here (its worker may have died between the request
                # and recording the answer): counted, and the provider is asked.
                self.engine.provider_errors.add(OUTCOME_UNKNOWN)
                log.warning("dispatch.outcome_unknown", extra={
                    "id": message_id, "sender": message.sender, "epoch": epoch,
                    "why": "left Sending on a number this worker took over",
                })  # fmt: skip
                await self.engine.reconcile(message, running=True)
            finally:
                self._settling.discard(message_id)

    def _may_settle(self, key: str, message_id: str, epoch: int | None) -> bool:
        """Not a text whose move out of Sending this worker is writing, and one its
        owner may settle (:meth:`Owner.may_settle`)."""
        written = self._written_since
        return (message_id not in self._writing
                and (written is None or message_id not in written)
                and self.owner.may_settle(key, epoch))  # fmt: skip

    # -- expiry ----------------------------------------------------------------------
    async def expiry_loop(self) -> None:
        while not self.closing:
            self._next_expiry = await self._store.next_expiry()
            timer = None
            if self._next_expiry is not None:
                now = self._clock.now()
                if self._next_expiry <= now.wall:
                    await self._expire(now.wall)
                    continue
                wait = (self._next_expiry - now.wall).total_seconds()
                timer = self._clock.call_at(now.mono + wait, self._expiry_wake.set)
            await self._expiry_wake.wait()
            self._expiry_wake.clear()
            if timer is not None:
                timer.cancel()

    async def _expire(self, now: datetime) -> None:
        for message in await self._store.expired(now, _EXPIRY_BATCH):
            async with self.engine.lock(message.sender):
                fresh = await self._store.get(message.id)
                if fresh is None or fresh.status not in WAITING:
                    continue
                step, ended = transition(
                    fresh, TextStatus.UNSENT, at=now, source=Source.SCHEDULER,
                    reason=Reason.EXPIRED,
                )  # fmt: skip
                self.queues.left(fresh)
                await self.record([step])
                self.outcome(ended)
                log.info("dispatch.expired", extra={"message_id": message.id})
            self.pacer.wake(message.sender)
