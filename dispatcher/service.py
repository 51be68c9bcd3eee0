"""The one service API. The CLI, the control socket, the HTTP app, the demo and the
report are thin fronts: they call the public verbs of :class:`Dispatcher` and never
touch its store, channel, desks or delivery engine (``tests/test_fronts.py`` checks).

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
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

from dispatcher import private, runtime
from dispatcher.channels import (
    CallReport,
    Channel,
    Receipt,
    open_channel,
)
from dispatcher.clock import Clock, Instant, SystemClock
from dispatcher.config import Config
from dispatcher.core import metrics, report
from dispatcher.core.calls import Call, CallStatus
from dispatcher.core.campaigns import Campaign, Contact, ContactState
from dispatcher.core.metrics import NO_KEY, By, EngagementRow, Metrics, MetricsQuery, compute
from dispatcher.core.model import (
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
    count_segments,
    explain,
    keyword,
    transition,
)
from dispatcher.core.numbers import e164
from dispatcher.core.results import Observed, Run
from dispatcher.engine.automations import Engine, NewAutomation, Rule, load_rules
from dispatcher.engine.bus import Bus
from dispatcher.engine.calls import (
    CallDesk,
    CallRequest,
    CallsSummary,
    CallSubmission,
    CallView,
    call_status_url,
)
from dispatcher.engine.campaigns import CampaignDesk, CampaignSpec, CampaignView
from dispatcher.engine.health import StoreFault, StoreHealth
from dispatcher.engine.intake import Intake, Submission, TextRequest, new_id
from dispatcher.engine.texts import RECENT, TextDesk, sent_since
from dispatcher.engine.wiring import Wiring
from dispatcher.errors import Conflict, NotFound, StoreUnavailable
from dispatcher.lifecycle import Resource
from dispatcher.store import Store, open_store

log = logging.getLogger(__name__)
_T = TypeVar("_T")

_STRIPES = 256
_RECEIPT_BATCH = 500
_EXPIRY_BATCH = 500
_AWAITING_MAX = 200_000
_ERRORS = frozenset({TextStatus.FAILED, TextStatus.UNDELIVERED, TextStatus.UNREACHABLE})

__all__ = [  # the service's vocabulary: what its verbs take and answer
    "CallRequest",
    "CallSubmission",
    "CallView",
    "CallsSummary",
    "CampaignSpec",
    "CampaignView",
    "Dispatcher",
    "MessageView",
    "NewAutomation",
    "NumberView",
    "Rule",
    "StatusView",
    "StoreFault",
    "Submission",
    "TextRequest",
    "call_status_url",
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
        self.bus = Bus()  # results and outcomes, for the automations and campaigns
        self._held = False
        self._closing = False
        wiring = Wiring(
            config=config, store=store, channel=channel, clock=self.clock, bus=self.bus,
            store_fault=self._store_fault,
        )  # fmt: skip
        self.texts = TextDesk(
            wiring, may_send=self._sending, opt_out=self._opted_out,
            store_faulted=lambda: self._health.fault is not None,
        )  # fmt: skip
        self._queues = self.texts.queues
        self._pacer = self.texts.pacer
        self._intake = Intake(
            store, self.clock, config.pacing, self._queues.pending, on_stored=self.texts.accepted
        )
        self._inbound_lock = asyncio.Lock()
        self._pacer_task: asyncio.Task[None] | None = None
        self._collector: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self._stack = contextlib.AsyncExitStack()
        self._group: asyncio.TaskGroup | None = None
        self.started = asyncio.Event()
        self.calls = CallDesk(wiring, submit_text=self.submit)
        self._call_pacer: asyncio.Task[None] | None = None
        self.campaigns = CampaignDesk(
            config, store=store, clock=self.clock, bus=self.bus, service=self
        )
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
        self.channel.on_receipt(self.texts.receipts.report)
        await self._recover()
        await self.calls.recover()
        await self.automations.load()
        # The task group is exited by hand, without the body's exception, so an error
        # in the caller's block reaches it as itself, not wrapped in an ExceptionGroup.
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._pacer_task = self._group.create_task(self._pacer.run(), name="pacer")
        self._group.create_task(self._keep(self.texts.receipts.run), name="receipts")
        self._group.create_task(self._keep(self.texts.expiry_loop), name="expiry")
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
        self.texts.stop()
        self.calls.stop()
        timeout = self.config.service.drain_timeout.total_seconds()
        try:
            await asyncio.wait_for(
                asyncio.gather(self.texts.engine.idle.wait(), self.calls.idle.wait()), timeout
            )
        except TimeoutError:
            # Sends still in flight stay in Sending and are reconciled at the next start.
            in_flight = sum(self.texts.engine.in_flight.values())
            log.warning("service.drain_timeout", extra={"in_flight": in_flight})
            for task in (self._pacer_task, self._call_pacer):
                if task is not None:
                    task.cancel()
        self.texts.receipts.stop()
        self.calls.stop_reports()
        self.automations.stop()
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
        await self.texts.engine.idle.wait()
        async with contextlib.AsyncExitStack() as locked:
            for lock in self.texts.engine.locks:
                await locked.enter_async_context(lock)
            await self.texts.restore()
            self.texts.receipts.settled()

    def _resume(self) -> None:
        """Start sending again (after an operator's hold or a store fault), unless
        the other still holds."""
        if self._held or self._health.fault is not None:
            return
        self.calls.release()
        self.texts.wake_all()

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

    async def _recover(self) -> None:
        """Before pacing starts: settle in-doubt sends, restore the queues, and ask for
        the receipts of texts Sent before the stop."""
        await self.texts.restore()
        await self._intake.load()
        for message in await self.store.in_status(TextStatus.SENT, limit=1_000_000):
            if message.provider_id is None:
                continue
            self.texts.receipts.awaiting(message)
            if receipt := await self.channel.poll(message.provider_id):
                self.texts.receipts.report(receipt)

    def _sending(self) -> bool:
        """May sends start now (no operator's hold, no store fault, not closing)?"""
        return not (self._held or self._closing or self._health.fault)

    async def _opted_out(self, contact: str, reason: str) -> None:
        await self.dnt_add(contact, added_by="carrier", reason=reason)

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
        self.texts.receipts.report(receipt)

    # -- operator verbs --------------------------------------------------------------
    async def message(self, message_id: str) -> MessageView:
        """One text: as stored now, its history, and in plain words why it is there."""
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
        """The texts to ``recipient``, newest first."""
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
        since = now.mono - RECENT
        texts = self.texts
        return StatusView(
            counts=dict(self._queues.counts),
            numbers=[self._number_view(name, now) for name in wanted],
            numbers_total=len(self._queues),
            in_flight=sum(texts.engine.in_flight.values()),
            at=now.wall,
            calls=self.calls.summary(),
            sent_last_minute=sum(sent_since(s, since) for s in texts.sends.values()),
            recent_errors=list(reversed(texts.errors)),
            store_fault=self._health.fault,
        )

    async def cancel(self, message_id: str) -> Message:
        """Cancel a Pending or Queued text: it ends Unsent (``canceled``)."""
        message = await self._get(message_id)
        async with self.texts.engine.lock(message.sender):
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
            await self.texts.record([step])
            self.texts.outcome(after)
        log.info("dispatch.canceled", extra={"message_id": message_id})
        return after

    async def pause(self, number: str) -> NumberView:
        """Stop sending from ``number`` (persisted; its queue is kept)."""
        return await self._set_paused(e164(number), paused=True)

    async def resume(self, number: str) -> NumberView:
        """Resume sending from a paused ``number`` at its next slot."""
        view = await self._set_paused(e164(number), paused=False)
        self._pacer.wake(view.number)
        return view

    async def _set_paused(self, number: str, *, paused: bool) -> NumberView:
        async with self.texts.engine.lock(number):
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
        """Put ``number`` on the Do Not Text list (at once, even for a text claimed)."""
        entry = DntEntry(
            number=e164(number), added_at=self.clock.now().wall, added_by=added_by, reason=reason
        )
        self.texts.dnt_changes[entry.number] = True  # before the write: a send about to go sees it
        stored = await self.store.dnt_add(entry)
        log.info("dnt.added", extra={"number": entry.number, "by": added_by})
        return stored

    async def dnt_remove(self, number: str) -> bool:
        """Take ``number`` off the Do Not Text list; whether it was on it."""
        number = e164(number)
        removed = await self.store.dnt_remove(number)
        self.texts.dnt_changes[number] = False
        log.info("dnt.removed", extra={"number": number, "removed": removed})
        return removed

    async def dnt_check(self, number: str) -> DntEntry | None:
        """The list's entry for ``number``, if it is listed."""
        return await self.store.dnt_get(e164(number))

    async def dnt_list(self, limit: int = 1000) -> list[DntEntry]:
        """The Do Not Text list."""
        return await self.store.dnt_list(limit)

    # -- campaigns -------------------------------------------------------------------
    async def create_campaign(self, spec: CampaignSpec) -> Campaign:
        """Create a campaign and start importing its contacts (see
        :mod:`dispatcher.campaign_desk`); :meth:`campaign` follows the import."""
        return await self.campaigns.create(spec)

    async def campaign(self, campaign_id: str) -> CampaignView:
        """One campaign: its import, its contacts by state and its projection."""
        return await self.campaigns.view(campaign_id)

    async def campaign_list(self, limit: int = 100) -> list[CampaignView]:
        """Every campaign, newest first, with its progress."""
        return await self.campaigns.list(limit)

    async def campaign_contacts(
        self, campaign_id: str, states: Collection[ContactState], limit: int = 1000
    ) -> list[Contact]:
        """The campaign's contacts in any of ``states``, in file order."""
        await self.campaigns.get(campaign_id)  # NotFound for an unknown campaign
        return await self.store.contacts_in(campaign_id, states, limit)

    async def pause_campaign(self, campaign_id: str) -> CampaignView:
        """Pause a running campaign: its queued texts come back, none is sent."""
        return await self.campaigns.pause(campaign_id)

    async def resume_campaign(self, campaign_id: str) -> CampaignView:
        """Resume a paused campaign, or launch a draft."""
        return await self.campaigns.resume(campaign_id)

    async def cancel_campaign(self, campaign_id: str) -> CampaignView:
        """Cancel a campaign: no contact not yet sent is sent."""
        return await self.campaigns.cancel(campaign_id)

    # -- automations and voice links -------------------------------------------------
    def automation_rules(self) -> list[tuple[Rule, Literal["file", "api"]]]:
        """The rules in force, each with where it came from: the automations file or
        the API."""
        engine = self.automations
        return [(rule, "file" if rule.name in engine.from_file else "api") for rule in engine.rules]

    async def automation_runs(
        self, limit: int = 50, *, due_by: datetime | None = None
    ) -> list[Run]:
        """The automations' runs, newest first; with ``due_by``, only those still due
        at that time, earliest first."""
        if due_by is not None:
            return await self.store.due_runs(due_by, limit)
        return await self.store.list_runs(limit)

    async def add_automation(self, raw: object) -> Rule:
        """Add a rule given as JSON (the shape of
        :class:`~dispatcher.automations.NewAutomation`); it is kept in the store."""
        return await self.automations.add(raw)

    async def remove_automation(self, name: str) -> None:
        """Remove a rule added through the API (a rule of the file stays)."""
        await self.automations.remove(name)

    async def voice_link(self, token: str) -> tuple[str, str] | None:
        """A voice link's text (its message id) and what it plays, if the token is known."""
        return await self.store.voice_link(token)

    async def record_play(self, token: str) -> None:
        """A voice link was played now: a text Play (an unknown token counts nowhere)."""
        await self.store.record_play(token, self.clock.now().wall)

    # -- engagement metrics ----------------------------------------------------------
    async def metrics(self, query: MetricsQuery | None = None) -> Metrics:
        """The result counts by channel (see :mod:`dispatcher.metrics`), counted in a
        worker thread: a large history must not hold up the sends."""
        rows = await self.store.engagement(query or MetricsQuery())
        return await asyncio.to_thread(compute, rows)

    async def metrics_report(self, query: MetricsQuery, by: By | None = None) -> dict[str, Any]:
        """The answer of the ``metrics`` command (see :func:`dispatcher.metrics.report`):
        the totals, and with ``by`` one breakdown per key; counted in a worker thread."""
        rows = await self.store.engagement(query)
        return await asyncio.to_thread(_metrics_report_of, rows, by)

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
        """Cancel a call that is still queued: it ends Canceled."""
        return await self.calls.cancel(call_id)

    async def find_calls(self, recipient: str, limit: int = 50) -> list[Call]:
        """The calls to ``recipient``, newest first."""
        return await self.calls.find(recipient, limit)

    async def calls_in(self, statuses: Collection[CallStatus], limit: int = 1000) -> list[Call]:
        """Calls in any of ``statuses``, in the order they were accepted."""
        return await self.store.calls_in_status(statuses, limit)

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
            in_flight=self.texts.engine.in_flight.get(number, 0),
            paused=queue.paused if queue else False,
            rate=self.config.pacing.rate_of(number),
            sent_last_minute=sent_since(self.texts.sends.get(number), now.mono - RECENT),
        )

    def _next_slot_at(self, number: str, now: Instant) -> datetime | None:
        slot = self._pacer.next_slot(number)
        if slot is None:
            return None
        return now.wall + timedelta(seconds=slot - now.mono)


def _metrics_report_of(rows: list[EngagementRow], by: By | None) -> dict[str, Any]:
    """Counted in a worker thread, where the rows are freed too: a million events must
    not hold up the event loop (and the sends it paces)."""
    try:
        return metrics.report(rows, by)
    finally:
        rows.clear()


def _report_data_of(
    rows: list[EngagementRow], query: MetricsQuery, bucket: str | None, now: datetime
) -> dict[str, Any]:
    """Counted in a worker thread, like the metrics, where the rows are freed too."""
    try:
        return report.build(rows, query=query, bucket=bucket, now=now)
    finally:
        rows.clear()
