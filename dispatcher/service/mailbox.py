"""The service's inbound mail verb: what the mailbox takes, recorded against its email.

The inbound mailbox (``[email] inbound_listen``) hands every message it takes to
:meth:`MailboxVerbs.receive_mail`. The message is read in the core
(:mod:`dispatcher.core.mail_reports`) and matched to its email:

- a delivery status notification moves the email (Delivered, Bounced hard or soft
  with its status code and diagnostic, or Sent for a delay) through the email desk;
  one hard bounce, or ``[email] soft_bounce_limit`` soft bounces in a row since the
  address's last delivery, suppresses the address for email (the consent ledger,
  source ``hard_bounce`` or ``soft_bounces``);
- a feedback report (a complaint) is a Complaint in the email's history and
  suppresses the address (source ``complaint``);
- mail to the ``List-Unsubscribe`` mailto unsubscribes the recipient from the
  email's sender, as the one-click link does.

What matches nothing, or is not a report, is answered as such: the mailbox keeps it
aside. A store that refuses writes raises (the mailbox answers a temporary failure,
so the sending server tries again later and nothing is lost).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Coroutine
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from dispatcher.config import Config
from dispatcher.core.channel import Channel
from dispatcher.core.consent import ConsentSource, Entry
from dispatcher.core.email_tracking import UnsubscribeScope, UnsubscribeSource
from dispatcher.core.emails import Email
from dispatcher.core.mail_reports import BounceType, MailKind, MailReport, read_mail
from dispatcher.engine.automations import Engine
from dispatcher.engine.email_reports import Reported
from dispatcher.engine.email_tracking import Unsubscribed
from dispatcher.engine.emails import EmailDesk
from dispatcher.errors import NotFound

log = logging.getLogger(__name__)
_T = TypeVar("_T")
WHO = "inbound mailbox"
"""Who the consent ledger says suppressed an address from a report."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundMail:
    """A message as the mailbox took it: its envelope and its content, unread."""

    mail_from: str
    recipients: tuple[str, ...]
    content: bytes


class MailVerdict(StrEnum):
    """What became of a message the mailbox took."""

    RECORDED = "recorded"  # a report or an unsubscribe, recorded against its email
    UNMATCHED = "unmatched"  # a report about no email the service has
    NOT_A_REPORT = "not_a_report"  # malformed, or mail of another kind


@dataclass(frozen=True, slots=True, kw_only=True)
class MailOutcome:
    verdict: MailVerdict
    kind: MailKind
    detail: str  # what was done, or why nothing was
    email_id: str | None = None
    suppressed: bool = False  # the report suppressed the address for email

    @property
    def kept_aside(self) -> bool:
        """Should the message be kept for a person to look at?"""
        return self.verdict is not MailVerdict.RECORDED


