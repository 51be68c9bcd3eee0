"""The control protocol: JSON lines over a Unix socket, typed, dispatched by registry.

A request is one line: ``{"cmd": "status", "args": {...}, "id": 7}`` (``args`` and
``id`` optional). The answer is one line: ``{"id": 7, "ok": true, "result": ...}``
or ``{"id": 7, "ok": false, "error": {"code": "not_found", "message": "..."}}``.
Each command declares its arguments as a typed model (a ``msgspec.Struct``); msgspec
reads them straight from the line and checks them before the handler runs, so a bad
request gets an error that names the argument.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from dispatcher import jsonio, schemas
from dispatcher.core import metrics, report
from dispatcher.core.calls import Call, CallEvent
from dispatcher.core.channel import Channel
from dispatcher.core.model import DntEntry, Event, Lane, Message
from dispatcher.errors import InvalidInput
from dispatcher.schemas import call_fields, call_view_of, event_of, ts
from dispatcher.service import (
    CallRequest,
    CallsSummary,
    CallView,
    Dispatcher,
    EmailsSummary,
    MessageView,
    NumberView,
    StatusView,
    StoreFault,
    TextRequest,
    WorkersView,
)

JSON = dict[str, Any]
Handler = Callable[[Dispatcher, Any], Awaitable[JSON]]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    args: type[Any]
    handler: Handler
    help: str


REGISTRY: dict[str, Command] = {}


def command(name: str, args: type[Any], help: str) -> Callable[[Handler], Handler]:
    """Register ``handler`` as the control command ``name`` taking ``args``."""

    def register(handler: Handler) -> Handler:
        REGISTRY[name] = Command(name=name, args=args, handler=handler, help=help)
        return handler

    return register


class Request(msgspec.Struct):
    """A request line; ``args`` are read by the command's own model once it is known.
    Other keys are ignored."""

    cmd: Any = None
    id: Any = None
    args: msgspec.Raw = msgspec.Raw(b"null")


def decode_request(line: bytes) -> dict[str, Any]:
    """One request line (standard JSON: see :mod:`dispatcher.jsonio`) as ``cmd``,
    ``id`` and ``args`` (still raw), or a clear InvalidInput."""
    request = jsonio.decode(line, Request, what="the request", unwrap="args")
    if not (jsonio.bounded(request.id) and jsonio.bounded(request.cmd)):
        jsonio.loads(line, what="the request")  # names the integer that is too large
    return {"cmd": request.cmd, "id": request.id, "args": request.args}


def request_fields(request: dict[str, Any]) -> tuple[str, object]:
    """``(cmd, args)`` of a decoded request."""
    cmd = request.get("cmd")
    if not isinstance(cmd, str):
        raise InvalidInput('the request has no "cmd" string', field="cmd")
    return cmd, request.get("args")


def parse_args(cls: type[Any], raw: object) -> Any:
    """The ``cls`` arguments of a request (its raw ``args``, or an object already
    decoded), checking names and types; ``null`` or no ``args`` is no arguments."""
    model = _model_of(cls)
    if isinstance(raw, msgspec.Raw):
        data = bytes(raw)
        args = jsonio.decode(
            b"{}" if data == b"null" else data, model, noun="argument", whole="args"
        )
    else:
        args = jsonio.convert({} if raw is None else raw, model, noun="argument")
    if model is cls:
        return args
    return cls(**msgspec.structs.asdict(args))


def _model_of(cls: type[Any]) -> type[msgspec.Struct]:
    """The model of a command's arguments: ``cls`` itself, or for a dataclass, a model
    with the same fields (its ``__post_init__`` checks then run as it is built)."""
    if issubclass(cls, msgspec.Struct):
        return cls
    if (model := _MODELS.get(cls)) is None:
        model = _MODELS[cls] = _model_of_dataclass(cls)
    return model


_MODELS: dict[type[Any], type[msgspec.Struct]] = {}


def _model_of_dataclass(cls: type[Any]) -> type[msgspec.Struct]:
    hints = typing.get_type_hints(cls, include_extras=True)
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            fields.append((f.name, hints[f.name], f.default))
        elif f.default_factory is not dataclasses.MISSING:
            fields.append((f.name, hints[f.name], msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, hints[f.name]))
    return msgspec.defstruct(cls.__name__, fields, bases=(schemas.Model,))


# -- JSON shapes of the service's values ---------------------------------------------


def message_json(m: Message) -> JSON:
    return {
        "id": m.id,
        "status": m.status.value,
        "reason": m.reason,
        "from": m.sender,
        "to": m.recipient,
        "body": m.body,
        "segments": m.segments,
        "priority": m.lane.name.lower(),
        "accepted_at": ts(m.accepted_at),
        "expires_at": ts(m.expires_at),
        "send_started_at": ts(m.send_started_at),
        "updated_at": ts(m.updated_at),
        "provider_id": m.provider_id,
        "provider_code": m.provider_code,
        "duplicate_of": m.duplicate_of,
    }


def event_json(e: Event | CallEvent) -> JSON:
    """A history entry; a call's also names its result (Say, Prompt, ...) and step."""
    return _builtins(event_of(e))


