"""The control commands of campaigns: create, list, show, pause, resume, cancel; the
preview of the first texts, a test send, and the contacts' report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from dispatcher.control.protocol import JSON, Args, IdArgs, LimitArgs, command
from dispatcher.core.campaigns import ContactState
from dispatcher.core.durations import parse_duration
from dispatcher.errors import InvalidInput
from dispatcher.schemas import contact_out, ts
from dispatcher.service import CampaignSpec, CampaignView, Dispatcher


def campaign_json(view: CampaignView) -> JSON:
    c = view.campaign
    progress = view.progress
    contacts = {state.value: n for state, n in sorted(view.contacts.items())}
    return {
        "id": c.id,
        "name": c.name,
        "state": c.state.value,
        "channel": c.channel,
        "template": c.template,
        "subject": c.subject,
        "html": c.html,
        "track_opens": c.track_opens,
        "track_clicks": c.track_clicks,
        "from": list(c.senders),
        "send_window": c.send_window,
        "outside_window": c.outside_window.value,
        "validity_seconds": c.validity.total_seconds(),
        "start_at": ts(c.start_at, timespec="seconds"),
        "created_at": ts(c.created_at, timespec="seconds"),
        "updated_at": ts(c.updated_at, timespec="seconds"),
        "source": c.source,
        "accepted": progress.accepted if progress and not progress.done else c.accepted,
        "rejected": progress.rejected if progress and not progress.done else c.rejected,
        "duplicates": progress.duplicates if progress and not progress.done else c.duplicates,
        "suppressed": progress.suppressed if progress and not progress.done else c.suppressed,
        "reject_file": c.reject_file,
        "segments": c.segments,
        "projected_finish": ts(c.projected_finish, timespec="seconds"),
        "contacts": contacts,
        "total": view.total,
        "done": view.settled,
        "pending": contacts.get("pending", 0),
        "queued": contacts.get("queued", 0),
        "held": view.outlook.held if view.outlook else 0,
        "held_until": ts(view.outlook.held_until if view.outlook else None, timespec="seconds"),
        "no_window": contacts.get("no_window", 0),
        "import": None if progress is None else {
            "bytes_read": progress.bytes_read, "bytes_total": progress.bytes_total,
            "rows": progress.rows, "done": progress.done, "error": progress.error,
        },
    }  # fmt: skip


@dataclass(frozen=True, slots=True)
class CreateArgs:
    name: str
    contacts: str
    template: str
    from_: list[Any] | str
    channel: str = "text"
    start_at: str | None = None
    send_window: str | None = None
    outside_window: str = "hold"
    validity: str | None = None
    phone_column: str = "phone"
    tz_column: str | None = None
    draft: bool = False
    voice_message: str | None = None
    subject: str | None = None
    html: str | None = None
    email_column: str = "email"
    time_zone: str | None = None
    track_opens: bool | None = None  # an email campaign's: None, the [email] switch's
    track_clicks: bool | None = None


def _spec(a: CreateArgs) -> CampaignSpec:
    senders = a.from_ if isinstance(a.from_, list) else a.from_.split(",")
    if not all(isinstance(s, str) for s in senders):
        raise InvalidInput("from: a list of numbers (or an email campaign's addresses)",
                           field="from")  # fmt: skip
    start_at = None
    if a.start_at:
        try:
            start_at = datetime.fromisoformat(a.start_at)
        except ValueError:
            raise InvalidInput(f"start_at: {a.start_at!r} is not an ISO 8601 time like "
                               "2026-11-24T09:00:00+00:00", field="start_at") from None  # fmt: skip
        if start_at.tzinfo is None:
            raise InvalidInput("start_at: give the time with its offset (e.g. +00:00)",
                               field="start_at")  # fmt: skip
    path = Path(a.contacts)
    if not path.is_absolute():
        raise InvalidInput("contacts: give the file's absolute path", field="contacts")
    return CampaignSpec(
        name=a.name, contacts=path, template=a.template,
        senders=[s.strip() for s in senders if s.strip()], channel=a.channel,
        start_at=start_at, send_window=a.send_window, outside_window=a.outside_window,
        validity=parse_duration(a.validity, field="validity") if a.validity else None,
        phone_column=a.phone_column, tz_column=a.tz_column, draft=a.draft,
        voice_message=a.voice_message, subject=a.subject, html=a.html,
        email_column=a.email_column, time_zone=a.time_zone, track_opens=a.track_opens,
        track_clicks=a.track_clicks,
    )  # fmt: skip


@command("campaign_create", CreateArgs, "create a campaign from a CSV of contacts; imports it")
async def _create(d: Dispatcher, a: CreateArgs) -> JSON:
    campaign = await d.create_campaign(_spec(a))
    return campaign_json(await d.campaign(campaign.id))


@command("campaigns", LimitArgs, "every campaign, newest first, with its progress")
async def _list(d: Dispatcher, a: LimitArgs) -> JSON:
    return {"campaigns": [campaign_json(v) for v in await d.campaign_list(a.limit)]}


@command("campaign_show", IdArgs, "one campaign: its import, contacts by state, projection")
async def _show(d: Dispatcher, a: IdArgs) -> JSON:
    return campaign_json(await d.campaign(a.id))


@command("campaign_pause", IdArgs, "pause a running campaign (its queued texts come back)")
async def _pause(d: Dispatcher, a: IdArgs) -> JSON:
    return campaign_json(await d.pause_campaign(a.id))


@command("campaign_resume", IdArgs, "resume a paused campaign, or launch a draft")
async def _resume(d: Dispatcher, a: IdArgs) -> JSON:
    return campaign_json(await d.resume_campaign(a.id))


@command("campaign_cancel", IdArgs, "cancel a campaign: no contact not yet sent is sent")
async def _cancel(d: Dispatcher, a: IdArgs) -> JSON:
    return campaign_json(await d.cancel_campaign(a.id))


class PreviewArgs(Args, frozen=True):
    id: str
    limit: Annotated[int, Meta(ge=1, le=100)] = 3


@command("campaign_preview", PreviewArgs, "the first contacts' texts, as they will be sent")
async def _preview(d: Dispatcher, a: PreviewArgs) -> JSON:
    texts = await d.campaign_preview(a.id, a.limit)
    return {"texts": [{"line": t.line, "to": t.phone, "from": t.sender, "body": t.body,
                       "segments": t.segments, "subject": t.subject}
                      for t in texts]}  # fmt: skip


class TestArgs(Args, frozen=True):
    id: str
    to: str
    line: Annotated[int, Meta(ge=1)] | None = None


@command("campaign_test", TestArgs, "send one contact's text to a test number, outside the counts")
async def _test(d: Dispatcher, a: TestArgs) -> JSON:
    sent = await d.campaign_test(a.id, a.to, a.line)
    return {"id": sent.id, "status": sent.status, "from": sent.sender, "to": sent.recipient,
            "body": sent.body, "line": sent.line}  # fmt: skip


State = Literal["pending", "queued", "sent", "expired", "canceled", "no_window"]


class ContactsArgs(Args, frozen=True):
    id: str
    states: tuple[State, ...] = ()
    limit: Annotated[int, Meta(ge=1, le=10_000)] = 10_000
    cursor: Annotated[str, Meta(min_length=1, max_length=100)] | None = None


@command("campaign_contacts", ContactsArgs,
         "a page of contacts, each with its state, text status and times")  # fmt: skip
async def _contacts(d: Dispatcher, a: ContactsArgs) -> JSON:
    states = [ContactState(s) for s in a.states]
    page = await d.campaign_report(a.id, states, a.limit, a.cursor)
    contacts = [msgspec.to_builtins(contact_out(r)) for r in page.items]
    return {"contacts": contacts, "next_cursor": page.next_cursor}
