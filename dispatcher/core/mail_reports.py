"""Mail that comes back: delivery status notifications, feedback reports, unsubscribes.

Pure: the inbound mailbox (``[email] inbound_listen``) hands each message it takes
here as bytes, with its envelope recipients, and gets back what the message says
about which email. Nothing here does I/O or reads a clock.

- A **delivery status notification** (RFC 3464: ``multipart/report;
  report-type=delivery-status``) carries a ``message/delivery-status`` part: one block
  of fields about the message, then one block per recipient with its ``Action``
  (``failed``, ``delayed``, ``delivered``, ``relayed``, ``expanded``), its ``Status``
  (``5.1.1``: the first digit is the class, 2 success, 4 temporary, 5 permanent) and
  often a ``Diagnostic-Code`` (``smtp; 550 5.1.1 user unknown``).
- A **feedback report** (RFC 5965, ARF: ``multipart/report;
  report-type=feedback-report``) is a recipient's complaint (``Feedback-Type: abuse``)
  relayed by their mailbox provider.
- Mail to ``unsubscribe+<id>@<domain>`` is the ``List-Unsubscribe`` mailto of a bulk
  email.

A report is matched to its email by the address it was sent to (the email's return
path, ``bounce+<id>@<domain>``), else by the ``Original-Mail-From`` of a feedback
report, else by the original message's ``Message-ID`` (``<id@<domain>>``) in the
report's ``message/rfc822`` or ``text/rfc822-headers`` part. Only addresses under
the configured domain count.
"""

from __future__ import annotations

import email
import email.parser
import email.policy
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import Message
from email.utils import parseaddr
from enum import StrEnum

from dispatcher.core.emails import EmailStatus


class MailKind(StrEnum):
    """What a message that came to the mailbox is."""

    DELIVERY_STATUS = "delivery_status"  # RFC 3464
    FEEDBACK = "feedback"  # RFC 5965
    UNSUBSCRIBE = "unsubscribe"  # to the List-Unsubscribe mailto
    OTHER = "other"  # none of those: kept aside


class ReportReason(StrEnum):
    """The reasons a report gives the step it makes (an email event's ``reason``)."""

    HARD_BOUNCE = "hard_bounce"  # a failure with a 5.x.x status
    SOFT_BOUNCE = "soft_bounce"  # a failure with a 4.x.x status
    DELAYED = "delivery_delayed"  # the relay is still trying: it had the email
    DELIVERED = "delivered"  # a success report (delivered, relayed or expanded)
    RELAY_IS_FINAL = "relay_is_final"  # the relay is the recipient's own server
    COMPLAINT = "complaint"  # a feedback report


class BounceType(StrEnum):
    HARD = "hard"
    SOFT = "soft"


class MatchedBy(StrEnum):
    """How a report was matched to its email."""

    RETURN_PATH = "return_path"  # sent to bounce+<id>@<domain>
    ORIGINAL_MAIL_FROM = "original_mail_from"  # a feedback report's Original-Mail-From
    MESSAGE_ID = "message_id"  # the original message's Message-ID
    UNSUBSCRIBE_ADDRESS = "unsubscribe_address"  # sent to unsubscribe+<token>@<domain>


@dataclass(frozen=True, slots=True, kw_only=True)
class RecipientStatus:
    """One recipient's block of a delivery status notification."""

    recipient: str | None  # Final-Recipient (or Original-Recipient), the address only
    action: str  # lower case: failed, delayed, delivered, relayed, expanded
    status: str  # the enhanced status code: 5.1.1
    diagnostic: str | None  # Diagnostic-Code, as written: "smtp; 550 5.1.1 ..."


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """What a recipient's block does to its email: a status, with its reason, the
    status code and the diagnostic text for the event."""

    status: EmailStatus
    reason: ReportReason
    code: str
    detail: str
    bounce: BounceType | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MailReport:
    """What one message says, and which email it is about (``email_id`` None: it
    matched nothing). ``problem`` says why a message is not read as a report."""

    kind: MailKind
    email_id: str | None = None
    matched_by: MatchedBy | None = None
    recipients: tuple[RecipientStatus, ...] = ()  # a delivery status notification's
    feedback_type: str | None = None  # a feedback report's (abuse, fraud, ...)
    token: str | None = None  # an unsubscribe's (the email id of the mailto)
    problem: str | None = None
    steps: tuple[Step, ...] = ()  # a delivery status notification's steps


ACTIONS = frozenset({"failed", "delayed", "delivered", "relayed", "expanded"})
"""The ``Action`` values of RFC 3464."""
_STATUS = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX_DETAIL = 500  # characters of a diagnostic kept on an event


