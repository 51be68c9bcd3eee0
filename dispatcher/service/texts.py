"""The service's text verbs: submission, inbound texts and their keywords, receipts
from outside, the operator's questions and commands, and the Do Not Text list."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from dispatcher.channels import Receipt
from dispatcher.clock import Clock, Instant
from dispatcher.config import Config
from dispatcher.core.callbacks import Delivery, callback_url
from dispatcher.core.channel import Channel
from dispatcher.core.consent import Action, ConsentSource, dnt_row
from dispatcher.core.consent import Entry as ConsentEntry
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
from dispatcher.engine.callbacks import StatusCallbacks
from dispatcher.engine.calls import CallDesk
from dispatcher.engine.emails import EmailDesk
from dispatcher.engine.health import StoreHealth
from dispatcher.engine.intake import Intake, Submission, TextRequest, new_id
from dispatcher.engine.queues import Queues
from dispatcher.engine.scheduler import Pacer
from dispatcher.engine.texts import TextDesk
from dispatcher.errors import Conflict, NotFound, StoreError
from dispatcher.service.consent import ConsentVerbs
from dispatcher.service.views import MessageView, NumberView, StatusView
from dispatcher.store import Store

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class TextVerbs(ConsentVerbs):
    """Texts accepted, received, explained, cancelled; numbers paused; the list kept."""

    config: Config
    store: Store
    clock: Clock
    texts: TextDesk
    calls: CallDesk  # for the status: the calls' summary
    emails: EmailDesk  # and the email's
    callbacks: StatusCallbacks
    _health: StoreHealth  # for the status: the store's fault
    _queues: Queues
    _pacer: Pacer
    _intake: Intake
    _inbound_lock: asyncio.Lock
    _closing: bool

    if TYPE_CHECKING:  # the Dispatcher's, with its store faults

        async def _taking_work(self, work: Coroutine[Any, Any, _T]) -> _T: ...

    # -- submission ------------------------------------------------------------------
    async def submit(
        self, request: TextRequest, *, status_callback: str | None = None
    ) -> Submission:
        """Accept a text: validate, apply the Do Not Text and same-second rules, queue.
        With ``status_callback`` (https, or http to a loopback host), each status change
        of the text is POSTed there (docs/api.md, "Status callbacks")."""
        url = callback_url(status_callback) if status_callback is not None else None
        [submission] = await self.submit_many([request])
        if url is not None:
            await self._subscribe(Channel.TEXT, submission.message.id, url)
        return submission

    async def _subscribe(self, channel: Channel, item_id: str, url: str) -> None:
        """Send an item's status changes to ``url``. If this write fails, the item is
        accepted without it: submitting again with the same idempotency key adds it."""
        await self._taking_work(self.callbacks.subscribe(channel, item_id, url))

    async def status_callbacks(self, channel: Channel, item_id: str) -> list[Delivery]:
        """The status callbacks of a text, call or email: each status change to deliver,
        its state and every attempt with its outcome, by sequence number."""
        return await self.callbacks.of(channel, item_id)

    async def submit_many(self, requests: Sequence[TextRequest]) -> list[Submission]:
        """Accept many texts in one write. All are validated first: if one is invalid,
        none is stored and the error names its index."""
        if self._closing:
            raise Conflict("the service is shutting down; submit again once it is back")
        return await self._taking_work(self._intake.submit(requests))

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
        said = f"replied {' '.join(body.strip().upper().split())} to {number}"
        if asked is Keyword.OPT_OUT:
            await self.opt_out(contact, source=ConsentSource.STOP_REPLY, who="contact",
                               reason=said, channels=[Channel.TEXT])  # fmt: skip
        elif asked is Keyword.OPT_IN:
            await self.opt_in(contact, source=ConsentSource.START_REPLY, who="contact",
                              reason=said, channels=[Channel.TEXT])  # fmt: skip
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
        deepest queues (or just ``number``). On a store several workers share, the
        counts are the database's, so every worker gives the same."""
        now = self.clock.now()
        wanted = [e164(number)] if number is not None else self._queues.deepest(limit)
        texts = self.texts
        owners = await self._owners(wanted)
        numbers = [self._number_view(name, now) for name in wanted]
        counts = dict(self._queues.counts)
        if owners is not None:
            numbers = [replace(n, owner=owners.get(n.number)) for n in numbers]
            counts = await self._shared_counts(counts)
        return StatusView(
            counts=counts,
            numbers=numbers,
            numbers_total=len(self._queues),
            in_flight=sum(texts.engine.in_flight.values()),
            at=now.wall,
            calls=self.calls.summary(),
            emails=self.emails.summary(),
            sent_last_minute=texts.sends.total(now.mono),
            recent_errors=list(reversed(texts.errors)),
            store_fault=self._health.fault,
            shared=owners is not None,
        )

    async def _shared_counts(self, own: dict[TextStatus, int]) -> dict[TextStatus, int]:
        """The texts by status in the store several workers share (this worker's own
        counts, and logged, when the store cannot say)."""
        try:
            return {status: n for status, n in (await self.store.counts()).items() if n}
        except StoreError as exc:
            log.warning("status.counts_unreadable", extra={"error": str(exc)})
            return own

    async def _owners(self, numbers: list[str]) -> dict[str, str] | None:
        """The worker holding each number's lease, on a store several share (None: a
        store this service has alone; empty, and logged, when the store cannot say)."""
        if not numbers:
            return await self.store.owners(())
        try:
            return await self.store.owners(numbers)
        except StoreError as exc:
            log.warning("status.owners_unreadable", extra={"error": str(exc)})
            return {}

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

    # -- Do Not Text: the text view of the consent ledger ------------------------------
    async def dnt_add(self, number: str, *, added_by: str, reason: str | None) -> DntEntry:
        """Put ``number`` on the Do Not Text list (at once, even for a text claimed): an
        operator's text opt-out for every sender, unless one is in force (that one is
        kept as it is and returned)."""
        entry = DntEntry(
            number=e164(number), added_at=self.clock.now().wall, added_by=added_by, reason=reason
        )
        row = dnt_row(id=new_id("cns"), number=entry.number, action=Action.OPT_OUT,
                      at=entry.added_at, who=added_by, reason=reason)  # fmt: skip
        stored = await self._dnt_write(row, self.store.dnt_add(entry, entry_id=row.id))
        if stored != entry:
            self.consent_book.forget([row])  # it was listed already: nothing written
        log.info("dnt.added", extra={"number": entry.number, "by": added_by})
        return stored

    async def dnt_remove(self, number: str, *, removed_by: str = "operator") -> bool:
        """Take ``number`` off the Do Not Text list (an operator's text opt-in for every
        sender); whether it was on it."""
        number = e164(number)
        row = dnt_row(id=new_id("cns"), number=number, action=Action.OPT_IN,
                      at=self.clock.now().wall, who=removed_by, reason=None)  # fmt: skip
        removed = await self._dnt_write(
            row, self.store.dnt_remove(number, at=row.at, who=removed_by, entry_id=row.id)
        )
        if not removed:
            self.consent_book.forget([row])
        log.info("dnt.removed", extra={"number": number, "removed": removed})
        return removed

    async def _dnt_write(self, row: ConsentEntry, write: Awaitable[_T]) -> _T:
        self.consent_book.noted([row])  # before the write: a send about to go sees it
        try:
            return await write
        except BaseException:
            self.consent_book.forget([row])
            raise

    async def dnt_check(self, number: str) -> DntEntry | None:
        """The list's entry for ``number``, if it is listed."""
        return await self.store.dnt_get(e164(number))

    async def dnt_list(self, limit: int = 1000) -> list[DntEntry]:
        """The Do Not Text list."""
        return await self.store.dnt_list(limit)

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
            sent_last_minute=self.texts.sends.of(number, now.mono),
        )

    def _next_slot_at(self, number: str, now: Instant) -> datetime | None:
        slot = self._pacer.next_slot(number)
        if slot is None:
            return None
        return now.wall + timedelta(seconds=slot - now.mono)
