"""The typed models of what the HTTP API takes and gives, and the OpenAPI description
generated from them.

Each request body and answer body is a ``msgspec.Struct`` (an automation rule's,
``NewAutomation``, is beside its parser in :mod:`dispatcher.core.rules`; the base
``Model`` and the shared values are in :mod:`dispatcher.core.wire`): msgspec
checks a request against its model as it decodes it (:func:`dispatcher.jsonio.decode`,
errors naming the field), and :func:`openapi` writes the API's description from the
same models, so the two cannot drift. A field's ``Meta`` says what a value must be,
once: the check, the description and the error message all read it.

What a model cannot say is checked by the domain, with its own errors: a number's
length for its country (:func:`dispatcher.core.numbers.e164`), a text's length in
characters (``check_body``), a call script's steps (``dispatcher.core.scripts``). Such
limits are only described here (``extra_json_schema``), never checked twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from dispatcher.core import calls, emails, model
from dispatcher.core.callbacks import Delivery, DeliveryState
from dispatcher.core.wire import Body, Number
from dispatcher.core.wire import Model as Model  # noqa: PLC0414 - the fronts subclass schemas.Model
from dispatcher.jsonio import bounded

if TYPE_CHECKING:
    from dispatcher.engine.calls import CallView as ServiceCallView
    from dispatcher.engine.campaign_views import ContactReport
    from dispatcher.engine.emails import EmailView as ServiceEmailView
    from dispatcher.service.views import NumberView, StatusView, WorkersView


# -- values (the shared ones, ``Number``, ``Written`` and ``Body``, are in core.wire) ---

Priority = Annotated[
    Literal["automation", "bulk"],
    Meta(description="the lane: automation texts go ahead of bulk ones on a number"),
]
Timestamp = Annotated[str, Meta(extra_json_schema={"format": "date-time"})]
CallbackUrl = Annotated[
    str,
    Meta(max_length=2000, description="where each status change is POSTed, signed: an https "
         "URL, or http to a loopback host (docs/api.md, \"Status callbacks\")",
         extra_json_schema={"format": "uri", "examples": ["https://example.com/hooks/dispatcher"]}),
]  # fmt: skip
Id = Annotated[str, Meta(description="the id the service gave it")]
Address = Annotated[
    str,
    Meta(description="an email address like ann@example.com (checked without DNS; no line "
         "breaks)", extra_json_schema={"examples": ["ann@example.com"]}),
]  # fmt: skip
"""An email address; its form is checked by the domain (``dispatcher.core.emails``)."""
TrackOpens = Annotated[
    bool | None,
    Meta(description="this email's open pixel in its HTML part: true or false overrides "
         "the [email] track_opens switch for it (null: the switch's)"),
]  # fmt: skip
TrackClicks = Annotated[
    bool | None,
    Meta(description="its links through the click redirect: true or false overrides the "
         "[email] track_clicks switch for it (null: the switch's)"),
]  # fmt: skip
Sender = Annotated[
    str,
    Meta(description="an email address, with an optional display name: Acme Shop "
         "<shop@example.com> (checked without DNS; no line breaks)",
         extra_json_schema={"examples": ["Acme Shop <shop@example.com>"]}),
]  # fmt: skip


# -- requests ----------------------------------------------------------------------------


class NewText(Model, frozen=True):
    """A text to send (``POST /v1/messages``)."""

    from_: Number
    to: Number
    body: Body
    priority: Priority = "automation"
    status_callback: CallbackUrl | None = None


class NewCall(Model, frozen=True):
    """A call to place (``POST /v1/calls``)."""

    from_: Number
    to: Number
    script: Annotated[
        list[Any] | str,
        Meta(
            description="the steps of the call (say, play, pause, gather, record, dial, "
            "conference, notify, voicemail_drop, play_drop, activity), or the name of a "
            "configured script",
            extra_json_schema={
                "oneOf": [
                    {"type": "array", "minItems": 1, "maxItems": 100,
                     "items": {"type": "object"},
                     "examples": [[{"say": "Hello from dispatcher."}]]},
                    {"type": "string", "minLength": 1},
                ]
            },
        ),
    ]  # fmt: skip
    priority: Priority = "automation"
    status_callback: CallbackUrl | None = None

    def __post_init__(self) -> None:
        if not bounded(self.script):  # untyped: held to standard JSON here
            raise ValueError("an integer in the script is too large")


class NewEmail(Model, frozen=True):
    """An email to send (``POST /v1/emails``)."""

    from_: Sender
    to: Address
    subject: Annotated[
        str,
        Meta(
            description="one line: no CR or LF (1 to 998 characters)",
            extra_json_schema={"minLength": 1, "maxLength": 998},
        ),
    ]
    text: Annotated[
        str,
        Meta(
            description="the plain-text part (1 to 50,000 characters)",
            extra_json_schema={"minLength": 1, "maxLength": 50_000},
        ),
    ]
    html: Annotated[
        str | None,
        Meta(
            description="an HTML part (at most 50,000 characters), sent with the text part as "
            "multipart/alternative"
        ),
    ] = None
    priority: Annotated[
        Literal["automation", "bulk"],
        Meta(description="the lane: automation email goes ahead of bulk email on a relay; "
             "bulk email carries List-Unsubscribe"),
    ] = "automation"  # fmt: skip
    status_callback: CallbackUrl | None = None
    track_opens: TrackOpens = None
    track_clicks: TrackClicks = None
    # Values are checked by the domain, which names the field whose value is not text.
    fields: Annotated[
        dict[str, str | int | float | bool | None] | None,
        Meta(description="per-contact fields (text values): with them, subject, text and "
             "html are jinja2 templates ({{ first_name }}) filled at submission, the HTML "
             "autoescaped; a field a template uses and this lacks is refused (docs/email.md)",
             examples=[{"first_name": "Ann", "order": "A-1042"}]),
    ] = None  # fmt: skip


# -- answers -----------------------------------------------------------------------------


class Event(Model, frozen=True, kw_only=True):
    """One time-stamped step of a history; a call's also names its result and step."""

    status: str | None
    result: str | UnsetType | None = UNSET
    step: int | UnsetType | None = UNSET
    at: Timestamp
    reason: str | None
    provider_code: str | None
    source: str
    applied: bool
    detail: str | None


