"""The one service API. The CLI, the control socket and (later) HTTP are thin fronts.

``Dispatcher`` owns the store, the channel and the pacer. Open it with ``async
with``; it recovers what a previous run left in flight, then runs its loops in a
task group until closed, when it drains: no new sends start, sends in flight
finish, receipts already in are recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from dispatcher import private, report, runtime
from dispatcher.automation_types import TEXT_RESULTS, Observed
from dispatcher.automations import Engine, load_rules
from dispatcher.calls import Call
from dispatcher.campaign_desk import CampaignDesk
from dispatcher.channels import (
    CallReport,
    Channel,
    HandOff,
    Receipt,
    SendRequest,
    open_channel,
)
from dispatcher.clock import Clock, Instant, SystemClock
from dispatcher.config import Config
from dispatcher.engine.bus import Bus
from dispatcher.engine.parking import Parked
from dispatcher.engine.retries import Retries, Retry
from dispatcher.errors import Conflict, NotFound, OutcomeUnknown, ProviderError, StoreUnavailable
from dispatcher.health import StoreFault, StoreHealth
from dispatcher.intake import Intake, Submission, TextRequest, new_id
from dispatcher.lifecycle import Resource
from dispatcher.metrics import NO_KEY, EngagementRow, Metrics, MetricsQuery, compute
from dispatcher.model import (
    TERMINAL,
    WAITING,
    DntEntry,
    Event,
    Keyword,
    Lane,
    Message,
    QueueContext,
    Reason,
    Source,
    TextStatus,
    Transition,
    count_segments,
    explain,
    is_expired,
    keyword,
    slot_seconds,
    transition,
)
from dispatcher.numbers import e164
from dispatcher.queues import BUFFER, Queues
from dispatcher.scheduler import Book, Pacer
from dispatcher.store import Store, open_store
from dispatcher.voice import CallDesk, CallRequest, CallsSummary, CallSubmission, CallView

log = logging.getLogger(__name__)
_T = TypeVar("_T")

_STRIPES = 256
_RECEIPT_BATCH = 500
_EXPIRY_BATCH = 500
_AWAITING_MAX = 200_000
_RECENT = 60.0  # seconds of send times kept per number (sent_last_minute)
_ERRORS_KEPT = 20  # texts that ended in error, for status's recent_errors
_ERRORS = frozenset({TextStatus.FAILED, TextStatus.UNDELIVERED, TextStatus.UNREACHABLE})

__all__ = [
    "CallRequest",
    "CallSubmission",
    "CallView",
    "Dispatcher",
    "MessageView",
    "NumberView",
    "StatusView",
    "Submission",
    "TextRequest",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageView:
    message: Message
    history: list[Event]
    explanation: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberView:
    number: str
    depth: int
    next_slot_at: datetime | None
    in_flight: int
    paused: bool
    rate: float
    sent_last_minute: int = 0  # sends started by this process in the last 60 s


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusView:
    counts: dict[TextStatus, int]
    numbers: list[NumberView]
    numbers_total: int  # every sending number the service knows
    in_flight: int
    at: datetime
    calls: CallsSummary | None = None
    sent_last_minute: int = 0  # every number's sends started in the last 60 s
    recent_errors: list[Message] = field(default_factory=list)  # newest first, at most 20
    store_fault: StoreFault | None = None  # why sending is paused and work refused, if it is


class Dispatcher(Resource):
    """Texts accepted, paced per sending number, sent, tracked; questions answered."""

    def __init__(
        self,
        config: Config,
        *,
        store: Store,
        channel: Channel,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.channel = channel
        self.clock: Clock = clock or SystemClock()
        self._health = StoreHealth(self.clock, probe_every=config.store.fault_probe.total_seconds())
        self._pacer = Pacer(
            self.clock,
            self._dispatch,
            workers=config.pacing.max_in_flight,
            lead=config.pacing.lead.total_seconds(),
            store_fault=self._store_fault,
        )
        self._sender_locks = [asyncio.Lock() for _ in range(_STRIPES)]
        self._queues = Queues()
        self._intake = Intake(
            store, self.clock, config.pacing, self._queues.pending, on_stored=self._accepted
        )
        self._dnt_changes: dict[str, bool] = {}  # listed or not, as changed by this process
        self._awaiting: dict[str, Message] = {}  # provider id -> Sent message awaiting receipt
        self.sent_count = 0  # sends started by this process
        self._sends: defaultdict[str, deque[float]] = defaultdict(deque)  # last 60 s, per number
        self._errors: deque[Message] = deque(maxlen=_ERRORS_KEPT)  # Failed, Undelivered, ...
        self._held = False
        self._inbound_lock = asyncio.Lock()
        self._retries = Retries(config.provider)
        self._in_flight: Counter[str] = Counter()
        self._idle = asyncio.Event()
        self._idle.set()
        self._pacer_task: asyncio.Task[None] | None = None
        self._collector: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self._receipts: asyncio.Queue[Receipt | None] = asyncio.Queue()
        self._refused_receipts: list[Receipt] = []  # applied again once the store recovers
        self._parked: Parked[Receipt] = Parked(what="receipt")
        self._expiry_wake = asyncio.Event()
        self._next_expiry: datetime | None = None
        self._stack = contextlib.AsyncExitStack()
        self._group: asyncio.TaskGroup | None = None
        self._closing = False
        self.started = asyncio.Event()
        self.bus = Bus()  # results and outcomes, for the automations and campaigns
        self.calls = CallDesk(
            config,
            store=store,
            channel=channel,
            clock=self.clock,
            submit_text=self.submit,
            bus=self.bus,
        )
        self._call_pacer: asyncio.Task[None] | None = None
        self.campaigns = CampaignDesk(config, store=store, clock=self.clock, service=self)
        rules = []
        if config.automations.file:
            rules = load_rules(Path(config.automations.file), scripts=config.scripts)
        self.automations = Engine(
            rules, store=store, clock=self.clock, service=self, scripts=config.scripts
        )
        self.bus.subscribe(Observed, self.automations.observe)

    @classmethod
    def from_config(cls, config: Config, *, clock: Clock | None = None) -> Dispatcher:
        """Build the store and channel the configuration names (imported lazily)."""
        clock = clock or SystemClock()
        store = open_store(
            config.store_url, commit_window=config.store.commit_window.total_seconds()
        )
        channel = open_channel(
            config.provider.url,
            simulator=config.simulator,
            twilio=config.twilio,
            status_callbacks=config.http.public_url or None,
            log_path=config.simulator_log,
            clock=clock,
        )
        return cls(config, store=store, channel=channel, clock=clock)

    # -- lifecycle -------------------------------------------------------------------
    async def open(self) -> None:
        private.prepare_home(self.config.home)  # 0700, ours, not a symbolic link
        stack = self._stack
        await stack.enter_async_context(self.store)
        await stack.enter_async_context(self.channel)
        self.channel.on_receipt(self._receipts.put_nowait)
        await self._recover()
        await self.calls.recover()
        await self.automations.load()
        # The task group is exited by hand, without the body's exception, so an error
        # in the caller's block reaches it as itself, not wrapped in an ExceptionGroup.
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._pacer_task = self._group.create_task(self._pacer.run(), name="pacer")
        self._group.create_task(self._keep(self._receipt_loop), name="receipts")
        self._group.create_task(self._keep(self._expiry_loop), name="expiry")
        self._call_pacer = self._group.create_task(self.calls.pacer.run(), name="call-pacer")
        self._group.create_task(self._keep(self.calls.run_reports), name="call-reports")
        self._group.create_task(self._keep(self.campaigns.run), name="campaigns")
        self._group.create_task(self._keep(self.automations.run), name="automations")
        self._collector = self._group.create_task(runtime.collect_garbage(), name="gc")
        self._prober = self._group.create_task(
            self._health.run(probe=self.store.probe, settle=self._settle, resumed=self._resume),
            name="store-health",
        )
        self.started.set()
        log.info("service.started", extra={"store": self.config.store_url})

    async def close(self) -> None:
        try:
            await self._drain()
            if self._group is not None:
                await self._group.__aexit__(None, None, None)
        finally:
            await self._stack.aclose()

    async def _drain(self) -> None:
        """Stop starting sends, let those in flight finish, record receipts already in."""
        self._closing = True
        self.campaigns.stop()
        await self.campaigns.close()
        self._pacer.stop()
        self.calls.stop()
        timeout = self.config.service.drain_timeout.total_seconds()
        try:
            await asyncio.wait_for(
                asyncio.gather(self._idle.wait(), self.calls.idle.wait()), timeout
            )
        except TimeoutError:
            # Sends still in flight stay in Sending and are reconciled at the next start.
            log.warning("service.drain_timeout", extra={"in_flight": sum(self._in_flight.values())})
            for task in (self._pacer_task, self._call_pacer):
                if task is not None:
                    task.cancel()
        self._receipts.put_nowait(None)
        self.calls.stop_reports()
        self.automations.stop()
        self._expiry_wake.set()
        self._health.stop()
        for task in (self._collector, self._prober):
            if task is not None:
                task.cancel()
        log.info("service.drained")

    # -- store faults ----------------------------------------------------------------
    async def _keep(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Run one of the service's loops. A write the store refuses pauses it until
        the store takes writes again, then it starts over: its work is in the store."""
        while True:
            try:
                await loop()
            except StoreUnavailable as exc:
                self._store_fault(exc)
                await self._health.wait_healthy()
                if not self._closing:
                    continue
            return

    async def _taking_work(self, work: Coroutine[Any, Any, _T]) -> _T:
        """New work, refused while the store refuses writes (and if its own write is)."""
        try:
            self._health.check()
        except StoreUnavailable:
            work.close()
            raise
        try:
            return await work
        except StoreUnavailable as exc:
            self._store_fault(exc)
            raise self._health.refusal() from exc

    def _store_fault(self, exc: StoreUnavailable) -> None:
        """The store refused a write: pause texts and calls (see :mod:`dispatcher.health`)."""
        self._health.report(exc)
        self.calls.held = True

    async def _settle(self) -> None:
        """After a store fault, once writes succeed again: let the sends in flight
        finish, then settle as after a crash (texts left Sending are reconciled with the
        provider, every number's queue is read again from the store)."""
        await self._idle.wait()
        async with contextlib.AsyncExitStack() as locked:
            for lock in self._sender_locks:
                await locked.enter_async_context(lock)
            self._awaiting.clear()  # it may hold states whose writes were refused
            await self._restore()
            for receipt in self._refused_receipts:
                self._receipts.put_nowait(receipt)
            self._refused_receipts.clear()

    def _resume(self) -> None:
        """Start sending again (after an operator's hold or a store fault), unless
        the other still holds."""
        if self._held or self._health.fault is not None:
            return
        self.calls.release()
        for number, queue in self._queues.items():
            if queue.depth:
                self._pacer.wake(number)

    # -- submission ------------------------------------------------------------------
    async def submit(self, request: TextRequest) -> Submission:
        """Accept a text: validate, apply the Do Not Text and same-second rules, queue."""
        [submission] = await self.submit_many([request])
        return submission

    async def submit_many(self, requests: Sequence[TextRequest]) -> list[Submission]:
        """Accept many texts in one write. All are validated first: if one is invalid,
        none is stored and the error names its index."""
        if self._closing:
            raise Conflict("the service is shutting down; submit again once it is back")
        return await self._taking_work(self._intake.submit(requests))

    def _accepted(self, message: Message) -> None:
        self._queues.counted(None, message.status)
        if message.status is not TextStatus.QUEUED:
            self._outcome(message)
            log.info("dispatch.%s", message.reason, extra={"message_id": message.id})
            return
        self._queues.added(message)
        self._pacer.wake(message.sender)
        if self._next_expiry is None or message.expires_at < self._next_expiry:
            self._next_expiry = message.expires_at
            self._expiry_wake.set()

    def _outcome(self, message: Message) -> None:
        """A text reached a result: kept for the operator's recent errors, and shown to
        the automations (cheap: no I/O)."""
        if message.status in _ERRORS:
            self._errors.append(message)
        if self.bus.wanted(Observed) and (result := TEXT_RESULTS.get(message.status)):
            self.bus.publish(Observed(
                result=result, source_id=message.id, contact=message.recipient,
                sender=message.sender, campaign_id=message.campaign_id,
                at=self.clock.now().wall,
            ))  # fmt: skip

    async def _record(
        self, steps: Sequence[Transition], next_slots: Mapping[str, datetime] | None = None
    ) -> None:
        """Persist transitions (one atomic write) and keep the counts in step."""
        await self.store.record(steps, next_slots)
        for step in steps:
            if step.event.applied:
                self._queues.counted(step.from_status, step.event.status)

    # -- sending ---------------------------------------------------------------------
    async def _dispatch(self, sender: str, slot: float, book: Book) -> None:
        """Send the head of ``sender``'s queue at ``slot``. The claim (the durable
        intent to send) is made a little ahead, so its write is off the critical path."""
        async with self._lock_for(sender):
            if self._queues[sender].paused or self._held or self._closing or self._health.fault:
                return
            # Never before the number's next slot, even one moved since it was handed out.
            slot = max(slot, self._pacer.next_slot(sender) or slot)
            now = self.clock.now()
            slot_at = now.wall + timedelta(seconds=max(0.0, slot - now.mono))
            claimed = await self._claim(sender, slot_at)
            if claimed is None:
                return
            # In flight from its claim: a drain waits for it.
            self._in_flight[sender] += 1
            self._idle.clear()
        try:
            async with self._lock_for(sender):
                if (wait := slot - self.clock.now().mono) > 0:
                    await self.clock.sleep(wait)
                if self._dnt_changes.get(claimed.recipient):  # listed while it waited
                    step, failed = transition(
                        claimed, TextStatus.FAILED, at=self.clock.now().wall,
                        source=Source.SCHEDULER, reason=Reason.DO_NOT_TEXT,
                        detail="listed before sending",
                    )  # fmt: skip
                    await self._record([step])
                    self._outcome(failed)
                    book(slot)
                    return
                # The send starts now: this read books the slot, until the channel
                # reports the moment it handed the text over (see _send). Nothing
                # between the two yields to the loop.
                start = self.clock.now()
                hold = self._hold(claimed)
                book(start.mono + hold)
                self.sent_count += 1
                sends = self._sends[sender]
                sends.append(start.mono)
                if sends[0] <= start.mono - _RECENT:
                    _sent_since(sends, start.mono - _RECENT)
            await self._send(claimed, start, hold)
        finally:
            self._in_flight[sender] -= 1
            if self._in_flight[sender] <= 0:
                del self._in_flight[sender]
            if not self._in_flight:
                self._idle.set()

    def _hold(self, message: Message) -> float:
        """Seconds a send of ``message`` holds its number: its segments' slots + guard."""
        rate = self.config.pacing.rate_of(message.sender)
        return slot_seconds(message.segments, rate) + self.config.pacing.guard.total_seconds()

    async def _claim(self, sender: str, slot_at: datetime) -> Message | None:
        """Take the head of the queue into Sending, ending expired and listed ones.
        A head whose validity ends before ``slot_at`` is left to the expiry sweep,
        which ends it on time and wakes the number again."""
        queues = self._queues
        while True:
            if queues.needs_read(sender):
                heads = (await self.store.heads([sender], BUFFER))[sender]
                listed = await self.store.dnt_many({m.recipient for m in heads})
                queues.refilled(sender, heads, listed)
            queue = queues[sender]
            if not queue.buffer:
                return None
            head = queue.buffer[0]
            now = self.clock.now().wall
            if not is_expired(head, now) and is_expired(head, slot_at):
                return None
            if is_expired(head, now):
                step, ended = transition(head, TextStatus.UNSENT, at=now, source=Source.SCHEDULER,
                                         reason=Reason.EXPIRED)  # fmt: skip
            elif self._dnt_changes.get(head.recipient, head.recipient in queue.listed):
                step, ended = transition(
                    head, TextStatus.FAILED, at=now, source=Source.SCHEDULER,
                    reason=Reason.DO_NOT_TEXT, detail="listed before sending",
                )  # fmt: skip
            else:
                # The intent to send is durable before the provider hears of it.
                step, sending = transition(
                    head, TextStatus.SENDING, at=now, source=Source.SCHEDULER,
                    attempt_id=new_id("att"),
                )  # fmt: skip
                queues.left(head)
                try:
                    await self._record([step])
                except BaseException:
                    queues.added(head)
                    raise
                return sending
            queues.left(head)
            await self._record([step])
            self._outcome(ended)

    async def _send(self, message: Message, start: Instant, hold: float) -> None:
        """The provider call and what follows it. ``start`` was read just before; the
        channel's own read as it hands the text over replaces it: the number's next
        slot and the audit time are that moment, as the provider sees it."""

        def handed_off(at: Instant) -> None:
            nonlocal start
            start = at
            self._pacer.restore(message.sender, at.mono + hold)

        request = _request(message, self.config.pacing.validity, handed_off)
        try:
            accepted = await self.channel.send(request)
        except OutcomeUnknown as exc:
            log.warning("dispatch.outcome_unknown", extra={"message_id": message.id, "error": exc})
            await self._reconcile(message, running=True)
            return
        except ProviderError as exc:
            await self._refused(
                message, exc, {message.sender: start.wall + timedelta(seconds=hold)}
            )
            return
        except Exception:
            log.exception("dispatch.outcome_unknown", extra={"message_id": message.id})
            await self._reconcile(message, running=True)
            return
        step, sent = transition(
            message, TextStatus.SENT, at=self.clock.now().wall, source=Source.PROVIDER,
            provider_id=accepted.provider_id, send_started_at=start.wall,
        )  # fmt: skip
        await self._record(
            [step], next_slots={message.sender: start.wall + timedelta(seconds=hold)}
        )
        self._retries.taken(message.id)
        self._await_receipt(sent)
        self._outcome(sent)
        log.debug("dispatch.sent", extra={"message_id": message.id, "sender": message.sender})
        for receipt in self._parked.release(accepted.provider_id):
            self._receipts.put_nowait(receipt)

    async def _refused(
        self, message: Message, exc: ProviderError, slot: dict[str, datetime]
    ) -> None:
        now = self.clock.now()
        decision = self._retries.refused(message.id, exc)
        if isinstance(decision, Retry):
            # Back off: the number waits retry_backoff, then twice as long, ... beyond its slot.
            backoff = decision.backoff
            step, queued = transition(
                message, TextStatus.QUEUED, at=now.wall, source=Source.PROVIDER,
                reason=Reason.RETRY, provider_code=exc.provider_code, detail=decision.detail,
            )  # fmt: skip
            slot = {number: at + backoff for number, at in slot.items()}
            await self._record([step], next_slots=slot)
            self._pacer.restore(message.sender, now.mono + backoff.total_seconds())
            self._queues.added(queued)
            self._pacer.wake(message.sender)
            return
        if exc.permanent_reason == Reason.OPTED_OUT:
            await self.dnt_add(
                message.recipient, added_by="carrier",
                reason=f"the contact replied STOP (provider code {exc.provider_code})",
            )  # fmt: skip
        step, failed = transition(
            message, TextStatus.FAILED, at=now.wall, source=Source.PROVIDER,
            reason=decision.reason or Reason.PROVIDER_REJECTED,
            provider_code=exc.provider_code, detail=decision.detail,
        )  # fmt: skip
        await self._record([step], next_slots=slot)
        self._outcome(failed)
        log.info("dispatch.failed", extra={"message_id": message.id, "code": exc.provider_code})

    async def _reconcile(self, message: Message, *, running: bool) -> None:
        """Settle a message left in Sending: ask the provider, never resend blindly."""
        request = _request(message, self.config.pacing.validity)
        found = await self.channel.lookup(request)
        now = self.clock.now().wall
        if found is not None:
            started = found.received_at or now
            step, sent = transition(
                message, TextStatus.SENT, at=now, source=Source.RECONCILE,
                provider_id=found.provider_id, send_started_at=started,
                detail=f"the provider has attempt {message.attempt_id}",
            )  # fmt: skip
            slot = started + timedelta(seconds=self._hold(message))
            await self._record([step], next_slots={message.sender: slot})
            self._await_receipt(sent)
            self._outcome(sent)
            if (receipt := await self.channel.poll(found.provider_id)) is not None:
                self._receipts.put_nowait(receipt)
        else:
            step, queued = transition(
                message, TextStatus.QUEUED, at=now, source=Source.RECONCILE,
                reason=Reason.NOT_RECEIVED,
                detail=f"the provider never received attempt {message.attempt_id}",
            )  # fmt: skip
            await self._record([step])
            if running:
                self._queues.added(queued)
                self._pacer.wake(message.sender)
        log.info(
            "dispatch.reconciled",
            extra={"message_id": message.id, "received": found is not None},
        )

    async def _recover(self) -> None:
        """Before pacing starts: settle in-doubt sends, restore the queues, and ask for
        the receipts of texts Sent before the stop."""
        await self._restore()
        await self._intake.load()
        for message in await self.store.in_status(TextStatus.SENT, limit=1_000_000):
            if message.provider_id is None:
                continue
            self._await_receipt(message)
            if receipt := await self.channel.poll(message.provider_id):
                self._receipts.put_nowait(receipt)

    async def _restore(self) -> None:
        """Settle in-doubt sends, then read each number's queue, pause flag and next
        slot, and the counts, from the store (at start, and after a store fault)."""
        in_doubt = await self.store.in_status(TextStatus.SENDING, limit=1_000_000)
        for message in in_doubt:
            await self._reconcile(message, running=False)
        doubtful: dict[str, float] = {}
        for m in in_doubt:
            doubtful[m.sender] = max(doubtful.get(m.sender, 0.0), self._hold(m))
        self._queues.counts.clear()
        self._queues.counts.update(await self.store.counts())
        now = self.clock.now()
        for state in await self.store.numbers():
            queue = self._queues[state.number]
            queue.paused, queue.depth = state.paused, state.depth
            queue.buffer.clear()  # read again when the number is next due
            if state.next_slot_at is not None:
                ahead = (state.next_slot_at - now.wall).total_seconds()
                self._pacer.restore(state.number, now.mono + ahead)
            if state.number in doubtful:
                # A send may have left just before the crash: wait one full slot.
                self._pacer.restore(state.number, now.mono + doubtful[state.number])
            if state.depth:
                self._pacer.wake(state.number)

    # -- inbound ---------------------------------------------------------------------
    async def receive(
        self, *, sender: str, recipient: str, body: str, provider_id: str
    ) -> tuple[Message, Keyword]:
        """A text a contact sent us: stored (Receiving, then Received) once per provider
        id, and its keyword applied: opt-out words list the contact, opt-in words take it
        off the list, HELP asks for the help reply."""
        contact, number = e164(sender, field="From"), e164(recipient, field="To")
        async with self._inbound_lock:  # a webhook repeated at once is still one text
            return await self._receive(contact, number, body, provider_id)

    async def _receive(
        self, contact: str, number: str, body: str, provider_id: str
    ) -> tuple[Message, Keyword]:
        if (earlier := await self.store.by_provider_id(provider_id)) is not None:
            return earlier, keyword(earlier.body)  # a repeated webhook: nothing new
        now = self.clock.now().wall
        message = Message(
            id=new_id("msg"), sender=contact, recipient=number, body=body,
            segments=count_segments(body).segments, lane=Lane.BULK,
            status=TextStatus.RECEIVING, accepted_at=now, expires_at=now, updated_at=now,
            provider_id=provider_id, reason=Reason.INBOUND,
        )  # fmt: skip
        receiving = Event(message_id=message.id, at=now, status=TextStatus.RECEIVING,
                          reason=Reason.INBOUND, source=Source.PROVIDER)  # fmt: skip
        step, received = transition(message, TextStatus.RECEIVED, at=now, source=Source.PROVIDER,
                                    reason=Reason.INBOUND)  # fmt: skip
        stored = await self.store.insert_message(received, [receiving, step.event])
        self._queues.counted(None, stored.status)
        asked = keyword(body)
        if asked is Keyword.OPT_OUT:
            word = " ".join(body.strip().upper().split())
            await self.dnt_add(contact, added_by="contact", reason=f"replied {word} to {number}")
        elif asked is Keyword.OPT_IN:
            await self.dnt_remove(contact)
        log.info("inbound.received", extra={"message_id": stored.id, "keyword": asked.value})
        return stored, asked

    # -- receipts --------------------------------------------------------------------
    def report(self, receipt: Receipt) -> None:
        """A status report from outside (a provider's callback); applied in order with
        every other receipt, merged without moving a text backwards."""
        self._receipts.put_nowait(receipt)

    def _await_receipt(self, message: Message) -> None:
        if message.provider_id is None:
            return
        if len(self._awaiting) >= _AWAITING_MAX:  # the oldest falls back to a store read
            del self._awaiting[next(iter(self._awaiting))]
        self._awaiting[message.provider_id] = message

    async def _receipt_loop(self) -> None:
        while True:
            first = await self._receipts.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < _RECEIPT_BATCH and not self._receipts.empty():
                item = self._receipts.get_nowait()
                if item is None:
                    await self._apply_receipts(batch)
                    return
                batch.append(item)
            await self._apply_receipts(batch)

    async def _apply_receipts(self, receipts: Sequence[Receipt]) -> None:
        """Apply a batch, or keep it for when the store takes writes again (it is
        applied then; at a stop it is left to the next start, which polls every Sent
        text)."""
        if self._health.fault is None:
            try:
                await self._merge_receipts(receipts)
            except StoreUnavailable as exc:
                self._store_fault(exc)
            else:
                return
        self._refused_receipts.extend(receipts)

    async def _merge_receipts(self, receipts: Sequence[Receipt]) -> None:
        steps: list[Transition] = []
        seen: dict[str, Message] = {}  # as this batch leaves it (not yet written)
        for receipt in receipts:
            pid = receipt.provider_id
            message = (
                seen.get(pid) or self._awaiting.get(pid) or await self.store.by_provider_id(pid)
            )
            if message is None:
                self._parked.park(receipt.provider_id, receipt)
                continue
            step, after = transition(
                message, receipt.status, at=receipt.at, source=Source.RECEIPT,
                reason=receipt.reason, provider_code=receipt.provider_code,
            )  # fmt: skip
            steps.append(step)
            seen[pid] = after
            if after.status in TERMINAL:
                self._awaiting.pop(pid, None)
                self.channel.settled(pid)
            else:
                self._awaiting[pid] = after
            if step.event.applied:
                self._outcome(after)
        if steps:
            await self._record(steps)

    # -- expiry ----------------------------------------------------------------------
    async def _expiry_loop(self) -> None:
        while not self._closing:
            self._next_expiry = await self.store.next_expiry()
            timer = None
            if self._next_expiry is not None:
                now = self.clock.now()
                if self._next_expiry <= now.wall:
                    await self._expire(now.wall)
                    continue
                wait = (self._next_expiry - now.wall).total_seconds()
                timer = self.clock.call_at(now.mono + wait, self._expiry_wake.set)
            await self._expiry_wake.wait()
            self._expiry_wake.clear()
            if timer is not None:
                timer.cancel()

    async def _expire(self, now: datetime) -> None:
        for message in await self.store.expired(now, _EXPIRY_BATCH):
            async with self._lock_for(message.sender):
                fresh = await self.store.get(message.id)
                if fresh is None or fresh.status not in WAITING:
                    continue
                step, _ = transition(fresh, TextStatus.UNSENT, at=now, source=Source.SCHEDULER,
                                     reason=Reason.EXPIRED)  # fmt: skip
                self._queues.left(fresh)
                await self._record([step])
                log.info("dispatch.expired", extra={"message_id": message.id})
            self._pacer.wake(message.sender)

    # -- operator verbs --------------------------------------------------------------
    async def message(self, message_id: str) -> MessageView:
        message = await self._get(message_id)
        history = await self.store.history(message_id)
        queue = None
        if message.status is TextStatus.QUEUED:
            queue = QueueContext(
                ahead=await self.store.queued_ahead(message),
                next_slot_at=self._next_slot_at(message.sender, self.clock.now()),
                paused=self._queues[message.sender].paused,
                rate=self.config.pacing.rate_of(message.sender),
            )
        dnt = await self.store.dnt_get(message.recipient)
        return MessageView(
            message=message, history=history, explanation=explain(message, queue=queue, dnt=dnt)
        )

    async def find(self, recipient: str, limit: int = 50) -> list[Message]:
        return await self.store.find(e164(recipient, field="to"), limit)

    async def status(self, *, limit: int = 100, number: str | None = None) -> StatusView:
        """Answered from memory: counts by status, and the ``limit`` numbers with the
        deepest queues (or just ``number``)."""
        now = self.clock.now()
        if number is not None:
            wanted = [e164(number)]
        else:
            deepest = heapq.nsmallest(
                limit, self._queues.items(), key=lambda item: (-item[1].depth, item[0])
            )
            wanted = [name for name, _ in deepest]
        since = now.mono - _RECENT
        return StatusView(
            counts=dict(self._queues.counts),
            numbers=[self._number_view(name, now) for name in wanted],
            numbers_total=len(self._queues),
            in_flight=sum(self._in_flight.values()),
            at=now.wall,
            calls=self.calls.summary(),
            sent_last_minute=sum(_sent_since(s, since) for s in self._sends.values()),
            recent_errors=list(reversed(self._errors)),
            store_fault=self._health.fault,
        )

    async def cancel(self, message_id: str) -> Message:
        message = await self._get(message_id)
        async with self._lock_for(message.sender):
            message = await self._get(message_id)
            if message.status is TextStatus.UNSENT and message.reason == Reason.CANCELED:
                return message
            if message.status not in WAITING:
                raise Conflict(
                    f"message {message_id} is {message.status.value}; only Pending or Queued "
                    "messages can be cancelled"
                )
            step, after = transition(
                message, TextStatus.UNSENT, at=self.clock.now().wall, source=Source.OPERATOR,
                reason=Reason.CANCELED,
            )  # fmt: skip
            self._queues.left(message)
            await self._record([step])
        log.info("dispatch.canceled", extra={"message_id": message_id})
        return after

    async def pause(self, number: str) -> NumberView:
        return await self._set_paused(e164(number), paused=True)

    async def resume(self, number: str) -> NumberView:
        view = await self._set_paused(e164(number), paused=False)
        self._pacer.wake(view.number)
        return view

    async def _set_paused(self, number: str, *, paused: bool) -> NumberView:
        async with self._lock_for(number):
            await self.store.set_paused(number, paused)
            self._queues[number].paused = paused
        log.info("number.paused" if paused else "number.resumed", extra={"sender": number})
        return self._number_view(number, self.clock.now())

    def hold(self) -> None:
        """Start no new sends, on any number, until :meth:`release` (not persisted)."""
        self._held = True
        self.calls.held = True

    def release(self) -> None:
        """Undo :meth:`hold`: every number with a queue becomes due at its next slot."""
        self._held = False
        self._resume()

    async def dnt_add(self, number: str, *, added_by: str, reason: str | None) -> DntEntry:
        entry = DntEntry(
            number=e164(number), added_at=self.clock.now().wall, added_by=added_by, reason=reason
        )
        self._dnt_changes[entry.number] = True  # before the write: a send about to start sees it
        stored = await self.store.dnt_add(entry)
        log.info("dnt.added", extra={"number": entry.number, "by": added_by})
        return stored

    async def dnt_remove(self, number: str) -> bool:
        number = e164(number)
        removed = await self.store.dnt_remove(number)
        self._dnt_changes[number] = False
        log.info("dnt.removed", extra={"number": number, "removed": removed})
        return removed

    async def dnt_check(self, number: str) -> DntEntry | None:
        return await self.store.dnt_get(e164(number))

    async def dnt_list(self, limit: int = 1000) -> list[DntEntry]:
        return await self.store.dnt_list(limit)

    # -- engagement metrics ----------------------------------------------------------
    async def metrics(self, query: MetricsQuery | None = None) -> Metrics:
        """The result counts by channel (see :mod:`dispatcher.metrics`), counted in a
        worker thread: a large history must not hold up the sends."""
        rows = await self.store.engagement(query or MetricsQuery())
        return await asyncio.to_thread(compute, rows)

    async def report_data(self, query: MetricsQuery, bucket: str | None) -> dict[str, Any]:
        """What ``dispatcher report`` draws (see :mod:`dispatcher.report`), with the
        names of the campaigns in it."""
        now = self.clock.now().wall
        rows = await self.store.engagement(query)
        data = await asyncio.to_thread(_report_data_of, rows, query, bucket, now)
        for key in dict.fromkeys([*data["campaigns"], query.campaign_id]):
            if key and key != NO_KEY and (campaign := await self.store.get_campaign(key)):
                data["campaign_names"][key] = campaign.name
        return data

    # -- calls -----------------------------------------------------------------------
    async def submit_call(self, request: CallRequest) -> CallSubmission:
        """Accept a voice call: its script is validated, then it is paced per account."""
        return await self._taking_work(self.calls.submit(request))

    async def call(self, call_id: str) -> CallView:
        """One call: its status, history (statuses and the steps it ran) and explanation."""
        return await self.calls.view(call_id)

    async def cancel_call(self, call_id: str) -> Call:
        return await self.calls.cancel(call_id)

    async def find_calls(self, recipient: str, limit: int = 50) -> list[Call]:
        return await self.calls.find(recipient, limit)

    def report_call(self, report: CallReport) -> None:
        """A call status report from outside (the provider's status callback)."""
        self.calls.report(report)

    async def voice(self, call_id: str, at: str, form: Mapping[str, str]) -> str:
        """The TwiML the carrier plays next on a call (the call's voice webhook)."""
        return await self.calls.voice(call_id, at, form)

    # -- helpers ---------------------------------------------------------------------
    async def _get(self, message_id: str) -> Message:
        message = await self.store.get(message_id)
        if message is None:
            raise NotFound(f"no message with id {message_id!r}")
        return message

    def _number_view(self, number: str, now: Instant) -> NumberView:
        queue = self._queues.get(number)
        return NumberView(
            number=number,
            depth=queue.depth if queue else 0,
            next_slot_at=self._next_slot_at(number, now),
            in_flight=self._in_flight.get(number, 0),
            paused=queue.paused if queue else False,
            rate=self.config.pacing.rate_of(number),
            sent_last_minute=_sent_since(self._sends.get(number), now.mono - _RECENT),
        )

    def _next_slot_at(self, number: str, now: Instant) -> datetime | None:
        slot = self._pacer.next_slot(number)
        if slot is None:
            return None
        return now.wall + timedelta(seconds=slot - now.mono)

    def _lock_for(self, sender: str) -> asyncio.Lock:
        return self._sender_locks[hash(sender) % _STRIPES]


def _sent_since(sends: deque[float] | None, since: float) -> int:
    """How many send times (monotonic, oldest first) are after ``since``; drops the rest."""
    if not sends:
        return 0
    while sends and sends[0] <= since:
        sends.popleft()
    return len(sends)


def _request(
    message: Message, validity: timedelta, handed_off: HandOff | None = None
) -> SendRequest:
    return SendRequest(
        message_id=message.id,
        attempt_id=message.attempt_id or "",
        sender=message.sender,
        recipient=message.recipient,
        body=message.body,
        segments=message.segments,
        validity=min(validity, message.expires_at - message.accepted_at),
        claimed_at=message.updated_at if message.status is TextStatus.SENDING else None,
        handed_off=handed_off,
    )


def _report_data_of(
    rows: list[EngagementRow], query: MetricsQuery, bucket: str | None, now: datetime
) -> dict[str, Any]:
    """Counted in a worker thread, like the metrics, where the rows are freed too."""
    try:
        return report.build(rows, query=query, bucket=bucket, now=now)
    finally:
        rows.clear()
