"""The typed models of the API's text resources, lists, Do Not Text list and metrics,
and the answers built from the service's values. Like :mod:`dispatcher.schemas` (whose
base, values and OpenAPI writer they use), each model both shapes an answer and
describes it in ``GET /v1/openapi.json``; a query's model also checks the query
parameters as they are read (:func:`read_query`), errors naming the parameter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from msgspec import Meta

from dispatcher.core.model import Message
from dispatcher.schemas import Event, Model, Timestamp, ts

Limit = Annotated[int, Meta(ge=1, le=500, description="how many to answer (1 to 500)")]
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
    status_callback_url: str


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
