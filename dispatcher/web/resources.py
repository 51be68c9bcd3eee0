"""The ``/v1`` handlers for reading, listing and cancelling texts and calls, the Do Not
Text list and the metrics, with their routes (:data:`ROUTES`, part of the route table
:data:`dispatcher.web.api.API`).

- ``GET /v1/messages`` and ``GET /v1/calls``: the texts or calls matching the filters
  (``to``, ``from``, ``status``, ``campaign``, ``since``, ``until``), newest first,
  ``limit`` a page (default 50, at most 500), the next page from ``cursor`` (the
  ``next_cursor`` of the page before).
- ``DELETE /v1/messages/{id}`` and ``DELETE /v1/calls/{id}``: cancel a text or call
  still waiting (200 with it), 409 once its sending has started.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from dispatcher import schemas
from dispatcher.core.channel import Channel
from dispatcher.schemas import (
    Answer,
    Operation,
    call_fields,
    call_view_of,
    callbacks_out,
    event_of,
)
from dispatcher.service import call_status_url
from dispatcher.web.answers import answer
from dispatcher.web.api_base import ApiBase
from dispatcher.web.models import (
    CallPage,
    CallQuery,
    MessageDetail,
    MessageOut,
    MessagePage,
    MessageQuery,
    given,
    message_fields,
    read_query,
    status_callback_url,
)


class ResourceRoutes(ApiBase):
    """The handlers (a part of :class:`~dispatcher.web.api.Api`)."""

    async def _message_detail(self, message_id: str) -> MessageDetail:
        view = await self._dispatcher.message(message_id)
        m = view.message
        sent = await self._dispatcher.status_callbacks(Channel.TEXT, m.id)
        return MessageDetail(
            **message_fields(m), history=[event_of(e) for e in view.history],
            explanation=view.explanation, provider_sid=m.provider_id,
            status_callback_url=status_callback_url(self._public_url, m.id),
            callbacks=callbacks_out(sent),
        )  # fmt: skip

    async def _call_detail(self, call_id: str) -> schemas.CallDetail:
        view = await self._dispatcher.call(call_id)
        sent = await self._dispatcher.status_callbacks(Channel.VOICE, view.call.id)
        return schemas.CallDetail(
            **msgspec.structs.asdict(call_view_of(view)), provider_sid=view.call.provider_id,
            status_callback_url=call_status_url(self._public_url, view.call.id),
            callbacks=callbacks_out(sent),
        )  # fmt: skip

    async def list_messages(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        q = read_query(request.query, MessageQuery)
        page = await self._dispatcher.list_messages(
            to=given(q.to), sender=given(q.from_), status=given(q.status),
            campaign=given(q.campaign), since=given(q.since), until=given(q.until),
            limit=q.limit, cursor=given(q.cursor),
        )  # fmt: skip
        return answer(MessagePage(
            messages=[MessageOut(**message_fields(m)) for m in page.items],
            next_cursor=page.next_cursor,
        ))  # fmt: skip

    async def list_calls(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        q = read_query(request.query, CallQuery)
        page = await self._dispatcher.list_calls(
            to=given(q.to), sender=given(q.from_), status=given(q.status),
            campaign=given(q.campaign), since=given(q.since), until=given(q.until),
            limit=q.limit, cursor=given(q.cursor),
        )  # fmt: skip
        return answer(CallPage(
            calls=[schemas.CallOut(**call_fields(c)) for c in page.items],
            next_cursor=page.next_cursor,
        ))  # fmt: skip

    async def get_message(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        return answer(await self._message_detail(request.match_info["message_id"]))

    async def cancel_message(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        message_id = request.match_info["message_id"]
        await self._dispatcher.cancel(message_id)
        return answer(await self._message_detail(message_id))

    async def get_call(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        return answer(await self._call_detail(request.match_info["call_id"]))

    async def cancel_call(self, request: web.Request) -> web.StreamResponse:
        self._authorised(request)
        call_id = request.match_info["call_id"]
        await self._dispatcher.cancel_call(call_id)
        return answer(await self._call_detail(call_id))


_LISTED = {
    400: Answer("a filter is not valid (the error names the query parameter)"),
}

MESSAGE_ROUTES = [
    Operation(method="GET", path="/v1/messages", handler="list_messages",
              summary="The texts (sent and received) matching the filters, newest first, "
                      "a page at a time",
              query=MessageQuery,
              answers={200: Answer("a page of texts", MessagePage), **_LISTED}),
    Operation(method="GET", path="/v1/messages/{message_id}", handler="get_message",
              summary="A text: every field, its history and explanation",
              answers={200: Answer("the text", MessageDetail), 404: Answer("no such text")}),
    Operation(method="DELETE", path="/v1/messages/{message_id}", handler="cancel_message",
              summary="Cancel a text still waiting (Pending or Queued): it ends Unsent",
              answers={200: Answer("cancelled (or cancelled before): the text", MessageDetail),
                       404: Answer("no such text"),
                       409: Answer("its sending has started, or it has ended")}),
]  # fmt: skip
"""The text routes of the table, after ``POST /v1/messages``."""

CALL_ROUTES = [
    Operation(method="GET", path="/v1/calls", handler="list_calls",
              summary="The calls matching the filters, newest first, a page at a time",
              query=CallQuery, answers={200: Answer("a page of calls", CallPage), **_LISTED}),
    Operation(method="GET", path="/v1/calls/{call_id}", handler="get_call",
              summary="A call's status, history (statuses and steps) and explanation",
              answers={200: Answer("the call", schemas.CallDetail), 404: Answer("no such call")}),
    Operation(method="DELETE", path="/v1/calls/{call_id}", handler="cancel_call",
              summary="Cancel a call still queued: it ends Canceled",
              answers={200: Answer("cancelled (or cancelled before): the call",
                                   schemas.CallDetail),
                       404: Answer("no such call"),
                       409: Answer("it has been placed, or it has ended")}),
]  # fmt: skip
"""The call routes of the table, after ``POST /v1/calls``."""