def read_mail(content: bytes, *, recipients: Sequence[str], domain: str) -> MailReport:
    """What ``content`` (a whole message, as received) says, matched to an email by
    its envelope ``recipients`` and what it quotes. Never raises: a message that
    cannot be read is :attr:`MailKind.OTHER` with its ``problem``."""
    domain = domain.lower()
    try:
        message = email.message_from_bytes(content, policy=email.policy.compat32)
    except (ValueError, TypeError, LookupError, IndexError) as exc:  # a broken structure
        return _other(f"not a readable message: {exc}")
    token = _addressed(recipients, "unsubscribe", domain)
    if token is not None:
        return MailReport(kind=MailKind.UNSUBSCRIBE, email_id=token, token=token,
                          matched_by=MatchedBy.UNSUBSCRIBE_ADDRESS)  # fmt: skip
    found = _READERS.get(_report_type(message) or "")
    if found is not None:
        return _report(message, found, recipients, domain)
    if not message.keys() or message.defects:
        return _other("not a well-formed message")
    return _other("neither a delivery status notification (RFC 3464) nor a feedback report "
                  "(RFC 5965)")  # fmt: skip


def step_of(block: RecipientStatus) -> Step | None:
    """What a recipient's block does to its email (None: a block that says nothing
    this service knows). A failure is a bounce, hard with a 5.x.x status, soft with
    4.x.x; a delay means the relay had the email (it settles an Unconfirmed one as
    Sent); a success (delivered, relayed to a system that reports no further, or
    expanded to a list) is Delivered."""
    found = _STATUS.match(block.status)
    if block.action not in ACTIONS or found is None:
        return None
    detail = (block.diagnostic or f"{block.action} {block.status}")[:_MAX_DETAIL]
    klass = found.group(1)
    if block.action == "failed":
        if klass == "2":
            return None  # a failure with a success code says nothing sure
        soft = klass == "4"
        return Step(status=EmailStatus.BOUNCED, code=block.status, detail=detail,
                    reason=ReportReason.SOFT_BOUNCE if soft else ReportReason.HARD_BOUNCE,
                    bounce=BounceType.SOFT if soft else BounceType.HARD)  # fmt: skip
    if block.action == "delayed":
        return Step(status=EmailStatus.SENT, reason=ReportReason.DELAYED, code=block.status,
                    detail=detail)  # fmt: skip
    return Step(status=EmailStatus.DELIVERED, reason=ReportReason.DELIVERED, code=block.status,
                detail=f"{block.action}: {detail}" if block.diagnostic else detail)  # fmt: skip


def soft_bounces_in_a_row(statuses: Sequence[tuple[EmailStatus, str | None]]) -> int:
    """How many soft bounces an address had since its last delivery, from its emails'
    (status, reason), newest first: counting stops at the first Delivered one."""
    count = 0
    for status, reason in statuses:
        if status is EmailStatus.DELIVERED:
            break
        if status is EmailStatus.BOUNCED and reason == ReportReason.SOFT_BOUNCE:
            count += 1
    return count


# -- reading ------------------------------------------------------------------------


def _report_type(message: Message) -> str | None:
    if message.get_content_type() != "multipart/report":
        return None
    value = message.get_param("report-type")
    return value.lower() if isinstance(value, str) else None


def _report(
    message: Message, found: tuple[str, str, _Reader], recipients: Sequence[str], domain: str
) -> MailReport:
    what, part_type, reader = found
    try:
        part = _part(message, part_type)
        if part is None:
            return _other(f"a {what} without its {part_type} part")
        return reader(message, _blocks(part), recipients, domain)
    except (ValueError, TypeError, LookupError, IndexError, AttributeError) as exc:
        return _other(f"a {what} that cannot be read: {exc}")


def _other(problem: str) -> MailReport:
    return MailReport(kind=MailKind.OTHER, problem=problem)


def _delivery_status(
    message: Message, blocks: list[dict[str, str]], recipients: Sequence[str], domain: str
) -> MailReport:
    per_recipient = tuple(_recipient(b) for b in blocks[1:] if "action" in b or "status" in b)
    if not per_recipient:
        return _other("a delivery status notification with no recipient's block (Action, "
                      "Status)")  # fmt: skip
    steps = tuple(step for b in per_recipient if (step := step_of(b)) is not None)
    if not steps:
        said = ", ".join(f"{b.action} {b.status}" for b in per_recipient)
        return _other(f"a delivery status notification whose Action and Status cannot be "
                      f"read: {said}"[:_MAX_DETAIL])  # fmt: skip
    email_id, how = _match(message, recipients, domain, original_from=None)
    return MailReport(kind=MailKind.DELIVERY_STATUS, email_id=email_id, matched_by=how,
                      recipients=per_recipient, steps=steps)  # fmt: skip


