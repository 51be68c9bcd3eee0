"""The ``/v1`` handlers of the Do Not Text list and the engagement metrics, with their
models and routes (:data:`ROUTES`, part of the route table
:data:`dispatcher.web.api.API`).

- ``GET /v1/dnt``: the list; ``GET /v1/dnt/{number}``: one entry (404 when the number
  is not listed); ``POST /v1/dnt`` (``{"number", "reason"}``): list a number (201, or
  200 with the entry it already had); ``DELETE /v1/dnt/{number}``: take it off (204,
  404 when it was not listed).
- ``GET /v1/metrics``: the engagement counts by channel, with the ``metrics``
  command's filters (``since``, ``until``, ``campaign``, ``sender``, ``automation``)
  and breakdown (``by``).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from aiohttp import web
from msgspec import UNSET, Meta, UnsetType

from dispatcher.core import metrics
from dispatcher.core.model import DntEntry
from dispatcher.core.wire import Number
from dispatcher.errors import NotFound
from dispatcher.schemas import Answer, Model, Operation, Timestamp, ts
from dispatcher.web.answers import answer
from dispatcher.web.api_base import ApiBase
from dispatcher.web.models import given, read_query

ADDED_BY = "api"
"""Who listed a number through the API, as the list's entries say."""


# -- models ------------------------------------------------------------------------------


class NewDnt(Model, frozen=True):
    """A number to put on the Do Not Text list (``POST /v1/dnt``)."""

    number: Number
    reason: Annotated[str, Meta(max_length=500, description="why it is listed")] | None = None


class DntOut(Model, frozen=True):
    """A number on the Do Not Text list, with who listed it, when and why."""

    number: str
    added_at: Timestamp
    added_by: Annotated[str, Meta(description="contact (it replied STOP), api, or the operator")]
    reason: str | None


class DntList(Model, frozen=True):
    """The Do Not Text list, the latest first."""

    entries: list[DntOut]


DntLimit = Annotated[int, Meta(ge=1, le=10_000, description="at most this many (1 to 10,000)")]


class DntQuery(Model, frozen=True):
    """``GET /v1/dnt``."""

    limit: DntLimit = 1000


When = Annotated[
    str,
    Meta(min_length=1, max_length=64,
         description="an ISO 8601 time (UTC when it has no offset), or a duration back from "
         "now: 24h, 7d, 1h30m"),
]  # fmt: skip


Name = Annotated[str, Meta(min_length=1, max_length=200, description="a campaign's id, or "
                           "an automation's name")]  # fmt: skip


SenderFilter = Annotated[
    str,
    Meta(min_length=1, max_length=320,
         description="a sending number (E.164, or national in the default region) for texts "
         "and calls, or an email's From address (with its display name, if it was sent with "
         "one) for email",
         examples=["+15550000001", "shop@example.com"]),
]  # fmt: skip


class MetricsFilter(Model, frozen=True):
    """``GET /v1/metrics``: the ``metrics`` command's filters."""

    since: When | UnsetType = UNSET
    until: When | UnsetType = UNSET
    campaign: Name | UnsetType = UNSET
    sender: SenderFilter | UnsetType = UNSET
    automation: Name | UnsetType = UNSET
    by: Literal["campaign", "sender", "automation"] | UnsetType = UNSET


class ChannelCounts(Model, frozen=True):
    """Each channel's counts (every name, in order) and the rates."""

    voice: dict[str, int]
    text: dict[str, int]
    email: dict[str, int]
    rates: dict[str, float | None]


class MetricsOut(ChannelCounts, frozen=True):
    """The engagement counts by channel, and with ``by`` one breakdown per key."""

    by: str | UnsetType = UNSET
    breakdown: dict[str, ChannelCounts] | UnsetType = UNSET


def dnt_out(entry: DntEntry) -> DntOut:
    return DntOut(number=entry.number, added_at=ts(entry.added_at) or "",
                  added_by=entry.added_by, reason=entry.reason)  # fmt: skip


# -- handlers ----------------------------------------------------------------------------


class DntRoutes(ApiBase):
    """The handlers (a part of :class:`~dispatcher.web.api.Api`)."""

    async def dnt_list(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        limit = read_query(request.query, DntQuery).limit
        entries = await self._dispatcher.dnt_list(limit)
        return answer(DntList(entries=[dnt_out(e) for e in entries]))

    async def dnt_get(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        number = request.match_info["number"]
        entry = await self._dispatcher.dnt_check(number)
        if entry is None:
            raise NotFound(f"{number} is not on the Do Not Text list")
        return answer(dnt_out(entry))

    async def dnt_add(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, NewDnt)
        earlier = await self._dispatcher.dnt_check(body.number)
        if earlier is not None:
            return answer(dnt_out(earlier))
        entry = await self._dispatcher.dnt_add(body.number, added_by=ADDED_BY, reason=body.reason)
        return answer(dnt_out(entry), status=201)

    async def dnt_remove(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        number = request.match_info["number"]
        if not await self._dispatcher.dnt_remove(number):
            raise NotFound(f"{number} is not on the Do Not Text list")
        return web.Response(status=204)

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        f = read_query(request.query, MetricsFilter)
        query, by = metrics.request(
            now=self._dispatcher.clock.now().wall, since=given(f.since), until=given(f.until),
            campaign=given(f.campaign), sender=self._sender(f.sender),
            automation=given(f.automation), by=given(f.by),
        )  # fmt: skip
        result = await self._dispatcher.metrics_report(query, by)
        return answer(msgspec.convert(result, MetricsOut))

    def _sender(self, value: str | UnsetType) -> str | None:
        """The ``sender`` filter as the rows carry it (see :func:`metrics.sender_key`)."""
        if isinstance(value, UnsetType):
            return None
        region = self._dispatcher.config.campaigns.default_region
        return metrics.sender_key(value, field="sender", region=region)


_NUMBER = {400: Answer("not a phone number (the error names it)")}

ROUTES = [
    Operation(method="GET", path="/v1/dnt", handler="dnt_list",
              summary="The Do Not Text list", query=DntQuery,
              answers={200: Answer("the entries", DntList),
                       400: Answer("the limit is not 1 to 10,000")}),
    Operation(method="POST", path="/v1/dnt", handler="dnt_add",
              summary="Put a number on the Do Not Text list: no text is sent to it",
              body=NewDnt, answers={
                  201: Answer("listed", DntOut),
                  200: Answer("it was listed already: its entry as it was", DntOut),
                  400: Answer("invalid (the error names the field)")}),
    Operation(method="GET", path="/v1/dnt/{number}", handler="dnt_get",
              summary="A number's entry on the Do Not Text list",
              answers={200: Answer("listed: the entry", DntOut),
                       404: Answer("the number is not listed"), **_NUMBER}),
    Operation(method="DELETE", path="/v1/dnt/{number}", handler="dnt_remove",
              summary="Take a number off the Do Not Text list",
              answers={204: Answer("taken off"), 404: Answer("the number was not listed"),
                       **_NUMBER}),
    Operation(method="GET", path="/v1/metrics", handler="metrics",
              summary="The engagement counts by channel, as the metrics command gives them",
              query=MetricsFilter,
              answers={200: Answer("the counts (and a breakdown with by)", MetricsOut),
                       400: Answer("a filter is not valid (the error names it)"),
                       404: Answer("no campaign has the id or name given as campaign")}),
]  # fmt: skip
"""The Do Not Text and metrics routes of the table."""
