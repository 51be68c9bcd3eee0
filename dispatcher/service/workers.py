"""The view across workers: the services sending from one store, as the store knows
them (PostgreSQL), or this service as the only one (SQLite, memory)."""

from __future__ import annotations

from datetime import datetime

from dispatcher.clock import Clock
from dispatcher.config import Config
from dispatcher.engine.queues import Queues
from dispatcher.engine.texts import TextDesk
from dispatcher.service.views import WorkersView
from dispatcher.store import Store, WorkerState


class WorkerVerbs:
    """``dispatcher workers``, the ``workers`` command and ``GET /v1/workers``."""

    config: Config
    store: Store
    clock: Clock
    texts: TextDesk
    started_at: datetime
    _queues: Queues

    async def workers(self) -> WorkersView:
        """Each worker with its heartbeat, the numbers it holds and its sends of the
        last minute, and the one that leads; on a store this service has alone, this
        service as the only worker."""
        now = self.clock.now()
        shared = await self.store.workers()
        if shared is not None:
            return WorkersView(shared=True, workers=shared.workers, leader=shared.leader,
                               lease_seconds=shared.lease_seconds, at=now.wall)  # fmt: skip
        alone = WorkerState(
            id=str(self.config.home), address=self.config.http.listen or None,
            started_at=self.started_at, heartbeat_age=0.0, live=True, keys=len(self._queues),
            sent_last_minute=self.texts.sends.total(now.mono), leads=True,
        )  # fmt: skip
        return WorkersView(shared=False, workers=[alone], leader=None, lease_seconds=None,
                           at=now.wall)  # fmt: skip
