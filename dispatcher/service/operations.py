"""The service's operations verbs: is it ready to take work, and the figures a
monitoring system scrapes (the HTTP app's ``/readyz`` and ``/metrics``).

Both are read-only and answered from memory, except the campaigns' progress, which
reads the open campaigns' contact counts from the store, and the texts queued in each
lane (one indexed count). The send path's counts (:class:`SendFigures`, the store's
write times) are handed over as the engine keeps them, to be read at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

from dispatcher.clock import Clock
from dispatcher.core.campaigns import CampaignState
from dispatcher.core.channel import Channel
from dispatcher.core.model import Lane, Message
from dispatcher.core.tally import Histogram, Tally
from dispatcher.engine.calls import CallDesk
from dispatcher.engine.campaigns import CampaignDesk, CampaignView
from dispatcher.engine.delivery import Delivery
from dispatcher.engine.emails import EmailDesk
from dispatcher.engine.health import StoreHealth
from dispatcher.engine.queues import Queues
from dispatcher.engine.texts import TextDesk
from dispatcher.errors import StoreError
from dispatcher.service.views import StatusView
from dispatcher.store import Store

log = logging.getLogger(__name__)

I = TypeVar("I")  # noqa: E741 - the item a delivery engine sends

OPEN_CAMPAIGNS = frozenset(
    {CampaignState.IMPORTING, CampaignState.DRAFT, CampaignState.RUNNING, CampaignState.PAUSED}
)
"""The campaigns whose progress is reported: those that have not ended."""
CAMPAIGNS_READ = 200
"""The newest campaigns looked at for the open ones."""


class Readiness(StrEnum):
    """Whether the service takes work now, and if not, the first reason why."""

    READY = "ready"
    STARTING = "starting"  # the store and the channel are opening, recovery runs
    STORE_UNAVAILABLE = "store_unavailable"  # the store refuses writes (a store fault)
    SHUTTING_DOWN = "shutting_down"  # draining: no new sends start

    @property
    def ready(self) -> bool:
        return self is Readiness.READY


@dataclass(frozen=True, slots=True, kw_only=True)
class NumbersSummary:
    """The sending numbers the service knows, by what they do now."""

    pacing: int  # texts queued or a send in flight, not paused
    paused: int
    idle: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SendFigures:
    """One channel's send path as the engine counts it (live counts: read them at once)."""

    transitions: Tally  # status changes applied by this process: (status, reason)
    lateness: Histogram  # seconds from each send's slot to its start
    latency: Histogram  # seconds from the hand-off to the provider's answer
    errors: Tally  # the provider's refusals by code, and unknown outcomes
    queued: Mapping[Lane, int] | None  # queued by lane; None: the store could not say


@dataclass(frozen=True, slots=True, kw_only=True)
class Gauges:
    """What a monitoring system scrapes: the status, the numbers, the oldest wait, the
    open campaigns, each channel's send path and the store's write times."""

    status: StatusView  # counts by status, in flight, sends of the last minute, calls
    readiness: Readiness
    held: bool  # the operator's hold: no new sends start
    numbers: NumbersSummary
    oldest_queued_seconds: float | None  # the longest wait at the head of a queue
    campaigns: Sequence[CampaignView] | None = ()  # the open ones; None: store unreadable
    channels: Mapping[Channel, SendFigures] | None = None  # text, voice, email
    store_writes: Histogram | None = None  # seconds each write to the store took


class OperationsVerbs:
    """Readiness and the monitoring figures."""

    store: Store
    clock: Clock
    campaigns: CampaignDesk
    texts: TextDesk
    calls: CallDesk
    emails: EmailDesk
    started: asyncio.Event
    _health: StoreHealth
    _queues: Queues
    _held: bool
    _closing: bool

    if TYPE_CHECKING:  # the text verbs'

        async def status(self, *, limit: int = 100, number: str | None = None) -> StatusView: ...

    def readiness(self) -> Readiness:
        """Ready to take work: open, the store taking writes, not shutting down."""
        if self._closing:
            return Readiness.SHUTTING_DOWN
        if not self.started.is_set():
            return Readiness.STARTING
        if self._health.fault is not None:
            return Readiness.STORE_UNAVAILABLE
        return Readiness.READY

    async def gauges(self) -> Gauges:
        """The figures ``/metrics`` shows, read now."""
        status = await self.status(limit=0)
        now = self.clock.now().wall
        in_flight = self.texts.engine.in_flight
        pacing = paused = 0
        heads: list[list[Message]] = []  # the buffered head of every queue (one pass)
        for number, queue in self._queues.items():
            if depth := queue.depth:
                heads.append(queue.buffer)
            if queue.paused:
                paused += 1
            elif depth or in_flight.get(number, 0):
                pacing += 1
        oldest = min((m.accepted_at for head in heads for m in head), default=None)
        return Gauges(
            status=status,
            readiness=self.readiness(),
            held=self._held,
            numbers=NumbersSummary(
                pacing=pacing, paused=paused, idle=status.numbers_total - pacing - paused
            ),
            oldest_queued_seconds=_age(now, oldest),
            campaigns=await self._open_campaigns(),
            channels={
                Channel.TEXT: _figures(
                    self.texts.engine, self.texts.transitions, await self._texts_by_lane()
                ),
                Channel.VOICE: _figures(
                    self.calls.engine, self.calls.transitions, self.calls.queued_by_lane()
                ),
                Channel.EMAIL: _figures(
                    self.emails.engine, self.emails.transitions, self.emails.queued_by_lane()
                ),
            },
            store_writes=self.store.write_seconds,
        )

    async def _texts_by_lane(self) -> dict[Lane, int] | None:
        try:
            return await self.store.queued_by_lane()
        except StoreError as exc:
            log.warning("metrics.lanes_unreadable", extra={"error": str(exc)})
            return None

    async def _open_campaigns(self) -> list[CampaignView] | None:
        try:
            listed = await self.store.list_campaigns(CAMPAIGNS_READ)
            return [await self.campaigns.view(c.id) for c in listed if c.state in OPEN_CAMPAIGNS]
        except StoreError as exc:
            log.warning("metrics.campaigns_unreadable", extra={"error": str(exc)})
            return None


def _figures(
    engine: Delivery[I], transitions: Tally, queued: Mapping[Lane, int] | None
) -> SendFigures:
    return SendFigures(
        transitions=transitions, lateness=engine.lateness, latency=engine.latency,
        errors=engine.provider_errors, queued=queued,
    )  # fmt: skip


def _age(now: datetime, since: datetime | None) -> float | None:
    return None if since is None else max(0.0, (now - since).total_seconds())
