"""Handing a campaign's contacts over to the send queue, once each: a contact's text (or
call) carries the idempotency key ``<campaign>:<line>:<attempt>``.

A turn's texts go to the service together, :data:`CHUNK` at a time in one
``submit_many`` each (one read of the keys, one write), in the order given: each pool
number's texts keep their line order. Calls are placed one by one for a number, in
line order, a few numbers at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol

from dispatcher.core.calls import Call, CallStatus
from dispatcher.core.campaigns import (
    VOICE_LINK,
    Campaign,
    CampaignChannel,
    Contact,
    ContactState,
    Template,
    Window,
)
from dispatcher.core.model import Lane, Message, TextStatus
from dispatcher.engine.calls import CallRequest, CallSubmission
from dispatcher.engine.campaign_import import VoiceLinks
from dispatcher.engine.intake import Submission, TextRequest
from dispatcher.store import Store

CHUNK = 500
"""Texts submitted in one call: one write each, short enough not to hold the loop."""
CALLS_AT_ONCE = 16

Seen = tuple[TextStatus | CallStatus, str | None, datetime | None]
"""A contact's text or call as last seen: its status, reason and end of validity."""


class CampaignService(Protocol):
    """What the desk asks of the service (the Dispatcher): queue and withdraw texts."""

    async def submit(self, request: TextRequest) -> Submission: ...

    async def submit_many(self, requests: Sequence[TextRequest]) -> list[Submission]: ...

    async def submit_call(self, request: CallRequest) -> CallSubmission: ...

    async def cancel(self, message_id: str) -> Message: ...

    async def cancel_call(self, call_id: str) -> Call: ...


class HandOver:
    """Submits contacts' texts or calls; answers each contact queued, with its text or
    call as the service answered."""

    def __init__(self, service: CampaignService, store: Store, links: VoiceLinks) -> None:
        self._service = service
        self._store = store
        self._links = links
        self._calls = asyncio.Semaphore(CALLS_AT_ONCE)

    async def __call__(
        self, campaign: Campaign, template: Template | None, contacts: Sequence[Contact],
        window: Window, now: datetime,
    ) -> list[tuple[Contact, Seen]]:  # fmt: skip
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
            if token is not None:
                await self._store.add_voice_link(
                    token, message_id=message.id, campaign_id=campaign.id,
                    message=campaign.voice_message or "", created_at=now,
                )  # fmt: skip
            queued = replace(contact, state=ContactState.QUEUED, message_id=message.id)
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
