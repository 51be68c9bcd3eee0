"""What the text verbs of the service answer: one text, one sending number, the status."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from dispatcher.core.model import Event, Message, TextStatus
from dispatcher.engine.calls import CallsSummary
from dispatcher.engine.emails import EmailsSummary
from dispatcher.engine.health import StoreFault
from dispatcher.store import GuardHolder, WorkerState


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageView:
    message: Message
    history: list[Event]
    explanation: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberView:
    number: str
    depth: int
    next_slot_at: datetime | None
    in_flight: int
    paused: bool
    rate: float
    sent_last_minute: int = 0  # sends started by this process in the last 60 s
    owner: str | None = None  # the worker holding its lease (shared stores only)


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusView:
    counts: dict[TextStatus, int]
    numbers: list[NumberView]
    numbers_total: int  # every sending number the service knows
    in_flight: int
    at: datetime
    calls: CallsSummary | None = None
    emails: EmailsSummary | None = None
    sent_last_minute: int = 0  # every number's sends started in the last 60 s
    recent_errors: list[Message] = field(default_factory=list)  # newest first, at most 20
    store_fault: StoreFault | None = None  # why sending is paused and work refused, if it is
    shared: bool = False  # the store is shared by workers: each number shows its owner


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkersView:
    """The services (workers) sending from the store this one uses."""

    shared: bool  # a store several services share (PostgreSQL); False: this one alone
    workers: list[WorkerState]  # by id; alone: this service, the only worker
    leader: GuardHolder | None  # the service that holds the store's guard, if any
    lease_seconds: float | None  # live: a heartbeat younger than this (None: alone)
    at: datetime
