"""The ``/v1`` handlers of campaigns, with their models and routes (:data:`ROUTES`,
part of the route table :data:`dispatcher.web.api.API`).

- ``GET /v1/campaigns``: every campaign, newest first, with its progress;
  ``GET /v1/campaigns/{id}``: one campaign.
- ``POST /v1/campaigns``: create a campaign from a CSV of contacts sent as the body
  (``text/csv``, up to 50 MiB, kept in the home folder's ``uploads``), its settings as
  query parameters; or from a JSON body of its settings and contacts (up to 20 MiB,
  written as a contacts file there: :mod:`dispatcher.web.campaign_contacts`); the
  import runs on (follow it with ``GET``).
- ``GET /v1/campaigns/{id}/contacts``: its contacts in file order (``state``, ``limit``
  a page, the next page from ``cursor``), each with its present text or call.
- ``POST /v1/campaigns/{id}/pause``, ``.../resume`` (also launches a draft) and
  ``.../cancel``: 200 with the campaign, 409 when its state does not allow it.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime
from pathlib import Path
from typing import Annotated, BinaryIO, Literal

import msgspec
from aiohttp import StreamReader, web
from msgspec import UNSET, Meta, UnsetType

from dispatcher import jsonio
from dispatcher.core.campaigns import ContactState
from dispatcher.core.durations import parse_duration
from dispatcher.core.emails import MAX_PART, MAX_SUBJECT
from dispatcher.core.listing import DEFAULT_LIMIT
from dispatcher.errors import InvalidInput
from dispatcher.schemas import Answer, ContactOut, Model, Operation, Timestamp, contact_out, ts
from dispatcher.service import CampaignSpec, CampaignView
from dispatcher.web.answers import answer, is_json, refusal, too_large
from dispatcher.web.api_base import ApiBase
from dispatcher.web.campaign_contacts import (
    EMAIL,
    MAX_CONTACTS,
    MAX_JSON,
    PHONE,
    Contacts,
    check_contacts,
    read_json,
    write_contacts,
)
from dispatcher.web.models import Cursor, Limit, NextCursor, given, read_query

MAX_UPLOAD = 50 * 1024 * 1024
"""The largest contacts file ``POST /v1/campaigns`` takes, in bytes."""
UPLOADS = "uploads"
"""The home folder's folder of the contacts files sent over HTTP."""


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
    channel: Annotated[str, Meta(description="text, voice (a call running a script) or email")]
    template: str
    subject: str | None
    html: str | None
    track_opens: Annotated[bool | None, Meta(description="an email campaign's own open "
                           "tracking (null: the [email] track_opens switch's)")]  # fmt: skip
    track_clicks: Annotated[bool | None, Meta(description="an email campaign's own click "
                            "tracking (null: the [email] track_clicks switch's)")]  # fmt: skip
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
    held: Annotated[
        int,
        Meta(description="the contacts waiting for their send window to open (a running "
             "campaign's, as last worked out; 0 otherwise)"),
    ]  # fmt: skip
    held_until: Annotated[
        Timestamp | None,
        Meta(description="when the first held contact's window opens (null: none held)"),
    ]
    import_: ImportOut | None


class CampaignList(Model, frozen=True):
    """The campaigns, newest first."""

    campaigns: list[CampaignOut]


class CampaignQuery(Model, frozen=True):
    """``GET /v1/campaigns``."""

    limit: Annotated[int, Meta(ge=1, le=1000, description="at most this many (1 to 1,000)")] = 100


class ContactsQuery(Model, frozen=True):
    """``GET /v1/campaigns/{campaign_id}/contacts``."""

    state: ContactState | UnsetType = UNSET
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | UnsetType = UNSET


class ContactPage(Model, frozen=True):
    """A page of a campaign's contacts, in file order."""

    contacts: list[ContactOut]
    next_cursor: NextCursor


Text = Annotated[str, Meta(min_length=1, max_length=2000)]
MAX_TEMPLATE = 2000  # a text's template or a call script's name (an email's text: MAX_PART)


