"""Voice calls in the service: accepted, paced per account, placed, followed.

Calls go through the same delivery engine as texts (:class:`~dispatcher.engine.delivery.Delivery`)
with one pacing key per provider account, at ``voice.calls_per_second``. The intent to
call (Placing, with an attempt id) is durable before the provider hears of it; a
call left Placing by a crash is looked up at the provider, never dialled again
blindly.

While a call is up, the carrier asks what to play: the desk's voice handler
(:mod:`dispatcher.engine.call_voice`) answers each request with the provider-neutral
instructions of the script's next step and records the step as a result event (Say,
Gather, Prompt, ...). Status reports (Ringing, Answered, the end) arrive from the
provider and merge without moving a call backwards
(:mod:`dispatcher.engine.call_reports`); the provider's "completed" becomes Completed
when the script reached its end and Hangup when the contact hung up before. A call
that ended without ever being answered (its history has no Answered, and the carrier
does not say it was) is No answer, never Hangup: so is a call a crash cut while it
rang, when the carrier is asked about it at the next start. The queue's order is kept
in memory by :mod:`dispatcher.engine.call_queue`.

What the desk takes and answers (:class:`CallRequest`, :class:`CallView`, ...) is
defined in :mod:`dispatcher.engine.call_types` and importable from here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from dispatcher.channels import (
    Accepted,
    CallReport,
    HandOff,
    MachineDetection,
    PlaceCall,
    VoiceTurn,
)
from dispatcher.clock import Instant
from dispatcher.core.calls import (
    ACTIVE,
    CALL_TERMINAL,
    Call,
    CallEvent,
    CallReason,
    CallStatus,
    call_status,
    explain_call,
)
from dispatcher.core.channel import Channel as ConsentChannel
from dispatcher.core.consent import Entry as ConsentEntry
from dispatcher.core.model import Lane, Source, fingerprint
from dispatcher.core.numbers import e164
from dispatcher.core.results import Observed, call_result
from dispatcher.core.scripts import END, Instruction, Script, from_json, parse_script
from dispatcher.engine.call_queue import CallQueue
from dispatcher.engine.call_reports import CallReports
from dispatcher.engine.call_types import (
    CallRequest,
    CallsSummary,
    CallSubmission,
    CallView,
    call_status_url,
    voice_url,
)
from dispatcher.engine.call_voice import CallVoice, SubmitText
from dispatcher.engine.delivery import Delivery
from dispatcher.engine.events import Outcome
from dispatcher.engine.intake import new_id
from dispatcher.engine.retries import GiveUp, Retries, Retry
from dispatcher.engine.single_key import OneKey, Shelf, Terms
from dispatcher.engine.wiring import Wiring
from dispatcher.errors import Conflict, InvalidInput, ProviderError

log = logging.getLogger(__name__)

_TERMS = Terms(
    noun="call", provider="provider", queued=CallStatus.QUEUED, claimed=CallStatus.PLACING,
    failed=CallStatus.FAILED, retry=CallReason.RETRY, not_received=CallReason.NOT_RECEIVED,
    rejected=CallReason.PROVIDER_REJECTED, opted_out=CallReason.DO_NOT_CALL,
)  # fmt: skip


class CallDesk:
    """The calls half of the service. Owned and run by the Dispatcher."""

    def __init__(self, wiring: Wiring, *, submit_text: SubmitText) -> None:
        config = self._config = wiring.config
        self._store = wiring.store
        self._channel = wiring.channel
        clock = self._clock = wiring.clock
        self._base = config.http.base_url
        self._may_send = wiring.may_send
        self._consent = wiring.consent  # the Do Not Call view of the consent ledger
        self.engine: Delivery[Call] = Delivery(
            self, clock, retries=Retries(config.provider),
            max_in_flight=config.voice.max_in_flight,
            lead=config.pacing.lead.total_seconds(), store_fault=wiring.store_fault,
        )  # fmt: skip
        self.pacer = self.engine.pacer
        self._queue = CallQueue()
        self.idle = self.engine.idle  # no call in flight
        self.closing = False
        self._bus = wiring.bus  # the call's results, for the automations
        store = self._store
        shelf = Shelf(
            get=store.get_call, insert=store.insert_call, by_key=store.call_by_idempotency_key,
            write=store.update_call,
            slots=store.call_slots, in_status=store.calls_in_status, counts=store.call_counts,
        )  # fmt: skip
        paced: OneKey[Call, CallStatus, CallEvent] = OneKey(
            pacer=self.pacer, key=lambda: self.account, clock=clock, queue=self._queue,
            change=call_status, attempt=lambda call, attempt: replace(call, attempt_id=attempt),
            shelf=shelf, terms=_TERMS, enqueue=self._enqueue, saved=self._saved,
        )  # fmt: skip
        self._paced = paced
        self._lock, self._set, self._save = paced.lock, paced.set, paced.save
        self._opted_out, self.get = paced.opted_out, paced.get
        self.next_slot_at, self.wake = paced.next_slot_at, paced.wake
        self.counts = paced.counts
        self.transitions = paced.transitions  # status changes applied by this process
        self._reports = CallReports(store=self._store, lock=self._lock, save=self._save)
        self._voice = CallVoice(
            store=self._store, clock=clock, base_url=self._base, lock=self._lock,
            save=self._save, submit_text=submit_text, submit_call=self.submit,
        )  # fmt: skip

    @property
    def account(self) -> str:
        return self._channel.account

    def _hold(self) -> float:
        return 1.0 / self._config.voice.calls_per_second + self._config.pacing.guard.total_seconds()

    # -- lifecycle -------------------------------------------------------------------
    async def recover(self) -> None:
        """Before pacing starts: settle calls a previous run left Placing, ask about
        calls that were up, restore the queue, the account's next slot and the counts."""
        self._channel.on_call_report(self.report)
        self._channel.on_voice(self.voice)
        await self._paced.recover_claimed(self._reconcile_left, self._hold())
        for call in await self._store.calls_in_status(ACTIVE, 100_000):
            if call.provider_id and (report := await self._channel.poll_call(call.provider_id)):
                self._reports.report(report)
        await self._paced.recover_queued()

    async def _reconcile_left(self, call: Call) -> None:
        await self.engine.reconcile(call, running=False)

    async def run_reports(self) -> None:
        await self._reports.run()

    def stop(self) -> None:
        self.closing = True
        self.pacer.stop()

    def stop_reports(self) -> None:
        self._reports.stop()

    # -- submission ------------------------------------------------------------------
    def script_of(self, request: CallRequest) -> tuple[Script, str | None]:
        """The validated script of a request: its own steps, or a named script."""
        known = self._config.scripts
        if (request.script is None) == (request.script_name is None):
            raise InvalidInput("give a call either a script (a list of steps) or the name "
                               "of a configured script", field="script")  # fmt: skip
        if request.script_name is not None:
            script = known.get(request.script_name)
            if script is None:
                names = ", ".join(sorted(known)) or "none are configured"
                raise InvalidInput(f"no script is named {request.script_name!r} "
                                   f"(known: {names})", field="script")  # fmt: skip
            return script, request.script_name
        return parse_script(request.script, known=known), None

    async def submit(self, request: CallRequest) -> CallSubmission:
        """Accept a call: validate it and its script, then queue it on its account."""
        if self.closing:
            raise Conflict("the service is shutting down; submit again once it is back")
        sender = e164(request.sender, field="from")
        recipient = e164(request.recipient, field="to")
        script, name = self.script_of(request)
        print_ = fingerprint(sender, recipient, script.to_json(), request.lane.name)
        now = self._clock.now().wall
        call = Call(
            id=new_id("call"), account=self.account, sender=sender, recipient=recipient,
            script=script.to_json(), script_name=name, lane=request.lane,
            status=CallStatus.QUEUED, accepted_at=now, updated_at=now,
            reason=CallReason.ACCEPTED, idempotency_key=request.idempotency_key, fingerprint=print_,
            trigger=request.trigger, campaign_id=request.campaign_id,
            expires_at=now + request.validity if request.validity is not None else None,
        )  # fmt: skip
        stored, created = await self._paced.accept(call, self._insert)
        return CallSubmission(item=stored, created=created)

    async def _insert(self, call: Call) -> Call:
        first = CallEvent(call_id=call.id, at=call.accepted_at, status=CallStatus.QUEUED,
                          reason=CallReason.ACCEPTED, source=Source.API)  # fmt: skip
        # On the Do Not Call list, it ends at once, with the reason.
        stored, queued = await self._paced.insert(call, first, await self._do_not_call(call))
        if queued:
            log.info("call.queued", extra={"call_id": stored.id, "to": stored.recipient})
        return stored

    def _enqueue(self, call: Call) -> None:
        self._queue.push(call)
        self.pacer.wake(call.account)

    # -- the calls kind, for the engine ----------------------------------------------
    name = "call"

    def item_id(self, item: Call) -> str:
        return item.id

    @property
    def in_flight(self) -> int:
        return sum(self.engine.in_flight.values())

    def may_send(self, key: str) -> bool:
        return self._may_send() and not self.closing and key == self.account

    def hold(self, item: Call) -> float:
        return self._hold()

    async def claim(self, due: Sequence[tuple[str, datetime]]) -> dict[str, Call]:
        """The next queued call of each key (the voice account), Placing."""
        claimed: dict[str, Call] = {}
        for key, slot_at in due:
            if (call := await self._claim_one(slot_at)) is not None:
                claimed[key] = call
        return claimed

    async def _claim_one(self, slot_at: datetime) -> Call | None:
        """The next queued call, Placing (the durable intent to call); calls cancelled
        meanwhile are passed over, and one whose validity ends before ``slot_at`` is
        Canceled (expired)."""
        while (call := self._queue.pop()) is not None:
            async with self._lock(call.id):
                try:
                    fresh = await self._store.get_call(call.id)
                    if fresh is None or fresh.status is not CallStatus.QUEUED:  # cancelled
                        continue
                    if fresh.expires_at is not None and slot_at >= fresh.expires_at:
                        await self._set(fresh, CallStatus.CANCELED, source=Source.SCHEDULER,
                                        reason=CallReason.EXPIRED,
                                        detail="its validity ended before its slot")  # fmt: skip
                        continue
                    if (optout := await self._do_not_call(fresh)) is not None:
                        await self._opted_out(fresh, optout, source=Source.SCHEDULER)
                        continue
                    return await self._set(fresh, CallStatus.PLACING, source=Source.SCHEDULER,
                                           attempt_id=new_id("att"))  # fmt: skip
                except BaseException:
                    self._enqueue(call)  # not claimed: it keeps its place in the queue
                    raise
        return None

    async def ready(self, item: Call) -> bool:
        if item.recipient not in self._consent.changed:  # no I/O unless it changed here
            return True
        optout = await self._do_not_call(item)
        if optout is None:
            return True
        async with self._lock(item.id):
            await self._opted_out(item, optout, source=Source.SCHEDULER)
        return False

    async def _do_not_call(self, call: Call) -> ConsentEntry | None:
        """The opt-out that refuses ``call``, if its contact opted out of calls."""
        return await self._consent.check(call.recipient, channel=ConsentChannel.VOICE,
                                         sender=call.sender, campaign=call.campaign_id)  # fmt: skip

    def started(self, key: str, at: Instant) -> None:
        """Nothing to count: the calls summary reads the engine."""

    async def send(self, item: Call, hand_off: HandOff) -> Accepted:
        return await self._channel.place_call(self._place_request(item, hand_off))

    async def taken(self, item: Call, accepted: Accepted, *, started: Instant, hold: float) -> None:
        slot = (self.account, started.wall + timedelta(seconds=hold))
        await self._taken(item, accepted, placed_at=started.wall, slot=slot)

    async def retry(
        self, item: Call, exc: ProviderError, decision: Retry, slot_at: datetime
    ) -> None:
        await self._paced.retry(item, exc, decision)

    async def fail(
        self, item: Call, exc: ProviderError, decision: GiveUp, slot_at: datetime
    ) -> None:
        await self._paced.fail(item, exc, decision)

    async def lookup(self, item: Call) -> Accepted | None:
        return await self._channel.lookup_call(self._place_request(item))

    async def received(self, item: Call, found: Accepted) -> None:
        await self._taken(item, found, placed_at=found.received_at, source=Source.RECONCILE)

    async def not_received(self, item: Call, *, running: bool) -> None:
        await self._paced.not_received(item)

    def _place_request(self, call: Call, hand_off: HandOff | None = None) -> PlaceCall:
        script = from_json(call.script)
        amd = MachineDetection.OFF
        if script.detects_machine:
            amd = MachineDetection.MESSAGE_END
        elif self._config.voice.detect_machine:
            amd = MachineDetection.ANSWER
        return PlaceCall(
            call_id=call.id, attempt_id=call.attempt_id or "", sender=call.sender,
            recipient=call.recipient, voice_url=voice_url(self._base, call.id),
            status_callback_url=call_status_url(self._base, call.id), machine_detection=amd,
            ring_timeout=int(self._config.voice.ring_timeout.total_seconds()),
            claimed_at=call.updated_at, handed_off=hand_off,
        )  # fmt: skip

    async def _taken(
        self,
        call: Call,
        accepted: Accepted,
        *,
        placed_at: datetime | None,
        slot: tuple[str, datetime] | None = None,
        source: Source = Source.PROVIDER,
    ) -> None:
        async with self._lock(call.id):
            fresh = await self._store.get_call(call.id) or call
            event, after = call_status(fresh, CallStatus.INITIATED,
                                       at=self._clock.now().wall, source=source)  # fmt: skip
            after = replace(after, provider_id=accepted.provider_id,
                            placed_at=placed_at or after.placed_at)  # fmt: skip
            await self._save(fresh, after, [event], slot)
        self._reports.taken(accepted.provider_id)

    # -- reports ---------------------------------------------------------------------
    def report(self, report: CallReport) -> None:
        """A status report from the provider; applied in order, never moving back."""
        self._reports.report(report)

    # -- the carrier asks what to play -----------------------------------------------
    async def voice(self, call_id: str, at: str, turn: VoiceTurn) -> list[Instruction]:
        """The instructions for position ``at`` of the call's script, recording what it
        ran."""
        return await self._voice.respond(call_id, at, turn)

    # -- operator verbs --------------------------------------------------------------
    async def view(self, call_id: str) -> CallView:
        call = await self.get(call_id)
        history = await self._store.call_history(call_id)
        ahead = None
        if call.status is CallStatus.QUEUED:
            ahead = self._queue.ahead_of(call)
        return CallView(
            item=call,
            history=history,
            explanation=explain_call(call, ahead=ahead, next_slot_at=self.next_slot_at()),
        )

    async def find(self, recipient: str, limit: int) -> list[Call]:
        return await self._store.find_calls(e164(recipient, field="to"), limit)

    async def cancel(self, call_id: str) -> Call:
        await self.get(call_id)
        async with self._lock(call_id):
            call = await self.get(call_id)
            if call.status is CallStatus.CANCELED:
                return call
            if call.status is not CallStatus.QUEUED:
                raise Conflict(f"call {call_id} is {call.status.value}; only Queued calls "
                               "can be cancelled")  # fmt: skip
            self._queue.discard(call_id)
            after = await self._set(call, CallStatus.CANCELED, source=Source.OPERATOR,
                                    reason=CallReason.CANCELED)  # fmt: skip
        log.info("call.canceled", extra={"call_id": call_id})
        return after

    def summary(self) -> CallsSummary:
        return CallsSummary(
            counts=dict(self.counts), queued=len(self._queue), in_flight=self.in_flight,
            next_slot_at=self.next_slot_at(), key=self.account,
            rate=self._config.voice.calls_per_second,
        )  # fmt: skip

    def queued_by_lane(self) -> dict[Lane, int]:
        return self._queue.lanes()

    # -- helpers ---------------------------------------------------------------------
    def _saved(self, before: Call, after: Call, events: list[CallEvent]) -> None:
        """A change written: an ended call is logged, a campaign's call tells the
        campaign desk, and the automations see what the call reached."""
        if after.status is not before.status:
            if after.status in CALL_TERMINAL:
                log.info("call.ended", extra={"call_id": after.id, "status": after.status.value})
            if after.campaign_id is not None:
                self._bus.publish(Outcome(
                    campaign_id=after.campaign_id, item_id=after.id, status=after.status,
                    reason=after.reason, expires_at=after.expires_at,
                ))  # fmt: skip
        self._results(after, events)

    def _results(self, after: Call, events: list[CallEvent]) -> None:
        """Show the automations what the call just reached: a status, or a result."""
        reached = [
            (name, e.detail if e.result is not None else None)
            for e in events
            if e.applied and (name := call_result(e.status, e.result)) is not None
        ]
        now = self._clock.now().wall
        for result, detail in reached:
            self._bus.publish(Observed(
                result=result, source_id=after.id, contact=after.recipient, sender=after.sender,
                campaign_id=after.campaign_id, detail=detail, at=now,
            ))  # fmt: skip


__all__ = [
    "END",
    "CallDesk",
    "CallRequest",
    "CallSubmission",
    "CallView",
    "CallsSummary",
    "call_status_url",
    "voice_url",
]
