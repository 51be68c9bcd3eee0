"""The email simulator: an in-process relay that needs no mail server.

``[email] relay_url = "simulator://"`` (the default). It takes every email at once,
on the service's clock, and keeps what it took in memory, so the demo and tests can
send email without a relay and read back what left. Recipients listed in
``refused`` (exact addresses, or ``*@domain``) are refused for good with a 550, like
a relay that does not know them. Asked about an attempt, it answers from what it
took: it never has to be sent blindly again.

Like a real relay it reports back, for the addresses of the reserved domains in
:data:`BOUNCES` (RFC 2606's ``.example``): it takes the email, then one second later
sends the service a delivery status notification (RFC 3464) to the email's return
path, a hard bounce for ``<anyone>@bounce.example`` and a soft one for
``<anyone>@soft-bounce.example``, read and applied as one from a mail server would be.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import format_datetime
from types import TracebackType
from typing import Any, Self

from dispatcher.channels import Accepted, MailSink, OutgoingEmail
from dispatcher.clock import Clock, SystemClock
from dispatcher.core.emails import EmailReason
from dispatcher.errors import ProviderError

log = logging.getLogger(__name__)

BOUNCES: dict[str, tuple[str, str]] = {
    "bounce.example": ("5.1.1", "smtp; 550 5.1.1 no such user"),
    "soft-bounce.example": ("4.2.2", "smtp; 452 4.2.2 mailbox full"),
}
"""The reserved domains whose addresses bounce: the status and diagnostic reported."""
REPORT_AFTER = 1.0
"""Seconds between taking an email and reporting its bounce."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TakenEmail:
    """One email the simulated relay took."""

    email: OutgoingEmail
    provider_id: str
    at: datetime  # on the service's clock
    mono: float  # the same moment on the monotonic clock


class MailSimulator:
    """A relay in the process."""

    def __init__(self, *, clock: Clock | None = None, refused: Collection[str] = ()) -> None:
        self._clock = clock or SystemClock()
        self._refused = frozenset(address.lower() for address in refused)
        self._taken: dict[str, TakenEmail] = {}  # by attempt id
        self._sink: MailSink | None = None
        self._reports: set[asyncio.Task[None]] = set()

    @classmethod
    def from_url(cls, url: str, *, clock: Clock | None = None, **_options: Any) -> MailSimulator:
        return cls(clock=clock)

    @property
    def relay(self) -> str:
        return "simulator://"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self._reports:  # a report not sent yet is not sent
            task.cancel()
        await asyncio.gather(*self._reports, return_exceptions=True)

    def on_report(self, sink: MailSink) -> None:
        """Send the bounces of :data:`BOUNCES` to ``sink``."""
        self._sink = sink

    def taken(self) -> list[TakenEmail]:
        """Every email the relay took, in order."""
        return list(self._taken.values())

    async def send_email(self, email: OutgoingEmail) -> Accepted:
        now = self._clock.now()
        email.hand_off(now)
        recipient = email.recipient.lower()
        if recipient in self._refused or f"*@{recipient.rpartition('@')[2]}" in self._refused:
            raise ProviderError(f"the relay refused it: 550 5.1.1 <{email.recipient}>: no such "
                                "user", provider_code="550",
                                permanent_reason=EmailReason.RELAY_REJECTED)  # fmt: skip
        taken = TakenEmail(email=email, provider_id=f"sim-{len(self._taken) + 1}",
                           at=now.wall, mono=now.mono)  # fmt: skip
        self._taken[email.attempt_id] = taken
        if (bounce := BOUNCES.get(recipient.rpartition("@")[2])) and self._sink is not None:
            self._clock.call_at(now.mono + REPORT_AFTER, lambda: self._report(email, *bounce))
        return Accepted(provider_id=taken.provider_id, received_at=now.wall)

    def _report(self, email: OutgoingEmail, status: str, diagnostic: str) -> None:
        if self._sink is None:
            return
        content = bounce_report(email, status=status, diagnostic=diagnostic,
                                at=self._clock.now().wall)  # fmt: skip
        task = asyncio.create_task(self._send_back(self._sink, email, content))
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    @staticmethod
    async def _send_back(sink: MailSink, email: OutgoingEmail, content: bytes) -> None:
        try:
            await sink("", (email.return_path,), content)
        except Exception:  # a report is the relay's courtesy: its failure stops nothing
            log.exception("mail_simulator.report_failed", extra={"email_id": email.email_id})

    async def lookup_email(self, email: OutgoingEmail) -> Accepted | None:
        found = self._taken.get(email.attempt_id)
        return Accepted(provider_id=found.provider_id, received_at=found.at) if found else None


def bounce_report(email: OutgoingEmail, *, status: str, diagnostic: str, at: datetime) -> bytes:
    """A delivery status notification (RFC 3464) saying ``email`` failed with ``status``:
    a human part, the ``message/delivery-status`` part and the original's headers."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = "MAILER-DAEMON@simulator.example"
    report["To"] = email.return_path
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = format_datetime(at)
    report.attach(MIMEText(f"Your message to {email.recipient} could not be delivered: "
                           f"{diagnostic}.\n"))  # fmt: skip
    recipient = [f"Final-Recipient: rfc822; {email.recipient}", "Action: failed",
                 f"Status: {status}", f"Diagnostic-Code: {diagnostic}"]  # fmt: skip
    per_message = ["Reporting-MTA: dns; simulator.example"]
    delivery = MIMEBase("message", "delivery-status")
    for fields in (per_message, recipient):
        block = Message()
        for line in fields:
            name, _, value = line.partition(": ")
            block[name] = value
        delivery.attach(block)
    report.attach(delivery)
    quoted = (("From", email.sender), ("To", email.recipient), ("Message-ID", email.message_id))
    report.attach(MIMEText("".join(f"{k}: {v}\n" for k, v in quoted), "rfc822-headers"))
    return report.as_bytes(policy=compat32.clone(linesep="\r\n"))