class NewCampaign(Model, frozen=True):
    """``POST /v1/campaigns``: the settings of ``dispatcher campaign create``, as query
    parameters; the contacts file is the body."""

    name: Annotated[str, Meta(min_length=1, max_length=200, description="the campaign's name")]
    template: Annotated[
        str,
        Meta(min_length=1, max_length=MAX_PART,
             description="the text, with {column} fields (or a voice campaign's script, "
                         "up to 2,000 characters; or an email campaign's text part, with "
                         "{{ column }} fields, up to 50,000)"),
    ]  # fmt: skip
    from_: Annotated[
        str,
        Meta(min_length=1, max_length=2000,
             description="the pool: E.164 numbers (an email campaign's From addresses) "
                         "separated by commas"),
    ]  # fmt: skip
    channel: Literal["text", "voice", "email"] = "text"
    start_at: Annotated[datetime, Meta(tz=True, description="not before (ISO 8601, offset)")] | (
        UnsetType
    ) = UNSET
    send_window: Text | UnsetType = UNSET
    outside_window: Literal["hold", "expire"] = "hold"
    validity: Annotated[str, Meta(min_length=1, max_length=20, description="a duration: 10h")] | (
        UnsetType
    ) = UNSET
    phone_column: Annotated[str, Meta(min_length=1, max_length=200)] = "phone"
    tz_column: Annotated[str, Meta(min_length=1, max_length=200)] | UnsetType = UNSET
    draft: bool = False
    voice_message: Text | UnsetType = UNSET
    subject: Annotated[str, Meta(min_length=1, max_length=MAX_SUBJECT,
                                 description="an email campaign's subject")] | (
        UnsetType
    ) = UNSET  # fmt: skip
    html: Annotated[str, Meta(min_length=1, max_length=MAX_PART,
                              description="an email campaign's HTML part")] | (
        UnsetType
    ) = UNSET  # fmt: skip
    email_column: Annotated[str, Meta(min_length=1, max_length=200)] = "email"
    time_zone: Annotated[str, Meta(min_length=1, max_length=200,
                                   description="of a contact without one (IANA)")] | (
        UnsetType
    ) = UNSET  # fmt: skip
    track_opens: Annotated[
        bool,
        Meta(description="an email campaign's emails: the open pixel (true) or none (false); "
             "not given: the [email] track_opens switch's"),
    ] | UnsetType = UNSET  # fmt: skip
    track_clicks: Annotated[
        bool,
        Meta(description="an email campaign's emails: links through the click redirect "
             "(true) or as written (false); not given: the [email] track_clicks switch's"),
    ] | UnsetType = UNSET  # fmt: skip


class NewCampaignContacts(NewCampaign, frozen=True, kw_only=True):
    """``POST /v1/campaigns`` with a JSON body: the settings of ``dispatcher campaign
    create`` and the contacts (see :mod:`dispatcher.web.campaign_contacts`; each with
    its ``phone``, an email campaign's with its ``email``); the columns of a CSV
    (``phone_column``, ``email_column``, ``tz_column``) are not taken."""

    contacts: Contacts


def campaign_out(view: CampaignView) -> CampaignOut:
    c, progress = view.campaign, view.progress
    importing = progress is not None and not progress.done
    return CampaignOut(
        id=c.id, name=c.name, state=c.state.value, channel=c.channel.value,
        template=c.template, subject=c.subject, html=c.html, track_opens=c.track_opens,
        track_clicks=c.track_clicks, from_=list(c.senders),
        send_window=c.send_window,
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
        held=view.outlook.held if view.outlook else 0,
        held_until=ts(view.outlook.held_until if view.outlook else None, timespec="seconds"),
        import_=None if progress is None else ImportOut(
            bytes_read=progress.bytes_read, bytes_total=progress.bytes_total,
            rows=progress.rows, done=progress.done, error=progress.error),
    )  # fmt: skip


def _template(q: NewCampaign) -> str:
    """The template: an email campaign's text part may be as long as an email's."""
    if q.channel != "email" and len(q.template) > MAX_TEMPLATE:
        raise InvalidInput(f"template: at most {MAX_TEMPLATE:,} characters in a {q.channel} "
                           f"campaign, not {len(q.template):,}", field="template")  # fmt: skip
    return q.template


