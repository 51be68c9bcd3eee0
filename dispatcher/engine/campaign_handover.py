"""Handing a campaign's contacts over to the send queue, once each: a contact's text (or
call, or email) carries the idempotency key ``<campaign>:<line>:<attempt>``.

A turn's texts go to the service together, :data:`CHUNK` at a time in one
``submit_many`` each (one read of the keys, one write), in the order given: each pool
number's texts keep their line order. Calls are placed one by one for a number, in
line order, a few numbers at once. Emails are submitted one by one, in the order given,
each filled in for its contact and bulk (it carries List-Unsubscribe).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol

from dispatcher.core.calls import Call
from dispatcher.core.campaigns import (
    VOICE_LINK,
    Campaign,
    CampaignChannel,
    Contact,
    ContactState,
    Status,
    Template,
    Window,
)
from dispatcher.core.email_campaigns import EmailParts, email_parts
from dispatcher.core.emails import Email, EmailContent
from dispatcher.core.model import Lane, Message
from dispatcher.engine.calls import CallRequest, CallSubmission
from dispatcher.engine.campaign_import import VoiceLinks
from dispatcher.engine.email_types import EmailRequest, EmailSubmission
from dispatcher.engine.intake import Submission, TextRequest
from dispatcher.store import Store

CHUNK = 500
"""Texts submitted in one call: one write each, short enough not to hold the loop."""
CALLS_AT_ONCE = 16

Seen = tuple[Status, str | None, datetime | None]
"""A contact's text, call or email as last seen: its status, reason and end of validity."""


class CampaignService(Protocol):
    """What the desk asks of the service (the Dispatcher): queue and withdraw texts."""

    async def submit(self, request: TextRequest) -> Submission: ...

    async def submit_many(self, requests: Sequence[TextRequest]) -> list[Submission]: ...

    async def submit_call(self, request: CallRequest) -> CallSubmission: ...

    async def cancel(self, message_id: str) -> Message: ...

    async def cancel_call(self, call_id: str) -> Call: ...

    async def submit_email(self, request: EmailRequest) -> EmailSubmission: ...

    async def cancel_email(self, email_id: str) -> Email: ...