def _builtins(model: msgspec.Struct) -> JSON:
    built: JSON = msgspec.to_builtins(model)
    return built


def view_json(view: MessageView) -> JSON:
    return {
        **message_json(view.message),
        "history": [event_json(e) for e in view.history],
        "explanation": view.explanation,
    }


def call_json(c: Call) -> JSON:
    return _builtins(schemas.CallOut(**call_fields(c)))


def call_view_json(view: CallView) -> JSON:
    return _builtins(call_view_of(view))


def calls_json(s: CallsSummary) -> JSON:
    return {
        "account": s.account,
        "counts": {status.value: n for status, n in sorted(s.counts.items()) if n},
        "queued": s.queued,
        "in_flight": s.in_flight,
        "next_slot_at": ts(s.next_slot_at),
        "calls_per_second": s.rate,
    }


def emails_json(s: EmailsSummary) -> JSON:
    return {
        "relay": s.relay,
        "counts": {status.value: n for status, n in sorted(s.counts.items())},
        "queued": s.queued,
        "in_flight": s.in_flight,
        "next_slot_at": ts(s.next_slot_at),
        "per_second": s.rate,
    }


def number_json(n: NumberView) -> JSON:
    return _builtins(schemas.number_of(n))


def status_json(view: StatusView) -> JSON:
    return {
        "at": ts(view.at),
        "counts": {status.value: count for status, count in sorted(view.counts.items())},
        "in_flight": view.in_flight,
        "numbers": [number_json(n) for n in view.numbers],
        "numbers_total": view.numbers_total,
        "calls": calls_json(view.calls) if view.calls else None,
        "emails": emails_json(view.emails) if view.emails else None,
        "sent_last_minute": view.sent_last_minute,
        "recent_errors": [
            {
                "id": m.id,
                "number": m.sender,
                "to": m.recipient,
                "status": m.status.value,
                "reason": m.reason,
                "code": m.provider_code,
                "at": ts(m.updated_at),
            }
            for m in view.recent_errors
        ],
        "store": store_fault_json(view.store_fault),
        "shared": view.shared,
    }


def workers_json(view: WorkersView) -> JSON:
    """The services sending from the store (``shared`` false: this one alone)."""
    return _builtins(schemas.workers_of(view))


def store_fault_json(fault: StoreFault | None) -> JSON | None:
    """Why sending is paused and new work refused (None: the store takes writes)."""
    if fault is None:
        return None
    return {"since": ts(fault.since), "error": fault.error, "probes": fault.probes}


def dnt_json(entry: DntEntry) -> JSON:
    return {
        "number": entry.number,
        "added_at": ts(entry.added_at),
        "added_by": entry.added_by,
        "reason": entry.reason,
    }