def _feedback(
    message: Message, fields: list[dict[str, str]], recipients: Sequence[str], domain: str
) -> MailReport:
    first = fields[0] if fields else {}
    kind = first.get("feedback-type", "").strip().lower()
    if not kind:
        return _other("a feedback report without its Feedback-Type")
    email_id, how = _match(message, recipients, domain,
                           original_from=first.get("original-mail-from"))  # fmt: skip
    return MailReport(kind=MailKind.FEEDBACK, email_id=email_id, matched_by=how,
                      feedback_type=kind[:64])  # fmt: skip


_Reader = Callable[[Message, list[dict[str, str]], Sequence[str], str], MailReport]
_READERS: dict[str, tuple[str, str, _Reader]] = {
    "delivery-status": ("delivery status notification", "message/delivery-status",
                        _delivery_status),
    "feedback-report": ("feedback report", "message/feedback-report", _feedback),
}  # fmt: skip
"""What each report type is (``multipart/report``'s ``report-type``): its name, the
part of its fields, and its reader (given the fields' blocks)."""


def _part(message: Message, content_type: str) -> Message | None:
    for part in message.walk():
        if part.get_content_type() == content_type:
            return part
    return None


def _blocks(part: Message) -> list[dict[str, str]]:
    """The header blocks of a report part, each as lower-case name -> value: the
    parser gives a ``message/delivery-status`` part's blocks as a list of messages,
    another ``message/*`` part its one block as a message, and a part it kept as
    text (``text/plain`` sent by a sloppy reporter) is read here."""
    payload = part.get_payload()
    if isinstance(payload, str):
        text = payload.replace("\r\n", "\n").strip("\n")
        parser = email.parser.HeaderParser(policy=email.policy.compat32)
        payload = [parser.parsestr(block + "\n") for block in re.split(r"\n\s*\n", text)]
    return [{k.lower(): _unfold(str(v)) for k, v in block.items()}
            for block in payload if isinstance(block, Message)]  # fmt: skip


def _recipient(block: dict[str, str]) -> RecipientStatus:
    who = block.get("final-recipient") or block.get("original-recipient")
    return RecipientStatus(
        recipient=_typed_address(who) if who else None,
        action=block.get("action", "").strip().lower(),
        status=block.get("status", "").strip().split(" ")[0],
        diagnostic=block.get("diagnostic-code") or None,
    )


def _match(
    message: Message, recipients: Sequence[str], domain: str, *, original_from: str | None
) -> tuple[str | None, MatchedBy | None]:
    if (found := _addressed(recipients, "bounce", domain)) is not None:
        return found, MatchedBy.RETURN_PATH
    if original_from and (found := _bounce_id(_address(original_from), domain)) is not None:
        return found, MatchedBy.ORIGINAL_MAIL_FROM
    if (found := _original_id(message, domain)) is not None:
        return found, MatchedBy.MESSAGE_ID
    return None, None


def _addressed(recipients: Sequence[str], tag: str, domain: str) -> str | None:
    """The token of the first ``<tag>+<token>@<domain>`` among ``recipients``."""
    for recipient in recipients:
        local, _, at = _address(recipient).rpartition("@")
        name, plus, token = local.partition("+")
        if plus and name.lower() == tag and at.lower() == domain and _TOKEN.match(token):
            return token.lower()  # ids and tokens are lower case; some systems change case
    return None


def _bounce_id(address: str, domain: str) -> str | None:
    return _addressed([address], "bounce", domain)


def _original_id(message: Message, domain: str) -> str | None:
    """The email id in the original message's ``Message-ID`` (``<id@domain>``), from
    the report's ``message/rfc822`` or ``text/rfc822-headers`` part."""
    for part in message.walk():
        kind = part.get_content_type()
        headers: Message | None = None
        if kind == "message/rfc822":
            inner = part.get_payload()
            first = inner[0] if isinstance(inner, list) and inner else None
            headers = first if isinstance(first, Message) else None
        elif kind == "text/rfc822-headers":
            text = part.get_payload(decode=True)
            if isinstance(text, bytes):
                parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
                headers = parser.parsebytes(text)
        if headers is None:
            continue
        value = _unfold(str(headers.get("Message-ID", ""))).strip().strip("<>")
        local, _, at = value.rpartition("@")
        if at.lower() == domain and _TOKEN.match(local):
            return local
    return None


def _typed_address(value: str) -> str:
    """The address of a typed field (``rfc822; ann@example.com``)."""
    _, _, address = value.rpartition(";")
    return _address(address)


def _address(value: str) -> str:
    return parseaddr(value.strip())[1].strip()


def _unfold(value: str) -> str:
    return " ".join(value.split())
