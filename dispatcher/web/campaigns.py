"""The ``/v1`` handlers of campaigns, with their models and routes (:data:`ROUTES`,
part of the route table :data:`dispatcher.web.api.API`).

- ``GET /v1/campaigns``: every campaign, newest first, with its progress;
  ``GET /v1/campaigns/{id}``: one campaign.
- ``POST /v1/campaigns/{id}/pause``, ``.../resume`` (also launches a draft) and
  ``.../cancel``: 200 with the campaign, 409 when its state does not allow it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from aiohttp import web
from msgspec import Meta

from dispatcher.schemas import Answer, Model, Operation, Timestamp, ts
from dispatcher.service import CampaignView, Dispatcher
from dispatcher.web.answers import answer
from dispatcher.web.models import read_query


class ImportOut(Model, frozen=True):
    """How far the import of the contacts file has come."""

    bytes_read: int
    bytes_total: int
    rows: int
    done: bool
    error: str | None


class CampaignOut(Model, frozen=True):
    """A campaign: what it sends, from which numbers and when, and how far it is."""

    id: str
    name: str
    state: Annotated[str, Meta(description="importing, draft, running, paused, canceled, "
                               "finished or failed")]  # fmt: skip
    channel: Annotated[str, Meta(description="text, or voice (a call running a script)")]
    template: str
    from_: list[str]
    send_window: str
    outside_window: str
    validity_seconds: float
    start_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp
    accepted: int
    rejected: int
    duplicates: int
    suppressed: int
    segments: int
    projected_finish: Timestamp | None
    contacts: Annotated[dict[str, int], Meta(description="the contacts in each state")]
    total: int
    done: Annotated[int, Meta(description="the contacts settled: sent, expired, cancelled")]
    import_: ImportOut | None


class CampaignList(Model, frozen=True):
    """The campaigns, newest first."""

    campaigns: list[CampaignOut]


class CampaignQuery(Model, frozen=True):
    """``GET /v1/campaigns``."""

    limit: Annotated[int, Meta(ge=1, le=1000, description="at most this many (1 to 1,000)")] = 100


def campaign_out(view: CampaignView) -> CampaignOut:
    c, progress = view.campaign, view.progress
    importing = progress is not None and not progress.done
    return CampaignOut(
        id=c.id, name=c.name, state=c.state.value, channel=c.channel.value,
        template=c.template, from_=list(c.senders), send_window=c.send_window,
        outside_window=c.outside_window.value, validity_seconds=c.validity.total_seconds(),
        start_at=ts(c.start_at, timespec="seconds"),
        created_at=ts(c.created_at, timespec="seconds") or "",
        updated_at=ts(c.updated_at, timespec="seconds") or "",
        accepted=progress.accepted if progress and importing else c.accepted,
        rejected=progress.rejected if progress and importing else c.rejected,
        duplicates=progress.duplicates if progress and importing else c.duplicates,
        suppressed=progress.suppressed if progress and importing else c.suppressed,
        segments=c.segments, projected_finish=ts(c.projected_finish, timespec="seconds"),
        contacts={state.value: n for state, n in sorted(view.contacts.items())},
        total=view.total, done=view.settled,
        import_=None if progress is None else ImportOut(
            bytes_read=progress.bytes_read, bytes_total=progress.bytes_total,
            rows=progress.rows, done=progress.done, error=progress.error),
    )  # fmt: skip


class CampaignRoutes:
    """The handlers (a part of :class:`~dispatcher.web.api.Api`)."""

    _dispatcher: Dispatcher

    if TYPE_CHECKING:  # the Api's: the bearer token

        def _authorised(self, request: web.Request) -> None: ...

    async def campaigns(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        limit = read_query(request.query, CampaignQuery).limit
        views = await self._dispatcher.campaign_list(limit)
        return answer(CampaignList(campaigns=[campaign_out(v) for v in views]))

    async def get_campaign(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        return answer(campaign_out(await self._dispatcher.campaign(_id(request))))

    async def pause_campaign(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        return answer(campaign_out(await self._dispatcher.pause_campaign(_id(request))))

    async def resume_campaign(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        return answer(campaign_out(await self._dispatcher.resume_campaign(_id(request))))

    async def cancel_campaign(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        return answer(campaign_out(await self._dispatcher.cancel_campaign(_id(request))))


def _id(request: web.Request) -> str:
    return request.match_info["campaign_id"]


_ONE = {404: Answer("no such campaign")}
_CHANGE = {**_ONE, 409: Answer("its state does not allow it (the error says which do)")}
_PATH = "/v1/campaigns/{campaign_id}"

ROUTES = [
    Operation(method="GET", path="/v1/campaigns", handler="campaigns",
              summary="Every campaign, newest first, with its progress", query=CampaignQuery,
              answers={200: Answer("the campaigns", CampaignList),
                       400: Answer("the limit is not 1 to 1,000")}),
    Operation(method="GET", path=_PATH, handler="get_campaign",
              summary="A campaign: its import, its contacts by state and its projection",
              answers={200: Answer("the campaign", CampaignOut), **_ONE}),
    Operation(method="POST", path=f"{_PATH}/pause", handler="pause_campaign",
              summary="Pause a running campaign: its queued texts come back, none is sent",
              answers={200: Answer("paused", CampaignOut), **_CHANGE}),
    Operation(method="POST", path=f"{_PATH}/resume", handler="resume_campaign",
              summary="Resume a paused campaign, or launch a draft",
              answers={200: Answer("running", CampaignOut), **_CHANGE}),
    Operation(method="POST", path=f"{_PATH}/cancel", handler="cancel_campaign",
              summary="Cancel a campaign: no contact not yet sent is sent",
              answers={200: Answer("cancelled", CampaignOut), **_CHANGE}),
]  # fmt: skip
"""The campaign routes of the table."""