# -- commands ------------------------------------------------------------------------


class Args(schemas.Model, frozen=True):
    """A command's arguments (``from_`` is ``from`` on the wire)."""


class NoArgs(Args, frozen=True):
    pass


class SubmitArgs(Args, frozen=True):
    from_: str
    to: str
    body: str
    priority: schemas.Priority = "automation"
    idempotency_key: str | None = None
    status_callback: str | None = None


class IdArgs(Args, frozen=True):
    id: str


MAX_LIMIT = 10_000
Limit = Annotated[int, Meta(ge=1, le=MAX_LIMIT, description=f"from 1 to {MAX_LIMIT}")]


class FindArgs(Args, frozen=True):
    to: str
    limit: Limit = 50


class NumberArgs(Args, frozen=True):
    number: str


class DntAddArgs(Args, frozen=True):
    number: str
    reason: str | None = None
    added_by: str = "operator"


class StatusArgs(Args, frozen=True):
    limit: Limit = 100
    number: str | None = None


class LimitArgs(Args, frozen=True):
    limit: Limit = 1000


@command("ping", NoArgs, "check that the service answers")
async def _ping(d: Dispatcher, _: NoArgs) -> JSON:
    return {"pong": True, "at": ts(d.clock.now().wall)}


@command("help", NoArgs, "list the commands")
async def _help(_d: Dispatcher, _: NoArgs) -> JSON:
    return {"commands": {name: c.help for name, c in sorted(REGISTRY.items())}}


@command(
    "submit",
    SubmitArgs,
    "submit a text: from, to, body, priority, idempotency_key, status_callback",
)
async def _submit(d: Dispatcher, a: SubmitArgs) -> JSON:
    lane = Lane.parse(a.priority)
    request = TextRequest(
        sender=a.from_, recipient=a.to, body=a.body, lane=lane, idempotency_key=a.idempotency_key
    )
    submission = await d.submit(request, status_callback=a.status_callback)
    return {**message_json(submission.message), "created": submission.created}


@command("status", StatusArgs, "counts by status; deepest queues: depth, next slot, in flight")
async def _status(d: Dispatcher, a: StatusArgs) -> JSON:
    return status_json(await d.status(limit=a.limit, number=a.number))


@command("workers", NoArgs, "the services sending from the store: heartbeats, numbers, sends")
async def _workers(d: Dispatcher, _: NoArgs) -> JSON:
    return workers_json(await d.workers())


@command("message", IdArgs, "one message: history and why it is in its state")
async def _message(d: Dispatcher, a: IdArgs) -> JSON:
    view = view_json(await d.message(a.id))
    return {**view, "callbacks": await callbacks_json(d, Channel.TEXT, a.id)}


async def callbacks_json(d: Dispatcher, channel: Channel, item_id: str) -> list[JSON]:
    """The deliveries of an item's status callback, each with its attempts."""
    built: list[JSON] = msgspec.to_builtins(
        schemas.callbacks_out(await d.status_callbacks(channel, item_id))
    )
    return built


@command("find", FindArgs, "messages to a recipient, newest first")
async def _find(d: Dispatcher, a: FindArgs) -> JSON:
    return {"messages": [message_json(m) for m in await d.find(a.to, a.limit)]}


@command("cancel", IdArgs, "cancel a message that has not started sending")
async def _cancel(d: Dispatcher, a: IdArgs) -> JSON:
    return message_json(await d.cancel(a.id))


@command("pause", NumberArgs, "stop sending from a number (its queue is kept)")
async def _pause(d: Dispatcher, a: NumberArgs) -> JSON:
    return number_json(await d.pause(a.number))


@command("resume", NumberArgs, "resume sending from a paused number")
async def _resume(d: Dispatcher, a: NumberArgs) -> JSON:
    return number_json(await d.resume(a.number))


