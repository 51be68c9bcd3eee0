"""Reports as mail servers send them, built with the standard library to their RFCs:
delivery status notifications (RFC 3464) and feedback reports (RFC 5965)."""

from __future__ import annotations

from email.message import Message
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32

DOMAIN = "mail.example.com"


def original(email_id: str, *, to: str = "ann@example.com", domain: str = DOMAIN) -> Message:
    """The headers of the email a report is about, as it left."""
    message = MIMEText("Hi Ann,\n", "plain", "utf-8")
    message["From"] = "shop@example.com"
    message["To"] = to
    message["Subject"] = "Your order"
    message["Message-ID"] = f"<{email_id}@{domain}>"
    return message


def dsn(
    *,
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str | None = "smtp; 550 5.1.1 <ann@example.com>: user unknown",
    recipient: str = "ann@example.com",
    about: Message | None = None,
    headers_only: bool = False,
    to: str = "bounce@example.net",
) -> bytes:
    """A delivery status notification: a human part, the ``message/delivery-status``
    part (the message's block, then the recipient's) and the original message (whole,
    or its headers as ``text/rfc822-headers``)."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = "MAILER-DAEMON@mx.example.org"
    report["To"] = to
    report["Subject"] = "Delivery Status Notification"
    report.attach(MIMEText(f"Your message to {recipient}: {action} {status}.\n"))
    fields = [f"Final-Recipient: rfc822; {recipient}", f"Action: {action}",
              f"Status: {status}", "Remote-MTA: dns; mx.example.org"]  # fmt: skip
    if diagnostic is not None:
        fields.append(f"Diagnostic-Code: {diagnostic}")
    status_part = MIMEBase("message", "delivery-status")
    for block in (["Reporting-MTA: dns; mx.example.org",
                   "Arrival-Date: Wed, 2 Dec 2026 10:00:00 +0000"], fields):  # fmt: skip
        status_part.attach(_block(block))
    report.attach(status_part)
    if about is not None:
        report.attach(_quoted(about, headers_only=headers_only))
    return report.as_bytes(policy=compat32.clone(linesep="\r\n"))


def arf(
    *,
    about: Message | None,
    original_mail_from: str | None = None,
    feedback_type: str = "abuse",
    headers_only: bool = False,
) -> bytes:
    """A feedback report (ARF): a human part, the ``message/feedback-report`` part and
    the original message."""
    report = MIMEMultipart("report", report_type="feedback-report")
    report["From"] = "fbl@isp.example.org"
    report["To"] = f"fbl@{DOMAIN}"
    report["Subject"] = "FW: Your order"
    report.attach(MIMEText("This is an email abuse report.\n"))
    fields = [f"Feedback-Type: {feedback_type}", "User-Agent: ExampleFBL/1.0", "Version: 1"]
    if original_mail_from is not None:
        fields.append(f"Original-Mail-From: <{original_mail_from}>")
    fields.append("Original-Rcpt-To: <ann@example.com>")
    feedback = MIMEBase("message", "feedback-report")
    feedback.attach(_block(fields))
    report.attach(feedback)
    if about is not None:
        report.attach(_quoted(about, headers_only=headers_only))
    return report.as_bytes(policy=compat32.clone(linesep="\r\n"))


def _block(fields: list[str]) -> Message:
    """A block of report fields: a message of headers only."""
    block = Message()
    for line in fields:
        name, _, value = line.partition(": ")
        block[name] = value
    return block


def _quoted(about: Message, *, headers_only: bool) -> Message:
    if not headers_only:
        return MIMEMessage(about)
    headers = "".join(f"{k}: {v}\n" for k, v in about.items())
    return MIMEText(headers, "rfc822-headers")