class CampaignRoutes(ApiBase):
    """The handlers (a part of :class:`~dispatcher.web.api.Api`)."""

    async def campaigns(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        limit = read_query(request.query, CampaignQuery).limit
        views = await self._dispatcher.campaign_list(limit)
        return answer(CampaignList(campaigns=[campaign_out(v) for v in views]))

    async def create_campaign(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        q, path = await self._new_campaign(request)
        try:
            spec = CampaignSpec(
                name=q.name, contacts=path, template=_template(q),
                senders=[s.strip() for s in q.from_.split(",") if s.strip()],
                channel=q.channel, start_at=given(q.start_at), send_window=given(q.send_window),
                outside_window=q.outside_window,
                validity=None if isinstance(q.validity, UnsetType)
                else parse_duration(q.validity, field="validity"),
                phone_column=q.phone_column, tz_column=given(q.tz_column), draft=q.draft,
                voice_message=given(q.voice_message), subject=given(q.subject),
                html=given(q.html), email_column=q.email_column, time_zone=given(q.time_zone),
                track_opens=given(q.track_opens), track_clicks=given(q.track_clicks),
            )  # fmt: skip
            campaign = await self._dispatcher.create_campaign(spec)
        except InvalidInput as exc:
            path.unlink(missing_ok=True)  # refused: its file is not kept
            if exc.field != "text":
                raise
            # an email campaign's text part is its template here
            raise InvalidInput(f"template: {str(exc).removeprefix('text: ')}",
                               field="template") from None  # fmt: skip
        except BaseException:
            path.unlink(missing_ok=True)  # refused: its file is not kept
            raise
        return answer(campaign_out(await self._dispatcher.campaign(campaign.id)), status=201)

    async def _new_campaign(self, request: web.Request) -> tuple[NewCampaign, Path]:
        """A new campaign's settings and contacts file: a CSV body with the settings as
        query parameters, or a JSON body of both (its contacts written as a file)."""
        uploads = self._dispatcher.config.home / UPLOADS
        if is_json(request.content_type):
            return await self._json_campaign(request, uploads)
        q = read_query(request.query, NewCampaign)
        if request.content_type not in ("text/csv", "text/plain"):
            raise refusal(
                web.HTTPUnsupportedMediaType, "unsupported_media_type",
                f"send the contacts file as the body, with Content-Type: text/csv, or the "
                f"campaign as JSON, with Content-Type: application/json "
                f"(not {request.content_type})",
            )  # fmt: skip
        return q, await _receive(request, uploads)

    async def _json_campaign(
        self, request: web.Request, uploads: Path
    ) -> tuple[NewCampaignContacts, Path]:
        """The campaign of a JSON body: checked whole, its contacts each by its index,
        before they are written as the rows of a contacts file."""
        if name := next(iter(request.query), None):
            raise InvalidInput(f"{name}: with a JSON body the campaign's settings are in "
                               "the body, not in the query", field=name)  # fmt: skip
        raw = await read_json(request)
        body = await asyncio.to_thread(jsonio.decode, raw, NewCampaignContacts,
                                       what="the request body")  # fmt: skip
        csv_columns = {"phone_column": body.phone_column != PHONE,
                       "email_column": body.email_column != EMAIL,
                       "tz_column": not isinstance(body.tz_column, UnsetType)}  # fmt: skip
        for name in (name for name, given_as in csv_columns.items() if given_as):
            raise InvalidInput(f"{name}: names a column of a CSV body; a JSON body's contacts "
                               "give their phone (or email) and time_zone",
                               field=name)  # fmt: skip
        region = self._dispatcher.config.campaigns.default_region
        email = body.channel == "email"
        await asyncio.to_thread(check_contacts, body.contacts, region, email=email)
        path = await asyncio.to_thread(_upload_path, uploads)
        try:
            zones = await asyncio.to_thread(write_contacts, body.contacts, path, email=email)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return msgspec.structs.replace(body, tz_column=UNSET if zones is None else zones), path

    async def get_campaign(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        return answer(campaign_out(await self._dispatcher.campaign(_id(request))))

    async def campaign_contacts(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        q = read_query(request.query, ContactsQuery)
        states = [] if isinstance(q.state, UnsetType) else [q.state]
        page = await self._dispatcher.campaign_report(_id(request), states, q.limit,
                                                      given(q.cursor))  # fmt: skip
        return answer(ContactPage(contacts=[contact_out(r) for r in page.items],
                                  next_cursor=page.next_cursor))  # fmt: skip

    async def pause_campaign(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        return answer(campaign_out(await self._dispatcher.pause_campaign(_id(request))))

    async def resume_campaign(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        return answer(campaign_out(await self._dispatcher.resume_campaign(_id(request))))

    async def cancel_campaign(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        return answer(campaign_out(await self._dispatcher.cancel_campaign(_id(request))))


def _upload_path(folder: Path) -> Path:
    """A new contacts file's path in ``folder`` (made if need be)."""
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"contacts-{secrets.token_hex(8)}.csv"


async def _receive(request: web.Request, folder: Path) -> Path:
    """The body, streamed into a new file of ``folder`` (written off the event loop);
    over MAX_UPLOAD bytes it is refused (413) and nothing is kept."""
    path = await asyncio.to_thread(_upload_path, folder)
    file = await asyncio.to_thread(path.open, "xb")
    try:
        with file:
            size = await _copy(request.content, file)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size > MAX_UPLOAD:
        path.unlink(missing_ok=True)
        raise too_large("the contacts file", MAX_UPLOAD, size)
    return path


async def _copy(body: StreamReader, file: BinaryIO) -> int:
    """Copy ``body`` into ``file`` until its end, or until it is over MAX_UPLOAD bytes;
    the bytes read."""
    size = 0
    async for chunk in body.iter_chunked(1 << 16):
        size += len(chunk)
        if size > MAX_UPLOAD:
            break
        await asyncio.to_thread(file.write, chunk)
    return size


def _id(request: web.Request) -> str:
    return request.match_info["campaign_id"]


_ONE = {404: Answer("no such campaign")}
_CHANGE = {**_ONE, 409: Answer("its state does not allow it (the error says which do)")}
_PATH = "/v1/campaigns/{campaign_id}"

ROUTES = [
    Operation(method="POST", path="/v1/campaigns", handler="create_campaign",
              summary="Create a campaign from a CSV of contacts (the body; the settings "
                      "as query parameters) or from JSON (its settings and contacts), and "
                      "start importing it", query=NewCampaign, upload="text/csv",
              body=NewCampaignContacts,
              answers={201: Answer("created: its import runs on", CampaignOut),
                       400: Answer("invalid: a setting, the file's header, the template's "
                                   "fields, the pool, a JSON body's contact (the error names "
                                   "it: contacts[3].phone, contacts[3].email)"),
                       413: Answer(f"the CSV body is over {MAX_UPLOAD // 2**20} MiB, the "
                                   f"JSON body over {MAX_JSON // 2**20} MiB (or its contacts "
                                   f"over {MAX_CONTACTS:,}: 400)"),
                       415: Answer("the body is sent neither as text/csv nor as "
                                   "application/json")}),
    Operation(method="GET", path="/v1/campaigns", handler="campaigns",
              summary="Every campaign, newest first, with its progress", query=CampaignQuery,
              answers={200: Answer("the campaigns", CampaignList),
                       400: Answer("the limit is not 1 to 1,000")}),
    Operation(method="GET", path=_PATH, handler="get_campaign",
              summary="A campaign: its import, its contacts by state and its projection",
              answers={200: Answer("the campaign", CampaignOut), **_ONE}),
    Operation(method="GET", path=f"{_PATH}/contacts", handler="campaign_contacts",
              summary="A campaign's contacts in file order, each with its present text's (or "
                      "call's) status, reason and times, a page at a time",
              query=ContactsQuery,
              answers={200: Answer("a page of contacts", ContactPage),
                       400: Answer("a filter is not valid (the error names the query "
                                   "parameter)"), **_ONE}),
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
