"""The ``/v1/consent`` handlers: the consent ledger of texts, calls and email, with
their routes (:data:`ROUTES`, part of the route table :data:`dispatcher.web.api.API`;
the models are in :mod:`dispatcher.consent_schemas`).

- ``GET /v1/consent``: the opt-outs in force (``channel``, ``limit``).
- ``POST /v1/consent`` (``{"contact", "action", "channels", "sender", "campaign",
  "reason"}``): record an opt-out (or an opt-in) on each channel; 201 with the entries.
- ``GET /v1/consent/{contact}``: the contact's opt-outs in force on each channel
  (``channel``), and whether it has any (``listed``).
- ``GET /v1/consent/{contact}/history``: every entry of the contact, in order.
- ``DELETE /v1/consent/{contact}`` (``channel``, ``sender``, ``campaign``): take back
  the opt-outs in force (an opt-in); 200 with the entries, 404 when none was in force.

Entries recorded here name ``api`` as who asked, with the source ``operator``.
"""

from __future__ import annotations

from aiohttp import web
from msgspec import UnsetType

from dispatcher.consent_schemas import (
    ChannelName,
    ChannelQuery,
    ConsentCheck,
    ConsentEntries,
    ConsentQuery,
    NewConsent,
    RemoveQuery,
    channels_of,
    check_out,
    entries_out,
)
from dispatcher.core.channel import Channel
from dispatcher.core.consent import ConsentSource, channel_of
from dispatcher.errors import NotFound
from dispatcher.schemas import Answer, Operation
from dispatcher.web.answers import answer
from dispatcher.web.api_base import ApiBase
from dispatcher.web.models import given, read_query

WHO = "api"
"""Who recorded an entry through the API, as the ledger says."""


def _plus(value: str | None) -> str | None:
    """A number's ``+`` sent unencoded in a query arrives as a space: read it as ``+``."""
    return "+" + value[1:] if value and value[:1] == " " else value


def _channel(name: ChannelName | UnsetType) -> Channel | None:
    return None if isinstance(name, UnsetType) else channel_of(name)


class ConsentRoutes(ApiBase):
    """The handlers (a part of :class:`~dispatcher.web.api.Api`)."""

    async def consent_list(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        q = read_query(request.query, ConsentQuery)
        channel = _channel(q.channel)
        entries = await self._dispatcher.consent_list(channel=channel, limit=q.limit)
        return answer(entries_out(entries))

    async def consent_add(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, NewConsent)
        record = self._dispatcher.opt_out if body.action == "opt_out" else self._dispatcher.opt_in
        entries = await record(
            body.contact, source=ConsentSource.OPERATOR, who=WHO, reason=body.reason,
            channels=channels_of(body.channels), sender=body.sender, campaign=body.campaign,
        )  # fmt: skip
        return answer(entries_out(entries), status=201)

    async def consent_check(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        q = read_query(request.query, ChannelQuery)
        channel = _channel(q.channel)
        view = await self._dispatcher.consent_check(request.match_info["contact"], channel=channel)
        return answer(check_out(view))

    async def consent_history(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        q = read_query(request.query, ChannelQuery)
        channel = _channel(q.channel)
        contact = request.match_info["contact"]
        return answer(entries_out(await self._dispatcher.consent_history(contact, channel=channel)))

    async def consent_remove(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        q = read_query(request.query, RemoveQuery)
        contact = request.match_info["contact"]
        entries = await self._dispatcher.consent_remove(
            contact, who=WHO, channels=channels_of([c] if (c := given(q.channel)) else None),
            sender=_plus(given(q.sender)), campaign=given(q.campaign),
        )  # fmt: skip
        if not entries:
            raise NotFound(f"{contact} has no opt-out in force to take back")
        return answer(entries_out(entries))


_CONTACT = {400: Answer("not a phone number or email address, or a parameter is not valid "
                        "(the error names it)")}  # fmt: skip

ROUTES = [
    Operation(method="GET", path="/v1/consent", handler="consent_list",
              summary="The opt-outs in force (text, voice and email)", query=ConsentQuery,
              answers={200: Answer("the opt-outs, earliest first", ConsentEntries),
                       400: Answer("a parameter is not valid (the error names it)")}),
    Operation(method="POST", path="/v1/consent", handler="consent_add",
              summary="Record an opt-out (or an opt-in) of a contact", body=NewConsent,
              answers={201: Answer("recorded: one entry per channel", ConsentEntries),
                       400: Answer("invalid (the error names the field)")}),
    Operation(method="GET", path="/v1/consent/{contact}", handler="consent_check",
              summary="A contact's opt-outs in force on each channel", query=ChannelQuery,
              answers={200: Answer("the opt-outs (listed says whether there is one)",
                                   ConsentCheck), **_CONTACT}),
    Operation(method="GET", path="/v1/consent/{contact}/history", handler="consent_history",
              summary="Every entry of a contact, in the order recorded", query=ChannelQuery,
              answers={200: Answer("the entries", ConsentEntries), **_CONTACT}),
    Operation(method="DELETE", path="/v1/consent/{contact}", handler="consent_remove",
              summary="Take back a contact's opt-outs in force (an opt-in)", query=RemoveQuery,
              answers={200: Answer("taken back: the opt-ins recorded", ConsentEntries),
                       404: Answer("no opt-out was in force"), **_CONTACT}),
]  # fmt: skip
"""The consent routes of the table."""
