"""The pure core of email: statuses, transitions, events, validation and explanations.

Like :mod:`dispatcher.core.model` for texts and :mod:`dispatcher.core.calls` for
calls, nothing here does I/O or reads a clock.

An email is Queued until its relay's next slot (``[email] per_second``), Sending while
the SMTP transaction is in flight (the durable intent to send is written first), and
Sent once the relay accepted it. Delivered and Bounced come later, from the delivery
status notifications the relay sends back. Failed is an email the relay refused for
good (a 5xx reply, or 4xx replies beyond the retries); Canceled one that never left.

Unconfirmed is the one status left for the operator: the connection to the relay
dropped after the whole message was handed over, so the relay may or may not have
taken it, and SMTP gives no way to ask. The email is not sent again blindly: it
stays Unconfirmed until a delivery status notification settles it or the operator
decides.

Besides its statuses an email records the results its metrics count: Open, Click,
Unsubscribe and Complaint, each as an event of its own that changes no status.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import formataddr
from enum import StrEnum

from email_validator import EmailNotValidError, validate_email

from dispatcher.core.model import Lane, Source
from dispatcher.core.status_step import StatusStep
from dispatcher.core.transitions import TransitionTable
from dispatcher.errors import InvalidAddress, InvalidInput


class EmailStatus(StrEnum):
    QUEUED = "Queued"
    SENDING = "Sending"
    SENT = "Sent"
    UNCONFIRMED = "Unconfirmed"
    DELIVERED = "Delivered"
    BOUNCED = "Bounced"
    FAILED = "Failed"
    CANCELED = "Canceled"


_E = EmailStatus
EMAIL_TERMINAL: frozenset[EmailStatus] = frozenset(
    {_E.DELIVERED, _E.BOUNCED, _E.FAILED, _E.CANCELED}
)
"""States an email never leaves."""

EMAIL_TRANSITIONS: dict[EmailStatus, frozenset[EmailStatus]] = {
    _E.QUEUED: frozenset({_E.SENDING, _E.CANCELED, _E.FAILED}),
    # Sending -> Queued is the one step back: the relay asked us to try again later
    # (a 4xx reply), or it is known never to have had the attempt.
    _E.SENDING: frozenset(
        {_E.QUEUED, _E.SENT, _E.UNCONFIRMED, _E.DELIVERED, _E.BOUNCED, _E.FAILED}
    ),
    # The relay may have it: a notification settles it, or the operator sends it again
    # (Queued) or gives it up (Canceled).
    _E.UNCONFIRMED: frozenset(
        {_E.SENT, _E.DELIVERED, _E.BOUNCED, _E.QUEUED, _E.FAILED, _E.CANCELED}
    ),
    _E.SENT: frozenset({_E.DELIVERED, _E.BOUNCED}),
}

EMAIL_TABLE: TransitionTable[EmailStatus] = TransitionTable(EMAIL_TRANSITIONS, EMAIL_TERMINAL)
"""The emails' transition table: late, repeated and out-of-order reports merge without
moving an email backwards."""


class EmailResult(StrEnum):
    """Results of an email other than its status, named as the email metrics count them."""

    OPEN = "Open"
    CLICK = "Click"
    UNSUBSCRIBE = "Unsubscribe"
    COMPLAINT = "Complaint"


class EmailReason(StrEnum):
    ACCEPTED = "accepted"
    CANCELED = "canceled"
    RETRY = "retry"
    NOT_RECEIVED = "not_received_by_relay"
    RELAY_REJECTED = "relay_rejected"
    OUTCOME_UNKNOWN = "outcome_unknown"
    RESENT = "resent_by_operator"
    SUPPRESSED = "suppressed"  # the address opted out or bounced (the consent ledger)


@dataclass(frozen=True, slots=True, kw_only=True)
class Email:
    """An outbound email with its current, projected status."""

    id: str
    relay: str  # the relay whose pace it goes at (its URL without the password)
    sender: str  # the From address, normalised (with its display name, if it has one)
    recipient: str  # the To address, normalised
    subject: str
    text: str
    html: str | None
    lane: Lane  # bulk email carries List-Unsubscribe
    status: EmailStatus
    accepted_at: datetime
    updated_at: datetime
    seq: int = 0
    reason: str | None = None
    provider_code: str | None = None  # the relay's reply code (250, 451, 550, ...)
    provider_id: str | None = None  # what the relay answered when it took the email
    attempt_id: str | None = None
    sent_at: datetime | None = None  # when the relay took it
    idempotency_key: str | None = None
    fingerprint: str | None = None
    trigger: str | None = None  # what triggered it: an automation
    campaign_id: str | None = None
    # Its own tracking switches: the open pixel, the click redirects (None: the [email]
    # track_opens / track_clicks configuration's, as it is when the email is sent).
    track_opens: bool | None = None
    track_clicks: bool | None = None

    @property
    def terminal(self) -> bool:
        return self.status in EMAIL_TERMINAL


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailEvent:
    """One appended step of an email's history: a status, or a result, or both."""

    email_id: str
    at: datetime
    status: EmailStatus | None = None
    result: EmailResult | None = None
    reason: str | None = None
    provider_code: str | None = None
    source: Source = Source.SCHEDULER
    applied: bool = True
    detail: str | None = None


email_status: StatusStep[Email, EmailStatus, EmailEvent] = StatusStep(
    EMAIL_TABLE, EmailEvent, "email_id"
)
"""Judge a reported status against an email: the event to append and the email as
it is afterwards (unchanged unless the step applies)."""


