"""What the mail that comes back does to an email: delivery status notifications and
complaints, applied through the email's transition table.

The inbound mailbox reads each message (:mod:`dispatcher.core.mail_reports`) and
hands the steps of a delivery status notification here: Delivered, Bounced (hard or
soft, with the status code and the diagnostic text on the event), or Sent for a
delay (the relay had the email: it settles an Unconfirmed one). A late, repeated or
reordered report is kept in the history and never moves an email backwards. A
complaint (a feedback report) is a Complaint result beside the status.

With ``[email] relay_is_final`` the relay is the recipient's own server: an email it
accepts is recorded Sent, then Delivered in the same write (:func:`relay_final`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from dispatcher.clock import Clock
from dispatcher.core.emails import Email, EmailEvent, EmailResult, EmailStatus, email_status
from dispatcher.core.mail_reports import BounceType, ReportReason, Step, soft_bounces_in_a_row
from dispatcher.core.model import Source
from dispatcher.store import EmailStore

log = logging.getLogger(__name__)

Lock = Callable[[str], asyncio.Lock]
"""The email desk's lock for one email: every change of an email is made under it."""
Save = Callable[[Email, Email, list[EmailEvent]], Awaitable[None]]
"""Store an email's change with its events (before, after, events); the desk counts it."""

_RECENT = 100  # an address's newest emails read to count its soft bounces in a row


@dataclass(frozen=True, slots=True, kw_only=True)
class Reported:
    """A report applied to its email: the email as it is now, the events appended, and
    the type of a bounce the report made (None: no bounce applied)."""

    email: Email
    events: list[EmailEvent]
    bounce: BounceType | None = None


class EmailReports:
    """Reports about the email desk's emails. Owned by the desk, which hands it where
    emails are read, its lock for each email and how a changed email is saved."""

    def __init__(self, *, store: EmailStore, clock: Clock, lock: Lock, save: Save) -> None:
        self._store = store
        self._clock = clock
        self._lock = lock
        self._save = save

    async def delivery_status(self, email_id: str, steps: Sequence[Step]) -> Reported | None:
        """Apply a delivery status notification's steps to the email (None: no such
        email). Each step is judged against the email as the one before left it."""
        async with self._lock(email_id):
            email = await self._store.get_email(email_id)
            if email is None:
                return None
            at = self._clock.now().wall
            after, events, bounce = email, [], None
            for step in steps:
                event, after = email_status(after, step.status, at=at, source=Source.RECEIPT,
                                            reason=step.reason, provider_code=step.code,
                                            detail=step.detail)  # fmt: skip
                events.append(event)
                if event.applied and step.bounce is not None:
                    bounce = step.bounce
            await self._save(email, after, events)
        log.info("email.reported", extra={"email_id": email_id, "status": after.status.value,
                                          "bounce": bounce})  # fmt: skip
        return Reported(email=after, events=events, bounce=bounce)

    async def complaint(self, email_id: str, feedback_type: str) -> Reported | None:
        """A feedback report about the email: a Complaint in its history, whatever its
        status (None: no such email)."""
        async with self._lock(email_id):
            email = await self._store.get_email(email_id)
            if email is None:
                return None
            event = EmailEvent(email_id=email_id, at=self._clock.now().wall,
                               result=EmailResult.COMPLAINT, reason=ReportReason.COMPLAINT,
                               source=Source.CONTACT,
                               detail=f"feedback report: {feedback_type}")  # fmt: skip
            await self._store.add_email_events([event])
        log.info("email.complaint", extra={"email_id": email_id, "feedback_type": feedback_type})
        return Reported(email=email, events=[event])

    async def soft_bounces(self, recipient: str) -> int:
        """The address's soft bounces in a row, since its last delivery."""
        emails = await self._store.find_emails(recipient, _RECENT)
        return soft_bounces_in_a_row([(e.status, e.reason) for e in emails])


def relay_final(email: Email, at: datetime) -> tuple[EmailEvent, Email]:
    """An email the relay took, Delivered: the relay is the recipient's own server
    (``[email] relay_is_final``)."""
    return email_status(email, EmailStatus.DELIVERED, at=at, source=Source.PROVIDER,
                        reason=ReportReason.RELAY_IS_FINAL,
                        detail="the relay is the recipient's own server")  # fmt: skip