class Accepted(Model, frozen=True):
    """A text or call accepted (201), or the one an earlier request with the same
    Idempotency-Key made (200)."""

    id: Id
    status: str
    reason: str | None


class CallOut(Model, frozen=True):
    """A call as it stands."""

    id: Id
    status: str
    reason: str | None
    from_: str
    to: str
    script_name: str | None
    script: list[Any]
    priority: str
    answered_by: str | None
    script_done: bool
    accepted_at: Timestamp
    placed_at: Timestamp | None
    updated_at: Timestamp
    provider_id: str | None
    provider_code: str | None
    trigger: str | None


class CallView(CallOut, frozen=True):
    """A call with its history (statuses and every step it ran) and explanation."""

    history: list[Event]
    explanation: str


class AttemptOut(Model, frozen=True):
    """One POST of a status callback: the receiver's HTTP status, or the error."""

    at: Timestamp
    status_code: int | None
    error: str | None


class CallbackOut(Model, frozen=True):
    """One status change for the submission's ``status_callback``, and its delivery."""

    sequence: int
    status: str
    url: str
    state: Annotated[str, Meta(description="pending, delivered or given up")]
    next_attempt_at: Annotated[Timestamp | None, Meta(description="when pending")]
    attempts: list[AttemptOut]


class CallDetail(CallView, frozen=True):
    """``GET /v1/calls/{call_id}``: the call, its provider id, the URL the carrier is
    given for its status reports, and the deliveries of its ``status_callback``."""

    provider_sid: str | None
    status_callback_url: str
    callbacks: list[CallbackOut]


class EmailOut(Model, frozen=True):
    """An email as it stands."""

    id: Id
    status: str
    reason: str | None
    from_: str
    to: str
    subject: str
    html: bool  # it has an HTML part
    priority: str
    relay: str
    accepted_at: Timestamp
    sent_at: Timestamp | None
    updated_at: Timestamp
    provider_id: str | None
    provider_code: str | None
    trigger: str | None
    track_opens: TrackOpens
    track_clicks: TrackClicks


class EmailView(EmailOut, frozen=True):
    """An email with its history and explanation."""

    history: list[Event]
    explanation: str


class EmailDetail(EmailView, frozen=True):
    """``GET /v1/emails/{email_id}``: an email with its history, explanation and the
    deliveries of its ``status_callback``."""

    callbacks: list[CallbackOut]