class HandOver:
    """Submits contacts' texts or calls; answers each contact queued, with its text or
    call as the service answered."""

    def __init__(self, service: CampaignService, store: Store, links: VoiceLinks) -> None:
        self._service = service
        self._store = store
        self._links = links
        self._calls = asyncio.Semaphore(CALLS_AT_ONCE)
        self._parts: dict[str, EmailParts] = {}  # by campaign

    async def __call__(
        self, campaign: Campaign, template: Template | None, contacts: Sequence[Contact],
        window: Window, now: datetime,
    ) -> list[tuple[Contact, Seen]]:  # fmt: skip
        if campaign.channel is CampaignChannel.EMAIL:
            return [await self._email(campaign, c, now) for c in contacts]
        if campaign.channel is CampaignChannel.VOICE or template is None:
            by_sender: dict[str, list[Contact]] = {}
            for contact in contacts:
                by_sender.setdefault(contact.sender, []).append(contact)

            async def place(mine: list[Contact]) -> list[tuple[Contact, Seen]]:  # in line order
                return [await self._call(campaign, c, window, now) for c in mine]

            placed = await asyncio.gather(*(place(mine) for mine in by_sender.values()))
            return [item for mine in placed for item in mine]
        handed: list[tuple[Contact, Seen]] = []
        for first in range(0, len(contacts), CHUNK):
            chunk = contacts[first : first + CHUNK]
            handed += await self._texts(campaign, template, chunk, window, now)
        return handed

    async def _texts(
        self, campaign: Campaign, template: Template, contacts: Sequence[Contact],
        window: Window, now: datetime,
    ) -> list[tuple[Contact, Seen]]:  # fmt: skip
        requests, tokens = [], []
        for contact in contacts:
            token = self._token(campaign, template, contact)
            tokens.append(token)
            requests.append(TextRequest(
                sender=contact.sender, recipient=contact.phone,
                body=self._render(template, contact, token),
                lane=Lane.BULK, idempotency_key=attempt_key(campaign, contact),
                validity=_validity(campaign, contact, window, now), campaign_id=campaign.id,
            ))  # fmt: skip
        submissions = await self._service.submit_many(requests)
        handed: list[tuple[Contact, Seen]] = []
        for contact, token, submission in zip(contacts, tokens, submissions, strict=True):
            message = submission.message
            queued = await self._queued(campaign, contact, message.id, token, now)
            handed.append((queued, (message.status, message.reason, message.expires_at)))
        return handed

    def body(self, campaign: Campaign, template: Template, contact: Contact) -> str:
        """The text of ``contact``'s present attempt, as it is (or will be) sent."""
        return self._render(template, contact, self._token(campaign, template, contact))

    def _token(self, campaign: Campaign, template: Template, contact: Contact) -> str | None:
        """The token of the attempt's voice link, when the template has one."""
        if VOICE_LINK not in template.fields:
            return None
        return self._links.token(campaign.id, contact.line, contact.attempt)

    def _render(self, template: Template, contact: Contact, token: str | None) -> str:
        if token is None:
            return template.render(contact.fields)
        return template.render({**contact.fields, VOICE_LINK: self._links.link(token)})

    def email(self, campaign: Campaign, contact: Contact) -> EmailContent:
        """The email of ``contact``'s present attempt, as it is (or will be) sent."""
        return self._filled(campaign, contact, self._email_token(campaign, contact))

    def _email_token(self, campaign: Campaign, contact: Contact) -> str | None:
        if not self._parts_of(campaign, contact).voice_link:
            return None
        return self._links.token(campaign.id, contact.line, contact.attempt)

    def _parts_of(self, campaign: Campaign, contact: Contact) -> EmailParts:
        """The campaign's parts, with the columns of its contacts file (a contact's
        fields are its row, in column order)."""
        parts = self._parts.get(campaign.id)
        if parts is None:
            parts = self._parts[campaign.id] = email_parts(
                subject=campaign.subject or "", text=campaign.template, html=campaign.html,
                header=list(contact.fields), link=self._links.link("") if
                campaign.voice_message else None,
            )  # fmt: skip
        return parts

    def _filled(self, campaign: Campaign, contact: Contact, token: str | None) -> EmailContent:
        link = self._links.link(token) if token is not None else None
        return self._parts_of(campaign, contact).render(
            sender=contact.sender, recipient=contact.phone, values=contact.fields, link=link
        )

    async def _email(
        self, campaign: Campaign, contact: Contact, now: datetime
    ) -> tuple[Contact, Seen]:
        """Submit ``contact``'s email, filled in (its voice link recorded for it)."""
        token = self._email_token(campaign, contact)
        content = self._filled(campaign, contact, token)
        submitted = await self._service.submit_email(EmailRequest(
            sender=content.sender, recipient=content.recipient, subject=content.subject,
            text=content.text, html=content.html, lane=Lane.BULK,
            idempotency_key=attempt_key(campaign, contact), campaign_id=campaign.id,
            track_opens=campaign.track_opens, track_clicks=campaign.track_clicks,
        ))  # fmt: skip
        email = submitted.email
        queued = await self._queued(campaign, contact, email.id, token, now)
        return queued, (email.status, email.reason, None)

    async def _queued(
        self, campaign: Campaign, contact: Contact, item_id: str, token: str | None,
        now: datetime,
    ) -> Contact:  # fmt: skip
        """``contact`` queued with its text or email ``item_id``, whose voice link (when
        it carries one) is recorded for it: its plays count for that text or email."""
        if token is not None:
            await self._store.add_voice_link(
                token, message_id=item_id, campaign_id=campaign.id,
                message=campaign.voice_message or "", created_at=now,
            )  # fmt: skip
        return replace(contact, state=ContactState.QUEUED, message_id=item_id)

    async def _call(
        self, campaign: Campaign, contact: Contact, window: Window, now: datetime
    ) -> tuple[Contact, Seen]:
        async with self._calls:
            placed = await self._service.submit_call(CallRequest(
                sender=contact.sender, recipient=contact.phone, script_name=campaign.template,
                lane=Lane.BULK, idempotency_key=attempt_key(campaign, contact),
                campaign_id=campaign.id, validity=_validity(campaign, contact, window, now),
            ))  # fmt: skip
        call = placed.call
        queued = replace(contact, state=ContactState.QUEUED, message_id=call.id)
        return queued, (call.status, call.reason, call.expires_at)


def attempt_key(campaign: Campaign, contact: Contact) -> str:
    """The idempotency key of a contact's attempt: its text or call is made once."""
    return f"{campaign.id}:{contact.line}:{contact.attempt}"


def _validity(campaign: Campaign, contact: Contact, window: Window, now: datetime) -> timedelta:
    """Until the contact's window closes, at most the campaign's validity."""
    return min(campaign.validity, window.closes(contact.tz, now) - now)
