"""The service's operations verbs: is it ready to take work, and the figures a
monitoring system scrapes (the HTTP app's ``/readyz`` and ``/metrics``).

Both are read-only and answered from memory, except the campaigns' progress, which
reads the open campaigns' contact counts from the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from dispatcher.clock import Clock
from dispatcher.core.campaigns import CampaignState
from dispatcher.core.model import Message
from dispatcher.engine.campaigns import CampaignDesk, CampaignView
from dispatcher.engine.health import StoreHealth
from dispatcher.engine.queues import Queues
from dispatcher.engine.texts import TextDesk
from dispatcher.errors import StoreError
from dispatcher.service.views import StatusView
from dispatcher.store import Store

log = logging.getLogger(__name__)

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
class Gauges:
    """What a monitoring system scrapes: the status, the numbers, the oldest wait, the
    open campaigns."""

    status: StatusView  # counts by status, in flight, sends of the last minute, calls
    readiness: Readiness
    held: bool  # the operator's hold: no new sends start
    numbers: NumbersSummary
    queued: int  # texts queued on every number
    oldest_queued_seconds: float | None  # the longest wait at the head of a queue
    campaigns: Sequence[CampaignView] | None = ()  # the open ones; None: store unreadable


class OperationsVerbs:
    """Readiness and the monitoring figures."""

    store: Store
    clock: Clock
    campaigns: CampaignDesk
    texts: TextDesk
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
        pacing = paused = queued = 0
        heads: list[list[Message]] = []  # the buffered head of every queue (one pass)
        for number, queue in self._queues.items():
            if depth := queue.depth:
                queued += depth
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
            queued=queued,
            oldest_queued_seconds=_age(now, oldest),
            campaigns=await self._open_campaigns(),
        )

    async def _open_campaigns(self) -> list[CampaignView] | None:
        try:
            listed = await self.store.list_campaigns(CAMPAIGNS_READ)
            return [await self.campaigns.view(c.id) for c in listed if c.state in OPEN_CAMPAIGNS]
        except StoreError as exc:
            log.warning("metrics.campaigns_unreadable", extra={"error": str(exc)})
            return None


def _age(now: datetime, since: datetime | None) -> float | None:
    return None if since is None else max(0.0, (now - since).total_seconds())