@command("dnt_add", DntAddArgs, "put a number on the Do Not Text list")
async def _dnt_add(d: Dispatcher, a: DntAddArgs) -> JSON:
    return dnt_json(await d.dnt_add(a.number, added_by=a.added_by, reason=a.reason))


@command("dnt_remove", NumberArgs, "take a number off the Do Not Text list")
async def _dnt_remove(d: Dispatcher, a: NumberArgs) -> JSON:
    return {"number": a.number, "removed": await d.dnt_remove(a.number)}


@command("dnt_check", NumberArgs, "is a number on the Do Not Text list?")
async def _dnt_check(d: Dispatcher, a: NumberArgs) -> JSON:
    entry = await d.dnt_check(a.number)
    return {"number": a.number, "listed": entry is not None, "entry": entry and dnt_json(entry)}


@command("dnt_list", LimitArgs, "the Do Not Text list")
async def _dnt_list(d: Dispatcher, a: LimitArgs) -> JSON:
    return {"entries": [dnt_json(e) for e in await d.dnt_list(a.limit)]}


class CallArgs(Args, frozen=True):
    from_: str
    to: str
    script: list[Any] | str
    priority: schemas.Priority = "automation"
    idempotency_key: str | None = None
    status_callback: str | None = None

    def __post_init__(self) -> None:
        if not jsonio.bounded(self.script):
            raise ValueError("an integer in the script is too large")


@command("call", CallArgs, "place a call: from, to, script (steps, or a script's name), ...")
async def _call(d: Dispatcher, a: CallArgs) -> JSON:
    lane = Lane.parse(a.priority)
    request = CallRequest(
        sender=a.from_, recipient=a.to, lane=lane, idempotency_key=a.idempotency_key,
        script=a.script if isinstance(a.script, list) else None,
        script_name=a.script if isinstance(a.script, str) else None,
    )  # fmt: skip
    submission = await d.submit_call(request, status_callback=a.status_callback)
    return {**call_json(submission.call), "created": submission.created}


@command("call_show", IdArgs, "one call: its statuses, the steps it ran, and why")
async def _call_show(d: Dispatcher, a: IdArgs) -> JSON:
    view = call_view_json(await d.call(a.id))
    return {**view, "callbacks": await callbacks_json(d, Channel.VOICE, a.id)}


@command("call_find", FindArgs, "calls to a contact, newest first")
async def _call_find(d: Dispatcher, a: FindArgs) -> JSON:
    return {"calls": [call_json(c) for c in await d.find_calls(a.to, a.limit)]}


@command("call_cancel", IdArgs, "cancel a call that is still queued")
async def _call_cancel(d: Dispatcher, a: IdArgs) -> JSON:
    return call_json(await d.cancel_call(a.id))


class MetricsArgs(Args, frozen=True):
    since: str | None = None  # ISO 8601, or a duration back from now (24h, 7d)
    until: str | None = None
    campaign: str | None = None
    sender: str | None = None
    automation: str | None = None
    by: str | None = None  # campaign, sender or automation


@command("metrics", MetricsArgs, "engagement counts by channel: since, until, campaign, ..., by")
async def _metrics(d: Dispatcher, a: MetricsArgs) -> JSON:
    query, by = metrics.request(now=d.clock.now().wall, **msgspec.structs.asdict(a))
    return await d.metrics_report(query, by)


class ReportDataArgs(Args, frozen=True):
    since: str | None = None  # ISO 8601, or a duration back from now (24h, 7d)
    until: str | None = None
    campaign: str | None = None
    bucket: str | None = None  # hour or day; null: hours up to 7 days of events, else days


@command("report_data", ReportDataArgs, "what dispatcher report draws: since, until, ..., bucket")
async def _report_data(d: Dispatcher, a: ReportDataArgs) -> JSON:
    query, _ = metrics.request(now=d.clock.now().wall, since=a.since, until=a.until,
                               campaign=a.campaign)  # fmt: skip
    return await d.report_data(query, report.check_bucket(a.bucket))
