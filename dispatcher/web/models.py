"""The typed models of the API's text resources, lists, Do Not Text list and metrics,
and the answers built from the service's values. Like :mod:`dispatcher.schemas` (whose
base, values and OpenAPI writer they use), each model both shapes an answer and
describes it in ``GET /v1/openapi.json``; a query's model also checks the query
parameters as they are read (:func:`read_query`), errors naming the parameter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import UNSET, Meta, UnsetType

from dispatcher import jsonio
from dispatcher.core.calls import CallStatus
from dispatcher.core.listing import DEFAULT_LIMIT
from dispatcher.core.model import Message, TextStatus
from dispatcher.core.wire import Number
from dispatcher.schemas import CallbackOut, CallOut, Event, Model, Timestamp, ts

_Query = TypeVar("_Query", bound=Model)
_T = TypeVar("_T")

Limit = Annotated[int, Meta(ge=1, le=500, description="how many a page holds (1 to 500)")]
Cursor = Annotated[
    str,
    Meta(min_length=1, max_length=100,
         description="the next_cursor of the page before: the page after it"),
]  # fmt: skip
Since = Annotated[
    datetime,
    Meta(tz=True, description="accepted at or after this time (ISO 8601 with its offset)"),
]
Until = Annotated[
    datetime,
    Meta(tz=True, description="accepted before this time (ISO 8601 with its offset)"),
]
Campaign = Annotated[str, Meta(min_length=1, max_length=100, description="a campaign's id")]
NextCursor = Annotated[
    str | None,
    Meta(description="the cursor of the next page (null: this page is the last)"),
]


# -- texts -------------------------------------------------------------------------------


class MessageOut(Model, frozen=True):
    """A text as it stands."""

    id: str
    from_: str
    to: str
    body: str
    segments: int
    status: str
    reason: str | None
    error_code: Annotated[str | None, Meta(description="the provider's error code")]
    priority: str
    campaign_id: str | None
    provider_id: str | None
    trigger: str | None
    created_at: Timestamp
    updated_at: Timestamp
    expires_at: Timestamp


class MessageDetail(MessageOut, frozen=True):
    """``GET /v1/messages/{message_id}``: a text, its history and why it is in its state."""

    history: list[Event]
    explanation: str
    provider_sid: str | None
    status_callback_url: Annotated[
        str, Meta(description="the URL Twilio is given for its status reports")
    ]
    callbacks: Annotated[
        list[CallbackOut],
        Meta(description="each status change for the submission's status_callback, and "
             "its delivery"),
    ]  # fmt: skip


def message_fields(m: Message) -> dict[str, Any]:
    """The fields of :class:`MessageOut` for ``m``."""
    return {
        "id": m.id,
        "from_": m.sender,
        "to": m.recipient,
        "body": m.body,
        "segments": m.segments,
        "status": m.status.value,
        "reason": m.reason,
        "error_code": m.provider_code,
        "priority": m.lane.name.lower(),
        "campaign_id": m.campaign_id,
        "provider_id": m.provider_id,
        "trigger": m.trigger,
        "created_at": ts(m.accepted_at),
        "updated_at": ts(m.updated_at),
        "expires_at": ts(m.expires_at),
    }


def status_callback_url(public_url: str, message_id: str) -> str:
    """The URL Twilio is given for a text's status callbacks."""
    return f"{public_url.rstrip('/')}/twilio/status/{message_id}"


# -- lists -------------------------------------------------------------------------------


class MessageQuery(Model, frozen=True):
    """``GET /v1/messages``: every filter given must match."""

    to: Number | UnsetType = UNSET
    from_: Number | UnsetType = UNSET
    status: TextStatus | UnsetType = UNSET
    campaign: Campaign | UnsetType = UNSET
    since: Since | UnsetType = UNSET
    until: Until | UnsetType = UNSET
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | UnsetType = UNSET


class CallQuery(Model, frozen=True):
    """``GET /v1/calls``: every filter given must match."""

    to: Number | UnsetType = UNSET
    from_: Number | UnsetType = UNSET
    status: CallStatus | UnsetType = UNSET
    campaign: Campaign | UnsetType = UNSET
    since: Since | UnsetType = UNSET
    until: Until | UnsetType = UNSET
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | UnsetType = UNSET


class MessagePage(Model, frozen=True):
    """A page of texts, newest first."""

    messages: list[MessageOut]
    next_cursor: NextCursor


class CallPage(Model, frozen=True):
    """A page of calls, newest first."""

    calls: list[CallOut]
    next_cursor: NextCursor


_NUMBERS = ("to", "from", "number")
_SWITCHES = ("draft", "track_opens", "track_clicks")  # true or false
_INTEGER = re.compile(r"-?[0-9]{1,18}")


def read_query(query: Mapping[str, str], model: type[_Query]) -> _Query:
    """The query parameters, checked against their model: an unknown parameter, or a
    value of the wrong type or out of its range, is refused naming the parameter. A
    number's ``+`` sent unencoded arrives as a space: it is read as the ``+``."""
    raw: dict[str, object] = {name: query[name] for name in query}
    for name in _NUMBERS:
        if isinstance(value := raw.get(name), str) and value[:1] == " ":
            raw[name] = "+" + value[1:]
    if isinstance(limit := raw.get("limit"), str) and _INTEGER.fullmatch(limit):
        raw["limit"] = int(limit)  # the parameters that are not strings (strictly)
    for name in _SWITCHES:
        if isinstance(value := raw.get(name), str) and value in ("true", "false"):
            raw[name] = value == "true"
    try:
        return msgspec.convert(raw, model)
    except msgspec.ValidationError as exc:
        raise jsonio.invalid(exc, model, raw, what="the query", noun="query parameter") from None


def given(value: _T | UnsetType) -> _T | None:
    """A query parameter's value, None when it was not given."""
    return None if isinstance(value, UnsetType) else value
