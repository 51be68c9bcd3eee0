"""What an operator looks at before and after a campaign sends: the first texts as
the contacts will get them (a preview), one of them sent to a test number, and every
contact with what became of it.

A test send is an ordinary text (or call, or email) to the number (or address) given:
it carries no campaign, so it is in none of the campaign's counts, contacts or metrics.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from dispatcher.core.calls import Call
from dispatcher.core.campaigns import Campaign, CampaignChannel, Contact, ContactState, Template
from dispatcher.core.emails import Email
from dispatcher.core.listing import Page, decode_cursor, page_of
from dispatcher.core.model import Message, check_body
from dispatcher.engine.calls import CallRequest
from dispatcher.engine.campaign_handover import CampaignService, HandOver, attempt_key
from dispatcher.engine.email_types import EmailRequest
from dispatcher.engine.intake import TextRequest
from dispatcher.errors import InvalidInput, NotFound
from dispatcher.store import Store

LIMIT = 1_000_000
"""The most contacts one answer lists."""
PAGE = 10_000
"""The most contacts a page lists (the control socket's and the HTTP API's)."""
CURSOR = "contacts"
"""The kind of a cursor of a campaign's contacts: it carries the line a page ends on."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Rendered:
    """A contact's text as it will be sent (a voice campaign's: the script's name; an
    email campaign's: its email's text part, and its subject)."""

    line: int
    phone: str
    sender: str
    body: str
    segments: int  # a voice or email campaign's: 0
    subject: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TestSend:
    """The text (or call) sent to a test number: its id and status, and what it says."""

    id: str
    status: str
    sender: str
    recipient: str
    body: str
    line: int  # the contact whose text it is


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactReport:
    """A contact, and its current text or call if it has one."""

    contact: Contact
    status: str | None = None
    reason: str | None = None
    item_id: str | None = None
    accepted_at: datetime | None = None  # handed to the send queue
    sent_at: datetime | None = None  # the send (or the call) started
    updated_at: datetime | None = None


class CampaignViews:
    """Previews, test sends and the contacts' report of campaigns."""

    def __init__(self, store: Store, service: CampaignService, hand_over: HandOver) -> None:
        self._store = store
        self._service = service
        self._hand_over = hand_over

    async def preview(
        self, campaign: Campaign, template: Template | None, limit: int
    ) -> list[Rendered]:
        """The texts of the campaign's first ``limit`` contacts, in file order."""
        contacts = await self._store.contacts_in(campaign.id, list(ContactState), limit)
        return [self._rendered(campaign, template, c) for c in contacts]

    async def test(
        self, campaign: Campaign, template: Template | None, to: str, line: int | None
    ) -> TestSend:
        """Send the text of the contact on ``line`` (default: the first) to ``to``,
        from that contact's pool number, outside the campaign."""
        if line is None:
            contacts = await self._store.contacts_in(campaign.id, list(ContactState), 1)
        else:
            contacts = await self._store.contacts_at(campaign.id, [line])
        if not contacts:
            where = "no contact" if line is None else f"no contact on line {line}"
            raise NotFound(f"campaign {campaign.id} has {where} to take a text from")
        rendered = self._rendered(campaign, template, contacts[0])
        if campaign.channel is CampaignChannel.EMAIL:
            email = self._hand_over.email(campaign, contacts[0])
            mailed = await self._service.submit_email(EmailRequest(
                sender=email.sender, recipient=to, subject=email.subject, text=email.text,
                html=email.html, track_opens=campaign.track_opens,
                track_clicks=campaign.track_clicks,
            ))  # fmt: skip
            item: Message | Call | Email = mailed.email
        elif campaign.channel is CampaignChannel.VOICE:
            placed = await self._service.submit_call(
                CallRequest(sender=rendered.sender, recipient=to, script_name=campaign.template)
            )
            item = placed.call
        else:
            sent = await self._service.submit(
                TextRequest(sender=rendered.sender, recipient=to, body=rendered.body)
            )
            item = sent.message
        return TestSend(id=item.id, status=item.status.value, sender=rendered.sender,
                        recipient=item.recipient, body=rendered.body,
                        line=rendered.line)  # fmt: skip

    def _rendered(
        self, campaign: Campaign, template: Template | None, contact: Contact
    ) -> Rendered:
        if campaign.channel is CampaignChannel.EMAIL:
            email = self._hand_over.email(campaign, contact)
            return Rendered(line=contact.line, phone=contact.phone, sender=email.sender,
                            body=email.text, segments=0, subject=email.subject)  # fmt: skip
        if campaign.channel is CampaignChannel.VOICE or template is None:
            return Rendered(line=contact.line, phone=contact.phone, sender=contact.sender,
                            body=campaign.template, segments=0)  # fmt: skip
        body = self._hand_over.body(campaign, template, contact)
        return Rendered(line=contact.line, phone=contact.phone, sender=contact.sender,
                        body=body, segments=check_body(body).segments)  # fmt: skip

    async def page(
        self, campaign: Campaign, states: Collection[ContactState], limit: int,
        cursor: str | None,
    ) -> Page[ContactReport]:  # fmt: skip
        """A page of :meth:`contacts`: the first ``limit`` after the page ``cursor``
        names (None: from the first line)."""
        if not 1 <= limit <= PAGE:
            raise InvalidInput(f"limit: from 1 to {PAGE:,}", field="limit")
        after = 0 if cursor is None else decode_cursor(CURSOR, cursor)
        reports = await self.contacts(campaign, states, limit + 1, after)
        return page_of(reports, limit, CURSOR, lambda r: r.contact.line)

    async def contacts(
        self, campaign: Campaign, states: Collection[ContactState], limit: int, after: int = 0
    ) -> list[ContactReport]:
        """The campaign's contacts in ``states`` (every state when empty), in file order
        from the first line after ``after``, each with its current text or call."""
        if not 1 <= limit <= LIMIT:
            raise InvalidInput(f"limit: from 1 to {LIMIT:,}", field="limit")
        every = states or list(ContactState)
        contacts = await self._store.contacts_in(campaign.id, every, limit, after)
        if campaign.channel is not CampaignChannel.TEXT:
            get = self._store.get_call if campaign.channel is CampaignChannel.VOICE else (
                self._store.get_email)  # fmt: skip
            items = [await get(c.message_id) if c.message_id else None for c in contacts]
            return [_report(c, item) for c, item in zip(contacts, items, strict=True)]
        keys = [attempt_key(campaign, c) for c in contacts if c.message_id]
        texts = await self._store.by_idempotency_keys(keys)
        return [_report(c, texts.get(attempt_key(campaign, c)) if c.message_id else None)
                for c in contacts]  # fmt: skip


def _report(contact: Contact, item: Message | Call | Email | None) -> ContactReport:
    if item is None or item.id != contact.message_id:
        return ContactReport(contact=contact)
    if isinstance(item, Email):
        sent_at = item.sent_at
    else:
        sent_at = item.placed_at if isinstance(item, Call) else item.send_started_at
    return ContactReport(
        contact=contact, status=item.status.value, reason=item.reason, item_id=item.id,
        accepted_at=item.accepted_at, sent_at=sent_at, updated_at=item.updated_at,
    )  # fmt: skip
