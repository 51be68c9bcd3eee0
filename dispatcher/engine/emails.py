"""Email in the service: accepted, paced per relay, handed to the relay, followed.

Email goes through the same delivery engine as texts and calls
(:class:`~dispatcher.engine.delivery.Delivery`) with one pacing key per relay, at
``[email] per_second``. The intent to send (Sending, with an attempt id) is durable
before the relay hears of it.

An attempt whose outcome is unknown (the connection dropped once the whole message
may have been handed over) goes to the engine's reconciliation, which asks the
mailer whether the relay took it: the simulator knows, and its answer settles the
email (Sent, or Queued again). An SMTP relay cannot be asked: the email is then
recorded Unconfirmed, with the reason, and left for the operator; it is never sent
again by itself. An email a crash left Sending goes the same way at the next start.

What the desk takes and answers (:class:`EmailRequest`, :class:`EmailView`, ...) is
defined in :mod:`dispatcher.engine.email_types` and importable from here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from dispatcher.channels import Accepted, HandOff, Mailer, OutgoingEmail
from dispatcher.clock import Instant
from dispatcher.core.channel import Channel as ConsentChannel
from dispatcher.core.consent import Entry as ConsentEntry
from dispatcher.core.email_templates import Rendered, render_email
from dispatcher.core.email_tracking import engagement
from dispatcher.core.emails import (
    EMAIL_TERMINAL,
    Email,
    EmailEvent,
    EmailReason,
    EmailStatus,
    check_email,
    email_status,
    explain_email,
    message_id,
    return_path,
)
from dispatcher.core.model import Lane, Source, fingerprint
from dispatcher.engine.delivery import Delivery
from dispatcher.engine.email_reports import EmailReports, relay_final
from dispatcher.engine.email_tracking import EmailTracking
from dispatcher.engine.email_types import (
    EmailQueue,
    EmailRequest,
    EmailsSummary,
    EmailSubmission,
    EmailView,
)
from dispatcher.engine.events import Outcome
from dispatcher.engine.intake import new_id
from dispatcher.engine.retries import GiveUp, Retries, Retry
from dispatcher.engine.single_key import OneKey, Shelf, Terms
from dispatcher.engine.wiring import Wiring
from dispatcher.errors import Conflict, LookupUnsupported, ProviderError

log = logging.getLogger(__name__)

_EPSILON = 1e-6  # seconds: a wait shorter than this is a rounding of the slot
MAX_AHEAD = 64
"""Emails of the relay claimed in one write at most (when its pace is fast enough that
more slots than this fall within the claim's lead). Each is Sending from then on: a
crash leaves them Unconfirmed, never sent twice."""

_TERMS = Terms(
    noun="email", provider="relay", queued=EmailStatus.QUEUED, claimed=EmailStatus.SENDING,
    failed=EmailStatus.FAILED, retry=EmailReason.RETRY, not_received=EmailReason.NOT_RECEIVED,
    rejected=EmailReason.RELAY_REJECTED, opted_out=EmailReason.SUPPRESSED,
)  # fmt: skip


class EmailDesk:
    """The email half of the service. Owned and run by the Dispatcher."""

    name = "email"  # the prefix of its log events

    def __init__(self, wiring: Wiring, mailer: Mailer) -> None:
        config = self._config = wiring.config
        self._store = wiring.store
        self._mailer = mailer
        self.tracking = EmailTracking(wiring)  # the tracking URLs and what they bring back
        clock = self._clock = wiring.clock
        self._may_send = wiring.may_send
        self._consent = wiring.consent  # email suppression: the ledger's email view
        self._bus = wiring.bus  # a campaign's emails tell the campaign desk what they became
        self.engine: Delivery[Email] = Delivery(
            self, clock, retries=Retries(config.provider),
            max_in_flight=config.pacing.max_in_flight,
            lead=config.pacing.lead.total_seconds(), store_fault=wiring.store_fault,
            claim_ahead=self.claim_ahead,
        )  # fmt: skip
        self.pacer = self.engine.pacer
        self._queue = EmailQueue()
        store = self._store
        shelf = Shelf(
            get=store.get_email, insert=store.insert_email, by_key=store.email_by_idempotency_key,
            write=store.update_email, slots=store.email_slots, in_status=store.emails_in_status,
            counts=store.email_counts,
        )  # fmt: skip
        paced: OneKey[Email, EmailStatus, EmailEvent] = OneKey(
            pacer=self.pacer, key=lambda: self.relay, clock=clock, queue=self._queue,
            change=email_status, attempt=lambda email, attempt: replace(email, attempt_id=attempt),
            shelf=shelf, terms=_TERMS, enqueue=self._enqueue, saved=self._saved,
        )  # fmt: skip
        self._paced = paced
        self._lock, self._locked = paced.lock, paced.locked
        self._opted_out, self.get = paced.opted_out, paced.get
        self._set, self._save = paced.set, paced.save
        self.next_slot_at, self.wake = paced.next_slot_at, paced.wake
        self.counts = paced.counts
        self.transitions = paced.transitions  # status changes applied by this process
        # What comes back by mail: delivery status notifications and complaints.
        self.reports = EmailReports(store=self._store, clock=clock, lock=self._lock,
                                    save=self._save)  # fmt: skip
        self.idle = self.engine.idle  # no email in flight
        self._turn = asyncio.Lock()  # one email at a time is handed to the relay
        self._handed_at: float | None = None  # when the last one was (monotonic)
        self._unhanded: set[str] = set()  # claimed (Sending), not handed to the relay yet
        self.closing = False

    @property
    def relay(self) -> str:
        return self._mailer.relay

    def _hold(self) -> float:
        return 1.0 / self._config.email.per_second + self._config.pacing.guard.total_seconds()

    # -- lifecycle -------------------------------------------------------------------
    async def recover(self) -> None:
        """Before pacing starts: settle emails a previous run left Sending, restore the
        queue, the relay's next slot and the counts."""
        await self._paced.recover_claimed(self._reconcile_left, self._hold())
        await self._paced.recover_queued()

    async def _reconcile_left(self, email: Email) -> None:
        await self.engine.reconcile(email, running=False)

    def stop(self) -> None:
        self.closing = True
        self.pacer.stop()

    # -- submission ------------------------------------------------------------------
    async def submit(self, request: EmailRequest) -> EmailSubmission:
        """Accept an email: validate it, then queue it on its relay."""
        if self.closing:
            raise Conflict("the service is shutting down; submit again once it is back")
        parts = Rendered(subject=request.subject, text=request.text, html=request.html)
        if request.fields is not None:  # templates: filled here, never at the send
            parts = render_email(subject=request.subject, text=request.text,
                                 html=request.html, fields=request.fields)  # fmt: skip
        content = check_email(sender=request.sender, recipient=request.recipient,
                              subject=parts.subject, text=parts.text,
                              html=parts.html)  # fmt: skip
        switches = [f"{name}={on}" for name, on in (("track_opens", request.track_opens),
                    ("track_clicks", request.track_clicks)) if on is not None]  # fmt: skip
        print_ = fingerprint(content.sender, content.recipient, content.subject, content.text,
                             content.html or "", request.lane.name, *switches)  # fmt: skip
        now = self._clock.now().wall
        email = Email(
            id=new_id("eml"), relay=self.relay, sender=content.sender,
            recipient=content.recipient, subject=content.subject, text=content.text,
            html=content.html, lane=request.lane, status=EmailStatus.QUEUED, accepted_at=now,
            updated_at=now, reason=EmailReason.ACCEPTED, idempotency_key=request.idempotency_key,
            fingerprint=print_, trigger=request.trigger, campaign_id=request.campaign_id,
            track_opens=request.track_opens, track_clicks=request.track_clicks,
        )  # fmt: skip
        stored, created = await self._paced.accept(email, self._insert)
        return EmailSubmission(item=stored, created=created)

    async def _insert(self, email: Email) -> Email:
        first = EmailEvent(email_id=email.id, at=email.accepted_at, status=EmailStatus.QUEUED,
                           reason=EmailReason.ACCEPTED, source=Source.API)  # fmt: skip
        # To a suppressed address, it ends at once, with the reason.
        stored, queued = await self._paced.insert(email, first, await self._suppressed(email))
        if queued:
            log.info("email.queued", extra={"email_id": stored.id, "relay": stored.relay})
        return stored

    def _enqueue(self, email: Email) -> None:
        self._queue.push(email)
        self.pacer.wake(self.relay)

    # -- the email kind, for the engine ----------------------------------------------
    def item_id(self, item: Email) -> str:
        return item.id

    def may_send(self, key: str) -> bool:
        return self._may_send() and not self.closing and key == self.relay

    def hold(self, item: Email) -> float:
        return self._hold()

    async def claim(self, due: Sequence[tuple[str, datetime]]) -> dict[str, Email]:
        """The next queued email of the relay, Sending (the durable intent to send)."""
        return {key: items[0] for key, items in (await self._claim(due, 1)).items()}

    async def claim_ahead(self, due: Sequence[tuple[str, datetime]]) -> dict[str, list[Email]]:
        """The relay's next queued emails whose slots fall within the claim's lead,
        Sending, in one write. Emails claimed earlier and not handed to the relay yet
        count against them: while the relay is slow, no more are claimed (each hand-off
        wakes the relay's key), so a crash leaves at most that many Sending that never
        left."""
        return await self._claim(due, self._ahead())

    def _ahead(self) -> int:
        """Emails claimed at once: the relay's slots within the lead (one at the
        default pace), at most :data:`MAX_AHEAD`."""
        return max(1, min(MAX_AHEAD, int(self.pacer.lead / self._hold())))

    async def _claim(
        self, due: Sequence[tuple[str, datetime]], count: int
    ) -> dict[str, list[Email]]:
        claimed: dict[str, list[Email]] = {}
        for key, _slot_at in due:
            room = count - len(self._unhanded)
            taken: list[Email] = []
            while len(taken) < room and (heads := self._queue.take(room - len(taken))):
                taken += await self._claim_heads(heads)
            if taken:
                claimed[key] = taken
        return claimed

    async def _claim_heads(self, heads: list[Email]) -> list[Email]:
        """``heads`` (out of the queue), Sending (the durable intent to send), their
        writes gathered into one commit; emails ended meanwhile are passed over, and
        those to a suppressed address end Failed. The ones Sending, in order."""
        async with self._locked(email.id for email in heads):
            try:
                found = await asyncio.gather(*(self._store.get_email(e.id) for e in heads))
                fresh = [e for e in found if e is not None and e.status is EmailStatus.QUEUED]
                ledger = await self._consent.read({e.recipient.lower() for e in fresh})
                ended, going = [], []
                for email in fresh:
                    optout = self._consent.blocking(
                        ledger, email.recipient.lower(), channel=ConsentChannel.EMAIL,
                        sender=email.sender, campaign=email.campaign_id,
                    )  # fmt: skip
                    if optout is not None:
                        ended.append(self._opted_out(email, optout, source=Source.SCHEDULER))
                    else:
                        going.append(self._set(email, EmailStatus.SENDING, source=Source.SCHEDULER,
                                               attempt_id=new_id("att")))  # fmt: skip
                done = await asyncio.gather(*ended, *going)
            except BaseException:
                for email in heads:
                    self._enqueue(email)  # not claimed: each keeps its place in the queue
                raise
        sending = done[len(ended) :]
        self._unhanded.update(email.id for email in sending)
        return sending

    def _let_go(self, email_id: str) -> None:
        """A claimed email was handed to the relay, or will not be: room for the next
        claim, and the relay's key woken for it."""
        if email_id in self._unhanded:
            self._unhanded.discard(email_id)
            self.wake()

    async def ready(self, item: Email) -> bool:
        if item.recipient.lower() not in self._consent.changed:  # no I/O unless it changed
            return True
        try:
            if (optout := await self._suppressed(item)) is None:
                return True
            async with self._lock(item.id):
                await self._opted_out(item, optout, source=Source.SCHEDULER)
        except BaseException:
            self._let_go(item.id)  # the engine ends its send here
            raise
        self._let_go(item.id)
        return False

    async def _suppressed(self, email: Email) -> ConsentEntry | None:
        """The opt-out that refuses ``email``, if its address is suppressed."""
        return await self._consent.check(
            email.recipient.lower(), channel=ConsentChannel.EMAIL, sender=email.sender,
            campaign=email.campaign_id,
        )  # fmt: skip

    def started(self, key: str, at: Instant) -> None:
        """Nothing to count: the email summary reads the engine."""

    async def send(self, item: Email, hand_off: HandOff) -> Accepted:
        """Hand ``item`` to the relay. A relay takes one email at a time (one connection):
        an email whose slot came while the one before was still being handed over waits
        its turn here, then one full slot after that one's hand-off, so the relay never
        gets two emails closer than the pace."""

        def handed(at: Instant) -> None:
            self._handed_at = at.mono
            hand_off(at)
            self._let_go(item.id)

        try:
            async with self._turn:
                if self._handed_at is not None:
                    wait = self._handed_at + self._hold() - self._clock.now().mono
                    if wait > _EPSILON:
                        await self._clock.sleep(wait)
                return await self._mailer.send_email(self._outgoing(item, handed))
        finally:
            self._let_go(item.id)  # refused before the hand-off, or cancelled

    async def taken(
        self, item: Email, accepted: Accepted, *, started: Instant, hold: float
    ) -> None:
        slot = (self.relay, started.wall + timedelta(seconds=hold))
        await self._taken(item, accepted, sent_at=started.wall, slot=slot, source=Source.PROVIDER)

    async def retry(
        self, item: Email, exc: ProviderError, decision: Retry, slot_at: datetime
    ) -> None:
        await self._paced.retry(item, exc, decision)

    async def fail(
        self, item: Email, exc: ProviderError, decision: GiveUp, slot_at: datetime
    ) -> None:
        await self._paced.fail(item, exc, decision)

    async def lookup(self, item: Email) -> Accepted | None:
        """Ask the mailer whether the relay took the attempt. A relay that cannot be
        asked (SMTP) leaves the email Unconfirmed for the operator; the error then
        tells the engine the question is not settled, so nothing more is done."""
        try:
            return await self._mailer.lookup_email(self._outgoing(item))
        except LookupUnsupported as exc:
            async with self._lock(item.id):
                fresh = await self._store.get_email(item.id) or item
                await self._set(fresh, EmailStatus.UNCONFIRMED, source=Source.RECONCILE,
                                reason=EmailReason.OUTCOME_UNKNOWN,
                                detail=f"attempt {item.attempt_id}: {exc}; not sent again "
                                "without an operator")  # fmt: skip
            raise

    async def received(self, item: Email, found: Accepted) -> None:
        await self._taken(item, found, sent_at=found.received_at, source=Source.RECONCILE)

    async def not_received(self, item: Email, *, running: bool) -> None:
        await self._paced.not_received(item)

    def _outgoing(self, email: Email, hand_off: HandOff | None = None) -> OutgoingEmail:
        domain = self._config.email.domain
        unsubscribe: tuple[str, ...] = ()
        if email.lane is Lane.BULK:
            unsubscribe = self.tracking.unsubscribe_uris(email.id)
        return OutgoingEmail(
            email_id=email.id, attempt_id=email.attempt_id or "", sender=email.sender,
            recipient=email.recipient, subject=email.subject, text=self.tracking.text(email),
            html=self.tracking.html(email), message_id=message_id(email.id, domain),
            return_path=return_path(email.id, domain), date=email.updated_at,
            unsubscribe=unsubscribe, handed_off=hand_off,
        )  # fmt: skip

    async def _taken(
        self,
        email: Email,
        accepted: Accepted,
        *,
        sent_at: datetime | None,
        source: Source,
        slot: tuple[str, datetime] | None = None,
    ) -> None:
        async with self._lock(email.id):
            fresh = await self._store.get_email(email.id) or email
            event, after = email_status(fresh, EmailStatus.SENT, at=self._clock.now().wall,
                                        source=source, detail=accepted.provider_id)  # fmt: skip
            if event.applied:
                after = replace(after, provider_id=accepted.provider_id,
                                sent_at=sent_at or after.updated_at)  # fmt: skip
            events = [event]
            if event.applied and self._config.email.relay_is_final:
                final, after = relay_final(after, event.at)
                events.append(final)
            await self._save(fresh, after, events, slot)

    # -- operator verbs --------------------------------------------------------------
    async def view(self, email_id: str) -> EmailView:
        email = await self.get(email_id)
        history = await self._store.email_history(email_id)
        ahead = self._queue.ahead_of(email) if email.status is EmailStatus.QUEUED else None
        explanation = explain_email(email, ahead=ahead, next_slot_at=self.next_slot_at())
        if results := engagement(history).describe():
            explanation = f"{explanation} {results}"
        return EmailView(item=email, history=history, explanation=explanation)

    async def cancel(self, email_id: str) -> Email:
        """End a Queued or Unconfirmed email Canceled: it is not sent (again)."""
        await self.get(email_id)
        async with self._lock(email_id):
            email = await self.get(email_id)
            if email.status is EmailStatus.CANCELED:
                return email
            if email.status not in (EmailStatus.QUEUED, EmailStatus.UNCONFIRMED):
                raise Conflict(f"email {email_id} is {email.status.value}; only Queued or "
                               "Unconfirmed email can be cancelled")  # fmt: skip
            after = await self._set(email, EmailStatus.CANCELED, source=Source.OPERATOR,
                                    reason=EmailReason.CANCELED)  # fmt: skip
        log.info("email.canceled", extra={"email_id": email_id})
        return after

    async def resend(self, email_id: str) -> Email:
        """Queue an Unconfirmed email again, on the operator's word: the relay may have
        the first attempt, so the contact may get it twice (the Message-ID is the
        same, which lets a mail client tell the copies apart)."""
        await self.get(email_id)
        async with self._lock(email_id):
            email = await self.get(email_id)
            if email.status is not EmailStatus.UNCONFIRMED:
                raise Conflict(f"email {email_id} is {email.status.value}; only Unconfirmed "
                               "email is sent again by an operator")  # fmt: skip
            doubt = f"the relay may have attempt {email.attempt_id}"
            queued = await self._set(email, EmailStatus.QUEUED, source=Source.OPERATOR,
                                     reason=EmailReason.RESENT, detail=doubt)  # fmt: skip
        self._enqueue(queued)
        log.info("email.resent", extra={"email_id": email_id})
        return queued

    def summary(self) -> EmailsSummary:
        return EmailsSummary(
            counts={s: n for s, n in self.counts.items() if n}, queued=len(self._queue),
            in_flight=sum(self.engine.in_flight.values()), next_slot_at=self.next_slot_at(),
            key=self.relay, rate=self._config.email.per_second,
        )  # fmt: skip

    def queued_by_lane(self) -> dict[Lane, int]:
        return self._queue.lanes()

    # -- helpers ---------------------------------------------------------------------
    def _saved(self, before: Email, after: Email, events: list[EmailEvent]) -> None:
        """A status change written: an email that ended (or is left for the operator)
        is logged, and a campaign's email tells the campaign desk."""
        if after.status is before.status:
            return
        if after.status in EMAIL_TERMINAL or after.status is EmailStatus.UNCONFIRMED:
            log.info("email.ended", extra={"email_id": after.id, "status": after.status.value,
                                           "code": after.provider_code})  # fmt: skip
        if after.campaign_id is not None:
            self._bus.publish(Outcome(
                campaign_id=after.campaign_id, item_id=after.id, status=after.status,
                reason=after.reason, expires_at=None,
            ))  # fmt: skip


__all__ = [
    "EmailDesk",
    "EmailRequest",
    "EmailSubmission",
    "EmailView",
    "EmailsSummary",
]