# -- validation ----------------------------------------------------------------------

MAX_SUBJECT = 998
"""Characters of a subject: one header line as RFC 5322 allows it."""
MAX_PART = 50_000
"""Characters of the text part, and of the HTML part."""


def address(value: str, *, field: str, display_name: bool = False) -> str:
    """``value`` as a normalised email address (no DNS lookup), or an error naming
    ``field``. With ``display_name``, ``Name <address>`` is taken too, and kept in
    that form (a name that is not ASCII written as an encoded word)."""
    no_line_breaks(value, field=field)
    try:
        found = validate_email(value.strip(), check_deliverability=False,
                               allow_display_name=display_name)  # fmt: skip
    except EmailNotValidError as exc:
        raise InvalidAddress(f"{field}: {value!r} is not a valid email address: {exc}",
                             field=field) from None  # fmt: skip
    if found.display_name:
        return formataddr((found.display_name, found.normalized))
    return found.normalized


def no_line_breaks(value: str, *, field: str) -> None:
    """Refuse a header field with a CR or LF in it: a line break would start a header
    of the sender's choosing (header injection)."""
    if "\r" in value or "\n" in value:
        raise InvalidInput(f"{field}: a header field may not contain a line break (CR or LF)",
                           field=field)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailContent:
    """An email's addresses and parts, validated and normalised."""

    sender: str
    recipient: str
    subject: str
    text: str
    html: str | None


def check_email(
    *, sender: str, recipient: str, subject: str, text: str, html: str | None
) -> EmailContent:
    """Validate what an email is made of, each error naming its field: the addresses,
    a subject (one line, at most :data:`MAX_SUBJECT` characters) and a text part are
    required; the HTML part is optional; each part is at most :data:`MAX_PART`
    characters."""
    from_ = address(sender, field="from", display_name=True)
    to = address(recipient, field="to")
    no_line_breaks(subject, field="subject")
    if not subject.strip():
        raise InvalidInput("subject: an email needs a subject", field="subject")
    if len(subject) > MAX_SUBJECT:
        raise InvalidInput(f"subject: at most {MAX_SUBJECT} characters, not {len(subject)}",
                           field="subject")  # fmt: skip
    if not text.strip():
        raise InvalidInput("text: an email needs a plain-text part", field="text")
    for name, part in (("text", text), ("html", html)):
        if part is not None and len(part) > MAX_PART:
            raise InvalidInput(f"{name}: at most {MAX_PART} characters, not {len(part)}",
                               field=name)  # fmt: skip
    if html is not None and not html.strip():
        raise InvalidInput("html: give an HTML part with content, or none", field="html")
    return EmailContent(sender=from_, recipient=to, subject=subject, text=text, html=html)


def message_id(email_id: str, domain: str) -> str:
    """The ``Message-ID`` header of an email: unique, under the sending domain."""
    return f"<{email_id}@{domain}>"


def return_path(email_id: str, domain: str) -> str:
    """The envelope sender of an email: a bounce to it names the email it is about."""
    return f"bounce+{email_id}@{domain}"


# -- explanations --------------------------------------------------------------------


def explain_email(  # noqa: PLR0911 - one answer per status
    email: Email, *, ahead: int | None = None, next_slot_at: datetime | None = None
) -> str:
    """A plain-language answer to "why is this email in this state?"."""
    s = email.status
    code = f" (reply code {email.provider_code})" if email.provider_code else ""
    if s is EmailStatus.QUEUED:
        behind = f" behind {ahead} email{'s' if ahead != 1 else ''}" if ahead is not None else ""
        slot = f"; next slot at {_t(next_slot_at)}" if next_slot_at else ""
        retry = f" after a temporary refusal{code}" if email.reason == EmailReason.RETRY else ""
        return f"Queued{retry}{behind} on relay {email.relay} (emails per second){slot}."
    if s is EmailStatus.SENDING:
        return (f"Sending since {_t(email.updated_at)} (attempt {email.attempt_id}): the intent "
                "to send is recorded; waiting for the relay's answer.")  # fmt: skip
    if s is EmailStatus.SENT:
        said = f" ({email.provider_id})" if email.provider_id else ""
        at = _t(email.sent_at or email.updated_at)
        return f"Sent at {at}: the relay accepted it for {email.recipient}{said}."
    if s is EmailStatus.UNCONFIRMED:
        return (f"Unconfirmed since {_t(email.updated_at)}: the connection to the relay broke "
                "after the whole message was handed over, and SMTP cannot be asked whether "
                "it was taken. It is not sent again by itself: a delivery notification "
                "settles it, or an operator sends it again (dispatcher email resend, and "
                "the contact may get it twice) or cancels it (dispatcher email "
                "cancel).")  # fmt: skip
    if s is EmailStatus.DELIVERED:
        return f"Delivered to {email.recipient} at {_t(email.updated_at)}."
    if s is EmailStatus.BOUNCED:
        return f"Bounced: {email.recipient} did not take it{code}."
    if s is EmailStatus.CANCELED:
        return f"Canceled at {_t(email.updated_at)}."
    if email.reason == EmailReason.SUPPRESSED:
        return (f"Not sent: {email.recipient} is suppressed (an opt-out, a bounce or a "
                "complaint; the history says which, when and why).")  # fmt: skip
    return f"Failed: {email.reason or 'the relay refused it'}{code}."


def _t(at: datetime | None) -> str:
    return at.isoformat(timespec="milliseconds") if at else "?"
