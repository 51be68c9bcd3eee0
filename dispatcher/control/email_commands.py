"""The control commands of email: submit one, show one, cancel or resend one, the
relay's summary."""

from __future__ import annotations

import msgspec

from dispatcher import schemas
from dispatcher.control.protocol import (
    JSON,
    Args,
    IdArgs,
    NoArgs,
    callbacks_json,
    command,
    emails_json,
)
from dispatcher.core.channel import Channel
from dispatcher.core.emails import Email
from dispatcher.core.model import Lane
from dispatcher.schemas import email_fields, email_view_of
from dispatcher.service import Dispatcher, EmailRequest


def email_json(e: Email) -> JSON:
    built: JSON = msgspec.to_builtins(schemas.EmailOut(**email_fields(e)))
    return built


class EmailArgs(Args, frozen=True):
    from_: str
    to: str
    subject: str
    text: str
    html: str | None = None
    priority: schemas.Priority = "automation"
    idempotency_key: str | None = None
    status_callback: str | None = None
    fields: dict[str, object] | None = None  # with them, the parts are templates
    track_opens: bool | None = None  # None: the [email] switch's
    track_clicks: bool | None = None


@command(
    "email_submit",
    EmailArgs,
    "send an email: from, to, subject, text, html, priority, fields, status_callback, "
    "track_opens, track_clicks, ...",
)
async def _email_submit(d: Dispatcher, a: EmailArgs) -> JSON:
    submission = await d.submit_email(
        EmailRequest(sender=a.from_, recipient=a.to, subject=a.subject, text=a.text,
                     html=a.html, lane=Lane.parse(a.priority),
                     idempotency_key=a.idempotency_key, fields=a.fields,
                     track_opens=a.track_opens, track_clicks=a.track_clicks),
        status_callback=a.status_callback,
    )  # fmt: skip
    return {**email_json(submission.email), "created": submission.created}


@command("email_show", IdArgs, "one email: its statuses, and why it is in its state")
async def _email_show(d: Dispatcher, a: IdArgs) -> JSON:
    built: JSON = msgspec.to_builtins(email_view_of(await d.email(a.id)))
    return {**built, "callbacks": await callbacks_json(d, Channel.EMAIL, a.id)}


@command("email_cancel", IdArgs, "cancel a Queued or Unconfirmed email")
async def _email_cancel(d: Dispatcher, a: IdArgs) -> JSON:
    return email_json(await d.cancel_email(a.id))


@command("email_resend", IdArgs, "send an Unconfirmed email again (it may arrive twice)")
async def _email_resend(d: Dispatcher, a: IdArgs) -> JSON:
    return email_json(await d.resend_email(a.id))


@command("email_status", NoArgs, "the relay: emails by status, its queue and next slot")
async def _email_status(d: Dispatcher, _: NoArgs) -> JSON:
    return emails_json(d.email_summary())