class MailboxVerbs:
    """Bounces, complaints and unsubscribe mail from the inbound mailbox."""

    config: Config
    emails: EmailDesk
    automations: Engine  # told of each bounce and complaint

    if TYPE_CHECKING:  # the Dispatcher's, from its other verbs

        async def _taking_work(self, work: Coroutine[Any, Any, _T]) -> _T: ...

        # The consent ledger's (what of it this uses).
        async def opt_out(self, contact: str, *, source: ConsentSource, who: str,
                          reason: str | None, channels: Collection[Channel]
                          ) -> list[Entry]: ...  # fmt: skip

        async def unsubscribe(
            self, token_or_email_id: str, scope: UnsubscribeScope, source: UnsubscribeSource
        ) -> Unsubscribed: ...

        async def unsubscribe_target(self, token: str) -> Email | None: ...

    async def receive_mail(self, mail: InboundMail) -> MailOutcome:
        """Read a message the mailbox took and record what it says about its email."""
        report = read_mail(mail.content, recipients=mail.recipients,
                           domain=self.config.email.domain)  # fmt: skip
        if report.kind is MailKind.OTHER:
            return MailOutcome(verdict=MailVerdict.NOT_A_REPORT, kind=report.kind,
                               detail=report.problem or "not a report")  # fmt: skip
        if report.email_id is None:
            return MailOutcome(verdict=MailVerdict.UNMATCHED, kind=report.kind,
                               detail="names no email of this service (neither its return "
                               "path nor its Message-ID)")  # fmt: skip
        if report.kind is MailKind.UNSUBSCRIBE:
            return await self._unsubscribe(report.email_id)
        return await self._taking_work(self._record_report(report, report.email_id))

    async def returned_mail(
        self, mail_from: str, recipients: tuple[str, ...], content: bytes
    ) -> None:
        """Mail a relay sent back to the service itself (the simulated relay's bounces),
        read as the mailbox reads what it takes."""
        outcome = await self.receive_mail(InboundMail(mail_from=mail_from, recipients=recipients,
                                                      content=content))  # fmt: skip
        if outcome.kept_aside:
            log.warning("mailbox.returned_unread", extra={"detail": outcome.detail})

    async def _record_report(self, report: MailReport, email_id: str) -> MailOutcome:
        if report.kind is MailKind.FEEDBACK:
            reported = await self.emails.reports.complaint(email_id, report.feedback_type or "")
        else:
            reported = await self.emails.reports.delivery_status(email_id, report.steps)
        if reported is None:
            return MailOutcome(verdict=MailVerdict.UNMATCHED, kind=report.kind,
                               email_id=email_id, detail=f"no email {email_id}")  # fmt: skip
        self.automations.email_result()
        suppressed = await self._suppress(report, reported)
        done = ", ".join(f"{e.status or e.result}{'' if e.applied else ' (not applied)'}"
                         for e in reported.events)  # fmt: skip
        return MailOutcome(verdict=MailVerdict.RECORDED, kind=report.kind, email_id=email_id,
                           detail=done, suppressed=suppressed)  # fmt: skip

    async def _suppress(self, report: MailReport, reported: Reported) -> bool:
        """Suppress the email's address for email after a complaint, a hard bounce, or
        the soft bounce that reaches ``[email] soft_bounce_limit`` in a row."""
        recipient = reported.email.recipient
        step = next((s for s in report.steps if s.bounce is reported.bounce), None)
        if report.kind is MailKind.FEEDBACK:
            source, reason = ConsentSource.COMPLAINT, f"feedback report: {report.feedback_type}"
        elif reported.bounce is BounceType.HARD and step is not None:
            source, reason = ConsentSource.HARD_BOUNCE, f"{step.code}: {step.detail}"
        elif reported.bounce is BounceType.SOFT and step is not None:
            count = await self.emails.reports.soft_bounces(recipient)
            if count < self.config.email.soft_bounce_limit:
                return False
            source = ConsentSource.SOFT_BOUNCES
            reason = f"{count} soft bounces in a row, the last {step.code}: {step.detail}"
        else:
            return False
        await self.opt_out(recipient, source=source, who=WHO, reason=reason[:500],
                           channels=[Channel.EMAIL])  # fmt: skip
        log.info("mailbox.suppressed", extra={"email_id": reported.email.id,
                                              "source": source.value})  # fmt: skip
        return True

    async def _unsubscribe(self, token: str) -> MailOutcome:
        """Unsubscribe as the one-click link does, for a signed token only (an email's
        id, which its Message-ID shows, unsubscribes no one by mail)."""
        kind = MailKind.UNSUBSCRIBE
        unknown = MailOutcome(verdict=MailVerdict.UNMATCHED, kind=kind,
                              detail="not an unsubscribe token this service signed")  # fmt: skip
        if await self.unsubscribe_target(token) is None:
            return unknown
        try:
            done = await self.unsubscribe(token, UnsubscribeScope.SENDER, UnsubscribeSource.MAILTO)
        except NotFound:  # the email went meanwhile
            return unknown
        return MailOutcome(verdict=MailVerdict.RECORDED, kind=kind, email_id=done.email_id,
                           detail=f"unsubscribed {done.recipient} from {done.sender}",
                           suppressed=True)  # fmt: skip