class RuleOut(Model, frozen=True):
    """An automation rule, and where it comes from (the file or the API)."""

    name: str
    on: str
    do: str
    delay_seconds: float
    when: dict[str, str]
    script: str | None
    body: str | None
    from_: str | None
    source: Literal["file", "api"]
    to: str | None = None  # an email rule's: None, the triggering email's address
    subject: str | None = None  # an email rule's templates
    text: str | None = None
    html: str | None = None
    track_opens: TrackOpens = None
    track_clicks: TrackClicks = None


class RunOut(Model, frozen=True):
    """One run of a rule: a result it matched, and the engagement it made."""

    rule: str
    source_id: str
    result: str
    due_at: Timestamp
    state: str
    engagement_id: str | None
    detail: str | None


class Automations(Model, frozen=True):
    """The rules (the file's and the API's) and the latest runs."""

    automations: list[RuleOut]
    runs: list[RunOut]


class ErrorDetail(Model, frozen=True):
    code: str
    message: str
    field: str | UnsetType = UNSET


class Error(Model, frozen=True):
    """Every refusal: a stable code, a sentence, and the field at fault if one is."""

    error: ErrorDetail


# -- the OpenAPI description -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer of a route; a refusal's (4xx, 5xx) body is :class:`Error`."""

    description: str
    body: type[Model] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    """One route of the API: what it takes, what it answers, and the handler (a method
    of the web app) that serves it."""

    method: str
    path: str
    handler: str
    summary: str
    body: type[Model] | None = None
    query: type[Model] | None = None  # its query parameters, one field each
    upload: str | None = None  # the media type of a body taken as a file (text/csv)
    # (with a body too: either is taken, and the query's parameters go with the file)
    answers: Mapping[int, Answer] = field(default_factory=dict)
    idempotency_key: bool = False


