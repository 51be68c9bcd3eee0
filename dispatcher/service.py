"""The one service API. The CLI, the control socket and (later) HTTP are thin fronts.

``Dispatcher`` owns the store, the channel and the pacer. Open it with ``async
with``; it recovers what a previous run left in flight, then runs its loops in a
task group until closed, when it drains: no new sends start, sends in flight
finish, receipts already in are recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import TracebackType
from typing import Self

from dispatcher.channels import Channel, Receipt, SendRequest, open_channel
from dispatcher.clock import Clock, Instant, SystemClock
from dispatcher.config import Config
from dispatcher.errors import Conflict, InvalidInput, NotFound, ProviderError
from dispatcher.model import (
    WAITING,
    DntEntry,
    Event,
    Lane,
    Message,
    QueueContext,
    Reason,
    Source,
    TextStatus,
    Transition,
    check_body,
    explain,
    fingerprint,
    is_expired,
    is_same_second_duplicate,
    slot_seconds,
    transition,
)
from dispatcher.numbers import e164
from dispatcher.scheduler import Book, Pacer
from dispatcher.store import Store, open_store

log = logging.getLogger(__name__)

_STRIPES = 256
_RECEIPT_BATCH = 500
_EXPIRY_BATCH = 500
_PARKED_MAX = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class TextRequest:
    """A text to send, as a front received it (validated by :meth:`Dispatcher.submit`)."""

    sender: str
    recipient: str
    body: str
    lane: Lane = Lane.AUTOMATION
    idempotency_key: str | None = None
    validity: timedelta | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Submission:
    message: Message
    created: bool  # False when an idempotency key returned an earlier message


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


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusView:
    counts: dict[TextStatus, int]
    numbers: list[NumberView]
    in_flight: int
    at: datetime


class Dispatcher:
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
        self._pacer = Pacer(self.clock, self._dispatch, workers=config.pacing.max_in_flight)
        self._sender_locks = [asyncio.Lock() for _ in range(_STRIPES)]
        self._submit_locks = [asyncio.Lock() for _ in range(_STRIPES)]
        self._paused: set[str] = set()
        self._in_flight: Counter[str] = Counter()
        self._idle = asyncio.Event()
        self._idle.set()
        self._pacer_task: asyncio.Task[None] | None = None
        self._receipts: asyncio.Queue[Receipt | None] = asyncio.Queue()
        self._parked: dict[str, tuple[float, list[Receipt]]] = {}
        self._expiry_wake = asyncio.Event()
        self._next_expiry: datetime | None = None
        self._stack = contextlib.AsyncExitStack()
        self._group: asyncio.TaskGroup | None = None
        self._closing = False
        self.started = asyncio.Event()

    @classmethod
    def from_config(cls, config: Config, *, clock: Clock | None = None) -> Dispatcher:
        """Build the store and channel the configuration names (imported lazily)."""
        clock = clock or SystemClock()
        store = open_store(config.store_url)
        channel = open_channel(
            config.provider.url,
            simulator=config.simulator,
            log_path=config.simulator_log,
            clock=clock,
        )
        return cls(config, store=store, channel=channel, clock=clock)

    # -- lifecycle -------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        stack = self._stack
        await stack.enter_async_context(self.store)
        await stack.enter_async_context(self.channel)
        self.channel.on_receipt(self._receipts.put_nowait)
        await self._recover()
        self._group = await stack.enter_async_context(asyncio.TaskGroup())
        stack.push_async_callback(self._drain)
        self._pacer_task = self._group.create_task(self._pacer.run(), name="pacer")
        self._group.create_task(self._receipt_loop(), name="receipts")
        self._group.create_task(self._expiry_loop(), name="expiry")
        self.started.set()
        log.info("service.started", extra={"store": self.config.store_url})
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    async def _drain(self) -> None:
        """Stop starting sends, let those in flight finish, record receipts already in."""
        self._closing = True
        self._pacer.stop()
        timeout = self.config.service.drain_timeout.total_seconds()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            # Sends still in flight stay in Sending and are reconciled at the next start.
            log.warning("service.drain_timeout", extra={"in_flight": sum(self._in_flight.values())})
            if self._pacer_task is not None:
                self._pacer_task.cancel()
        self._receipts.put_nowait(None)
        self._expiry_wake.set()
        log.info("service.drained")

    # -- submission ------------------------------------------------------------------
    async def submit(self, request: TextRequest) -> Submission:
        """Accept a text: validate, apply the Do Not Text and same-second rules, queue."""
        sender = e164(request.sender, field="from")
        recipient = e164(request.recipient, field="to")
        segments = check_body(request.body).segments
        key = request.idempotency_key
        if key is not None and not (0 < len(key) <= 255):
            raise InvalidInput("idempotency_key: must be 1 to 255 characters", field="key")
        if self._closing:
            raise Conflict("the service is shutting down; submit again once it is back")
        print_ = fingerprint(sender, recipient, request.body, request.lane.name)
        async with self._locks_for(self._submit_locks, recipient, key):
            if key is not None and (earlier := await self.store.by_idempotency_key(key)):
                if earlier.fingerprint != print_:
                    raise Conflict(
                        f"idempotency key {key!r} was already used for message {earlier.id} "
                        "with different content"
                    )
                return Submission(message=earlier, created=False)
            now = self.clock.now().wall
            validity = request.validity or self.config.pacing.validity
            message = Message(
                id=_new_id("msg"),
                sender=sender,
                recipient=recipient,
                body=request.body,
                segments=segments,
                lane=request.lane,
                status=TextStatus.PENDING,
                accepted_at=now,
                expires_at=now + validity,
                updated_at=now,
                idempotency_key=key,
                fingerprint=print_,
            )
            message, events = await self._admit(message, now)
            stored = await self.store.insert_message(message, events)
        if stored.status is TextStatus.QUEUED:
            self._pacer.wake(sender)
            if self._next_expiry is None or stored.expires_at < self._next_expiry:
                self._next_expiry = stored.expires_at
                self._expiry_wake.set()
        log.info(
            "dispatch.accepted",
            extra={"message_id": stored.id, "sender": sender, "status": stored.status.value},
        )
        return Submission(message=stored, created=True)

    async def _admit(self, message: Message, now: datetime) -> tuple[Message, list[Event]]:
        """The first steps of a new message: Pending, then Queued, Failed or Unsent."""
        pending = Event(
            message_id=message.id, at=now, status=TextStatus.PENDING,
            reason=Reason.ACCEPTED, source=Source.API,
        )  # fmt: skip
        dnt = await self.store.dnt_get(message.recipient)
        if dnt is not None:
            step, after = transition(
                message, TextStatus.FAILED, at=now, source=Source.API, reason=Reason.DO_NOT_TEXT,
                detail=f"on the Do Not Text list since {dnt.added_at.isoformat()}",
            )  # fmt: skip
            return after, [pending, step.event]
        last = await self.store.last_accepted_to(message.recipient)
        window = self.config.pacing.duplicate_window
        if last is not None and is_same_second_duplicate(last.accepted_at, now, window):
            step, after = transition(
                message, TextStatus.UNSENT, at=now, source=Source.API,
                reason=Reason.RATE_LIMITED, detail=f"duplicate of {last.id}",
            )  # fmt: skip
            log.info("dispatch.rate_limited", extra={"message_id": message.id, "of": last.id})
            return replace(after, duplicate_of=last.id), [pending, step.event]
        step, after = transition(message, TextStatus.QUEUED, at=now, source=Source.API)
        return after, [pending, step.event]

    # -- sending ---------------------------------------------------------------------
    async def _dispatch(self, sender: str, book: Book) -> None:
        """Send the head of ``sender``'s queue (its slot is due)."""
        async with self._lock_for(sender):
            if sender in self._paused or self._closing:
                return
            claimed = await self._claim(sender)
            if claimed is None:
                return
            # The send starts now: this one read books the slot and is the audit time.
            # Nothing between it and the provider call yields to the event loop.
            start = self.clock.now()
            hold = self._hold(claimed)
            book(start.mono + hold)
            self._in_flight[sender] += 1
            self._idle.clear()
        try:
            await self._send(claimed, start, hold)
        finally:
            self._in_flight[sender] -= 1
            if self._in_flight[sender] <= 0:
                del self._in_flight[sender]
            if not self._in_flight:
                self._idle.set()

    async def _claim(self, sender: str) -> Message | None:
        """Take the head of the queue into Sending, skipping expired and listed ones."""
        while (head := await self.store.head(sender)) is not None:
            now = self.clock.now().wall
            if is_expired(head, now):
                step, _ = transition(head, TextStatus.UNSENT, at=now, source=Source.SCHEDULER,
                                     reason=Reason.EXPIRED)  # fmt: skip
                await self.store.record([step])
                continue
            dnt = await self.store.dnt_get(head.recipient)
            if dnt is not None:
                step, _ = transition(
                    head, TextStatus.FAILED, at=now, source=Source.SCHEDULER,
                    reason=Reason.DO_NOT_TEXT, detail=f"listed by {dnt.added_by} before sending",
                )  # fmt: skip
                await self.store.record([step])
                continue
            # The intent to send is durable before the provider hears of it.
            step, sending = transition(
                head, TextStatus.SENDING, at=now, source=Source.SCHEDULER,
                attempt_id=_new_id("att"),
            )  # fmt: skip
            await self.store.record([step])
            return sending
        return None

    def _hold(self, message: Message) -> float:
        """Seconds a send of ``message`` holds its number: its segments' slots + guard."""
        rate = self.config.pacing.rate_of(message.sender)
        return slot_seconds(message.segments, rate) + self.config.pacing.guard.total_seconds()

    async def _send(self, message: Message, start: Instant, hold: float) -> None:
        """The provider call and what follows it. ``start`` was read just before."""
        request = _request(message, self.config.pacing.validity)
        slot = {message.sender: start.wall + timedelta(seconds=hold)}
        try:
            accepted = await self.channel.send(request)
        except ProviderError as exc:
            await self._refused(message, exc, slot)
            return
        except Exception:
            log.exception("dispatch.outcome_unknown", extra={"message_id": message.id})
            await self._reconcile(message)
            return
        step, _ = transition(
            message, TextStatus.SENT, at=self.clock.now().wall, source=Source.PROVIDER,
            provider_id=accepted.provider_id, send_started_at=start.wall,
        )  # fmt: skip
        await self.store.record([step], next_slots=slot)
        log.info(
            "dispatch.sent",
            extra={"message_id": message.id, "sender": message.sender, "at": start.wall},
        )
        for receipt in self._unpark(accepted.provider_id):
            self._receipts.put_nowait(receipt)

    async def _refused(
        self, message: Message, exc: ProviderError, slot: dict[str, datetime]
    ) -> None:
        now = self.clock.now().wall
        if exc.retryable:
            step, _ = transition(message, TextStatus.QUEUED, at=now, source=Source.PROVIDER,
                                 reason=Reason.RETRY, provider_code=exc.provider_code,
                                 detail=str(exc))  # fmt: skip
            await self.store.record([step], next_slots=slot)
            self._pacer.wake(message.sender)
            return
        step, _ = transition(
            message, TextStatus.FAILED, at=now, source=Source.PROVIDER,
            reason=exc.permanent_reason or Reason.PROVIDER_REJECTED,
            provider_code=exc.provider_code, detail=str(exc),
        )  # fmt: skip
        await self.store.record([step], next_slots=slot)
        log.info("dispatch.failed", extra={"message_id": message.id, "code": exc.provider_code})

    async def _reconcile(self, message: Message) -> None:
        """Settle a message left in Sending: ask the provider, never resend blindly."""
        request = _request(message, self.config.pacing.validity)
        found = await self.channel.lookup(request)
        now = self.clock.now().wall
        if found is not None:
            started = found.received_at or now
            step, _ = transition(
                message, TextStatus.SENT, at=now, source=Source.RECONCILE,
                provider_id=found.provider_id, send_started_at=started,
                detail=f"the provider has attempt {message.attempt_id}",
            )  # fmt: skip
            slot = started + timedelta(seconds=self._hold(message))
            await self.store.record([step], next_slots={message.sender: slot})
            if (receipt := await self.channel.poll(found.provider_id)) is not None:
                self._receipts.put_nowait(receipt)
        else:
            step, _ = transition(
                message, TextStatus.QUEUED, at=now, source=Source.RECONCILE,
                reason=Reason.NOT_RECEIVED,
                detail=f"the provider never received attempt {message.attempt_id}",
            )  # fmt: skip
            await self.store.record([step])
        log.info(
            "dispatch.reconciled",
            extra={"message_id": message.id, "received": found is not None},
        )

    async def _recover(self) -> None:
        """Before pacing starts: restore each number's slot, settle in-doubt sends."""
        now = self.clock.now()
        in_doubt = await self.store.in_status(TextStatus.SENDING, limit=1_000_000)
        for message in in_doubt:
            await self._reconcile(message)
        doubtful: dict[str, float] = {}
        for m in in_doubt:
            doubtful[m.sender] = max(doubtful.get(m.sender, 0.0), self._hold(m))
        for state in await self.store.numbers():
            if state.paused:
                self._paused.add(state.number)
            if state.next_slot_at is not None:
                ahead = (state.next_slot_at - now.wall).total_seconds()
                self._pacer.restore(state.number, now.mono + ahead)
            if state.number in doubtful:
                # A send may have left just before the crash: wait one full slot.
                self._pacer.restore(state.number, now.mono + doubtful[state.number])
            if state.depth:
                self._pacer.wake(state.number)
        for message in await self.store.in_status(TextStatus.SENT, limit=1_000_000):
            if message.provider_id and (receipt := await self.channel.poll(message.provider_id)):
                self._receipts.put_nowait(receipt)

    # -- receipts --------------------------------------------------------------------
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
        current: dict[str, Message] = {}
        steps: list[Transition] = []
        for receipt in receipts:
            message = current.get(receipt.provider_id) or await self.store.by_provider_id(
                receipt.provider_id
            )
            if message is None:
                self._park(receipt)
                continue
            step, current[receipt.provider_id] = transition(
                message, receipt.status, at=receipt.at, source=Source.RECEIPT,
                reason=receipt.reason, provider_code=receipt.provider_code,
            )  # fmt: skip
            steps.append(step)
        if steps:
            await self.store.record(steps)

    def _park(self, receipt: Receipt) -> None:
        """Hold a receipt that arrived before its send was recorded as Sent."""
        now = self.clock.now().mono
        if len(self._parked) >= _PARKED_MAX:
            oldest = min(self._parked, key=lambda k: self._parked[k][0])
            log.warning("receipt.dropped", extra={"provider_id": oldest})
            del self._parked[oldest]
        self._parked.setdefault(receipt.provider_id, (now, []))[1].append(receipt)

    def _unpark(self, provider_id: str) -> list[Receipt]:
        return self._parked.pop(provider_id, (0.0, []))[1]

    # -- expiry ----------------------------------------------------------------------
    async def _expiry_loop(self) -> None:
        while not self._closing:
            self._next_expiry = await self.store.next_expiry()
            if self._next_expiry is not None:
                now = self.clock.now()
                if self._next_expiry <= now.wall:
                    await self._expire(now.wall)
                    continue
                wait = (self._next_expiry - now.wall).total_seconds()
                timer = self.clock.call_at(now.mono + wait, self._expiry_wake.set)
            else:
                timer = None
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
                await self.store.record([step])
                log.info("dispatch.expired", extra={"message_id": message.id})

    # -- operator verbs --------------------------------------------------------------
    async def message(self, message_id: str) -> MessageView:
        message = await self._get(message_id)
        history = await self.store.history(message_id)
        queue = None
        if message.status is TextStatus.QUEUED:
            queue = QueueContext(
                ahead=await self.store.queued_ahead(message),
                next_slot_at=self._next_slot_at(message.sender, self.clock.now()),
                paused=message.sender in self._paused,
                rate=self.config.pacing.rate_of(message.sender),
            )
        dnt = await self.store.dnt_get(message.recipient)
        return MessageView(
            message=message, history=history, explanation=explain(message, queue=queue, dnt=dnt)
        )

    async def find(self, recipient: str, limit: int = 50) -> list[Message]:
        return await self.store.find(e164(recipient, field="to"), limit)

    async def status(self) -> StatusView:
        now = self.clock.now()
        numbers = [
            NumberView(
                number=state.number,
                depth=state.depth,
                next_slot_at=self._next_slot_at(state.number, now) or state.next_slot_at,
                in_flight=self._in_flight.get(state.number, 0),
                paused=state.paused,
                rate=self.config.pacing.rate_of(state.number),
            )
            for state in await self.store.numbers()
        ]
        return StatusView(
            counts=await self.store.counts(),
            numbers=numbers,
            in_flight=sum(self._in_flight.values()),
            at=now.wall,
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
            await self.store.record([step])
        log.info("dispatch.canceled", extra={"message_id": message_id})
        return after

    async def pause(self, number: str) -> NumberView:
        number = e164(number)
        async with self._lock_for(number):
            await self.store.set_paused(number, True)
            self._paused.add(number)
        return await self._number(number)

    async def resume(self, number: str) -> NumberView:
        number = e164(number)
        async with self._lock_for(number):
            await self.store.set_paused(number, False)
            self._paused.discard(number)
        self._pacer.wake(number)
        return await self._number(number)

    async def dnt_add(self, number: str, *, added_by: str, reason: str | None) -> DntEntry:
        entry = DntEntry(
            number=e164(number), added_at=self.clock.now().wall, added_by=added_by, reason=reason
        )
        stored = await self.store.dnt_add(entry)
        log.info("dnt.added", extra={"number": entry.number, "by": added_by})
        return stored

    async def dnt_remove(self, number: str) -> bool:
        return await self.store.dnt_remove(e164(number))

    async def dnt_check(self, number: str) -> DntEntry | None:
        return await self.store.dnt_get(e164(number))

    async def dnt_list(self, limit: int = 1000) -> list[DntEntry]:
        return await self.store.dnt_list(limit)

    # -- helpers ---------------------------------------------------------------------
    async def _get(self, message_id: str) -> Message:
        message = await self.store.get(message_id)
        if message is None:
            raise NotFound(f"no message with id {message_id!r}")
        return message

    async def _number(self, number: str) -> NumberView:
        view = await self.status()
        for item in view.numbers:
            if item.number == number:
                return item
        return NumberView(number=number, depth=0, next_slot_at=None, in_flight=0,
                          paused=number in self._paused,
                          rate=self.config.pacing.rate_of(number))  # fmt: skip

    def _next_slot_at(self, number: str, now: Instant) -> datetime | None:
        slot = self._pacer.next_slot(number)
        if slot is None:
            return None
        return now.wall + timedelta(seconds=slot - now.mono)

    def _lock_for(self, sender: str) -> asyncio.Lock:
        return self._sender_locks[hash(sender) % _STRIPES]

    @contextlib.asynccontextmanager
    async def _locks_for(self, locks: list[asyncio.Lock], *keys: str | None) -> AsyncIterator[None]:
        indexes = sorted({hash(k) % _STRIPES for k in keys if k is not None})
        async with contextlib.AsyncExitStack() as stack:
            for i in indexes:
                await stack.enter_async_context(locks[i])
            yield


def _request(message: Message, validity: timedelta) -> SendRequest:
    return SendRequest(
        message_id=message.id,
        attempt_id=message.attempt_id or "",
        sender=message.sender,
        recipient=message.recipient,
        body=message.body,
        segments=message.segments,
        validity=min(validity, message.expires_at - message.accepted_at),
    )


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"