_COMMON = {
    401: Answer("no valid bearer token"),
    503: Answer("the store refuses writes for now (a full disk): try again after "
                "Retry-After seconds"),
}  # fmt: skip
_WITH_BODY = {
    413: Answer("the body is over 64 KiB"),
    415: Answer("the body is not sent as application/json"),
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "the same key returns the same engagement and never sends twice",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
_REF = "#/components/schemas/{name}"
_PARAMETER = re.compile(r"{(\w+)}")


def openapi(operations: Sequence[Operation], *, title: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 description of ``operations``, every schema from its model."""
    models = sorted(
        {Error} | {m for op in operations for m in (op.body, *_bodies(op)) if m is not None},
        key=lambda m: m.__name__,
    )
    _, components = msgspec.json.schema_components(models, ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        parameters: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PARAMETER.findall(op.path)
        ]
        if op.query is not None:  # with a JSON body as well, they go with the file only
            parameters.extend(_query_parameters(op.query, required=op.body is None))
        if op.idempotency_key:
            parameters.append(_KEY)
        entry: dict[str, Any] = {"summary": op.summary, "operationId": op.handler}
        if parameters:
            entry["parameters"] = parameters
        content = _json(op.body) if op.body is not None else {}
        if op.upload is not None:
            content[op.upload] = {"schema": {"type": "string", "contentMediaType": op.upload}}
        if content:
            entry["requestBody"] = {"required": True, "content": content}
        entry["responses"] = {
            str(status): _response(status, answer)
            for status, answer in sorted(_answers(op).items())
        }
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": components,
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }


def _query_parameters(model: type[Model], *, required: bool = True) -> list[dict[str, Any]]:
    """The query parameters a model's fields describe (an enum's schema written in);
    none required unless ``required``."""
    defs = msgspec.json.schema(model)["$defs"]
    described = defs[model.__name__]
    needed = set(described.get("required", ())) if required else set()
    return [
        {"name": name, "in": "query", "required": name in needed,
         "schema": defs[value["$ref"].rpartition("/")[2]] if "$ref" in value else value}
        for name, value in described["properties"].items()
    ]  # fmt: skip


def _answers(op: Operation) -> dict[int, Answer]:
    with_body = op.body is not None or op.upload is not None
    return {**_COMMON, **(_WITH_BODY if with_body else {}), **op.answers}


def _bodies(op: Operation) -> list[type[Model] | None]:
    return [a.body for a in _answers(op).values()]


def _json(model: type[Model]) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _REF.format(name=model.__name__)}}}


def _response(status: int, answer: Answer) -> dict[str, Any]:
    response: dict[str, Any] = {"description": answer.description}
    body = answer.body or (Error if status >= 400 else None)
    if body is not None:
        response["content"] = _json(body)
    if status == 503:
        response["headers"] = _RETRY_AFTER
    return response


# -- answers built from the service's values (the socket and the HTTP app alike) ----


def ts(at: datetime | None, *, timespec: str = "microseconds") -> str | None:
    """A time as the answers write it: ISO 8601 (with microseconds, unless a campaign's
    times, which are whole seconds)."""
    return at.isoformat(timespec=timespec) if at else None


def event_of(e: model.Event | calls.CallEvent | emails.EmailEvent) -> Event:
    """One step of a text's, call's or email's history, as answered."""
    extra: dict[str, Any] = {}
    if isinstance(e, calls.CallEvent):
        extra = {"result": e.result.value if e.result else None, "step": e.step}
    elif isinstance(e, emails.EmailEvent):
        extra = {"result": e.result.value if e.result else None}
    return Event(
        status=e.status.value if e.status else None, **extra, at=ts(e.at) or "",
        reason=e.reason, provider_code=e.provider_code, source=e.source.value,
        applied=e.applied, detail=e.detail,
    )  # fmt: skip


class NumberOut(Model, frozen=True):
    """A sending number: its queue, its next slot, and who holds it."""

    number: str
    depth: Annotated[int, Meta(description="texts queued on it")]
    next_slot_at: Timestamp | None
    in_flight: int
    paused: bool
    rate: Annotated[float, Meta(description="texts per second it sends at most")]
    sent_last_minute: Annotated[int, Meta(description="sends this service started in 60 s")]
    owner: Annotated[str | None, Meta(
        description="on PostgreSQL, the worker holding its lease (null: none; always null "
                    "on SQLite, where the service holds every number)")]  # fmt: skip


class NumbersOut(Model, frozen=True):
    """The sending numbers with the deepest queues (or the one asked for)."""

    at: Timestamp
    shared: Annotated[bool, Meta(description="the store is shared by workers: owners shown")]
    numbers_total: Annotated[int, Meta(description="every sending number the service knows")]
    numbers: list[NumberOut]


def number_of(n: NumberView) -> NumberOut:
    return NumberOut(number=n.number, depth=n.depth, next_slot_at=ts(n.next_slot_at),
                     in_flight=n.in_flight, paused=n.paused, rate=n.rate,
                     sent_last_minute=n.sent_last_minute, owner=n.owner)  # fmt: skip


def numbers_of(view: StatusView) -> NumbersOut:
    return NumbersOut(at=ts(view.at) or "", shared=view.shared, numbers_total=view.numbers_total,
                      numbers=[number_of(n) for n in view.numbers])  # fmt: skip


class LeaderOut(Model, frozen=True):
    """The service that holds the database's guard, as it said who it is."""

    host: str
    pid: int
    home: str
    started_at: Timestamp


class WorkerOut(Model, frozen=True):
    """A service (worker) sending from the store."""

    id: str
    address: Annotated[str | None, Meta(description="where its HTTP app listens, if it said")]
    started_at: Timestamp
    heartbeat_age_seconds: Annotated[float, Meta(description="since its last heartbeat")]
    live: Annotated[bool, Meta(description="its last heartbeat is within one lease")]
    keys: Annotated[int, Meta(description="the sending numbers it holds under a lease")]
    sent_last_minute: Annotated[
        int, Meta(description="texts whose send started in the last 60 s from those numbers")
    ]
    leads: Annotated[bool, Meta(description="it holds the database's guard")]


class WorkersOut(Model, frozen=True):
    """The services sending from the store: on PostgreSQL, every worker registered on
    the database (the same answer from any of them); on SQLite, this service alone
    (``shared`` false), the only worker."""

    at: Timestamp
    shared: Annotated[bool, Meta(description="the store is shared by workers (PostgreSQL)")]
    lease_seconds: Annotated[
        float | None, Meta(description="a worker is live while its heartbeat is younger")
    ]
    leader: LeaderOut | None
    workers: list[WorkerOut]


def workers_of(view: WorkersView) -> WorkersOut:
    """The view across workers, as answered."""
    leader = None
    if (held := view.leader) is not None:
        leader = LeaderOut(host=held.host, pid=held.pid, home=held.home,
                           started_at=ts(held.started_at) or "")  # fmt: skip
    return WorkersOut(
        at=ts(view.at) or "", shared=view.shared, lease_seconds=view.lease_seconds,
        leader=leader, workers=[
            WorkerOut(id=w.id, address=w.address, started_at=ts(w.started_at) or "",
                      heartbeat_age_seconds=round(w.heartbeat_age, 3), live=w.live,
                      keys=w.keys, sent_last_minute=w.sent_last_minute, leads=w.leads)
            for w in view.workers],
    )  # fmt: skip


def call_view_of(view: ServiceCallView) -> CallView:
    """A call with its history and explanation, as answered."""
    return CallView(
        **call_fields(view.call),
        history=[event_of(e) for e in view.history],
        explanation=view.explanation,
    )


def call_fields(c: calls.Call) -> dict[str, Any]:
    """The fields of :class:`CallOut` for ``c``."""
    return {
        "id": c.id,
        "status": c.status.value,
        "reason": c.reason,
        "from_": c.sender,
        "to": c.recipient,
        "script_name": c.script_name,
        "script": json.loads(c.script),
        "priority": c.lane.name.lower(),
        "answered_by": c.answered_by,
        "script_done": c.script_done,
        "accepted_at": ts(c.accepted_at),
        "placed_at": ts(c.placed_at),
        "updated_at": ts(c.updated_at),
        "provider_id": c.provider_id,
        "provider_code": c.provider_code,
        "trigger": c.trigger,
    }


class ContactOut(Model, frozen=True):
    """A campaign's contact and its present text (or call)."""

    line: Annotated[int, Meta(description="its line in the contacts file")]
    phone: Annotated[str, Meta(description="its number (an email campaign's contact: its "
                               "email address)")]  # fmt: skip
    from_: Annotated[str, Meta(description="its pool number (or From address)")]
    state: Annotated[str, Meta(description="pending, queued, sent, expired, canceled or "
                               "no_window")]  # fmt: skip
    attempt: int
    id: Annotated[str | None, Meta(description="its present text's (or call's) id")]
    status: str | None
    reason: str | None
    accepted_at: Annotated[Timestamp | None, Meta(description="handed to the send queue")]
    sent_at: Annotated[Timestamp | None, Meta(description="its sending (or call) started")]
    updated_at: Timestamp | None


def contact_out(r: ContactReport) -> ContactOut:
    """A contact and its present text (or call), as answered."""
    c = r.contact
    return ContactOut(
        line=c.line, phone=c.phone, from_=c.sender, state=c.state.value, attempt=c.attempt,
        id=r.item_id, status=r.status, reason=r.reason, accepted_at=ts(r.accepted_at),
        sent_at=ts(r.sent_at), updated_at=ts(r.updated_at),
    )  # fmt: skip


def callbacks_out(deliveries: Sequence[Delivery]) -> list[CallbackOut]:
    """The deliveries of a status callback, as answered."""
    return [
        CallbackOut(
            sequence=d.seq, status=d.status, url=d.url, state=d.state.value,
            next_attempt_at=ts(d.next_at) if d.state is DeliveryState.PENDING else None,
            attempts=[AttemptOut(at=a.at.isoformat(timespec="microseconds"),
                                 status_code=a.status_code, error=a.error)
                      for a in d.attempts],
        )
        for d in deliveries
    ]  # fmt: skip


def email_view_of(view: ServiceEmailView) -> EmailView:
    """An email with its history and explanation, as answered."""
    return EmailView(
        **email_fields(view.email),
        history=[event_of(e) for e in view.history],
        explanation=view.explanation,
    )


def email_fields(e: emails.Email) -> dict[str, Any]:
    """The fields of :class:`EmailOut` for ``e``."""
    return {
        "id": e.id,
        "status": e.status.value,
        "reason": e.reason,
        "from_": e.sender,
        "to": e.recipient,
        "subject": e.subject,
        "html": e.html is not None,
        "priority": e.lane.name.lower(),
        "relay": e.relay,
        "accepted_at": ts(e.accepted_at),
        "sent_at": ts(e.sent_at),
        "updated_at": ts(e.updated_at),
        "provider_id": e.provider_id,
        "provider_code": e.provider_code,
        "trigger": e.trigger,
        "track_opens": e.track_opens,
        "track_clicks": e.track_clicks,
    }
