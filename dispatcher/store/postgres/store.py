"""The PostgreSQL store: every part of the port over one pool.

Each part is a mixin over :class:`~dispatcher.store.postgres.base.PostgresBase`, one
module each, as in the SQLite adapter. The contract suite (``tests/test_store_contract.py``)
runs on it against a real cluster.

Opened for the service (``service_home`` given), it also holds the single-worker guard
(``guard.py``): one service per database until the delivery engine is driven by the
leases. Opened without it (a command's short read, the tests), it takes no lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dispatcher.clock import Clock
from dispatcher.errors import StoreUnavailable
from dispatcher.store.leasing import ChangeCallback
from dispatcher.store.port import WorkCallback
from dispatcher.store.postgres.automations import PostgresAutomations
from dispatcher.store.postgres.base import PostgresBase
from dispatcher.store.postgres.callbacks import PostgresCallbacks
from dispatcher.store.postgres.calls import PostgresCalls
from dispatcher.store.postgres.campaigns import PostgresCampaigns
from dispatcher.store.postgres.consent import PostgresConsent
from dispatcher.store.postgres.emails import PostgresEmails
from dispatcher.store.postgres.engagement import PostgresEngagement
from dispatcher.store.postgres.guard import Holder, ServiceGuard
from dispatcher.store.postgres.leases import MIN_LEASE_SECONDS, Leases, worker_id
from dispatcher.store.postgres.listing import PostgresListing
from dispatcher.store.postgres.operations import PostgresOperations
from dispatcher.store.postgres.texts import PostgresTexts
from dispatcher.store.postgres.url import parse_url
from dispatcher.store.postgres.wakes import WorkListener
from dispatcher.store.postgres.workers import PostgresWorkers


class PostgresStore(
    PostgresCampaigns,
    PostgresAutomations,
    PostgresCallbacks,
    PostgresCalls,
    PostgresConsent,
    PostgresListing,
    PostgresOperations,
    PostgresEmails,
    PostgresEngagement,
    PostgresTexts,
    PostgresWorkers,
    PostgresBase,
):
    """Store adapter for ``postgresql://user@host:port/database``."""

    def __init__(self, url: str, *, service_home: str | None = None, **options: Any) -> None:
        super().__init__(url, **options)
        self._guard: ServiceGuard | None = None
        self._wakes: WorkListener | None = None
        if service_home is not None:
            me = Holder.this_process(service_home)
            self._guard = ServiceGuard(self.url, self._q, me=me,
                                       connect_timeout=self._connect_timeout)  # fmt: skip

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresStore:
        parse_url(url)  # a bad URL is refused before anything opens
        pool = {k: v for k, v in options.items() if k in ("min_size", "max_size")}
        home = options.get("service_home")
        return cls(url, service_home=None if home is None else str(home), **pool)

    async def open(self) -> None:
        await super().open()
        try:
            if self._guard is not None:  # held by another: this worker follows
                await self._guard.try_lead()
        except BaseException:
            await super().close()
            raise
        if self._wakes is not None:
            self._wakes.start()

    async def close(self) -> None:
        try:
            if self._wakes is not None:
                await self._wakes.stop()
            await super().close()  # the writes handed over end first
        finally:
            if self._guard is not None:
                await self._guard.release()

    def on_work(self, callback: WorkCallback) -> None:
        """Listen for texts queued on any key (``wakes.py``), from now if the store is
        open, else from when it opens; ``callback`` gets the keys."""
        listener = self._listener()
        if listener.work is not None:
            raise RuntimeError("on_work takes one callback, registered once")
        listener.work = callback

    def on_change(self, callback: ChangeCallback) -> None:
        """Listen for campaigns and automation rules changed by any worker
        (``wakes.py``), as :meth:`on_work` does for texts; ``callback`` gets the changes."""
        listener = self._listener()
        if listener.changes is not None:
            raise RuntimeError("on_change takes one callback, registered once")
        listener.changes = callback

    def _listener(self) -> WorkListener:
        """The one listener of this store, started now if the store is open."""
        if self._wakes is None:
            self._wakes = WorkListener(self, connect_timeout=self._connect_timeout)
            if self._pool is not None:
                self._wakes.start()
        return self._wakes

    @property
    def wakes(self) -> WorkListener | None:
        """The listener ``on_work`` started, if any."""
        return self._wakes

    def leases(self, name: str, clock: Clock, *, lease_seconds: float) -> Leases:
        """This worker's leases on the pacing keys, under a new worker id (``name``
        and a random part)."""
        return Leases(self, clock, worker_id(name), lease_seconds=lease_seconds,
                      min_lease_seconds=min(MIN_LEASE_SECONDS, lease_seconds / 3))  # fmt: skip

    def on_fault(self, report: Callable[[StoreUnavailable], None]) -> None:
        """Tell the service, through ``report``, when the guard's lock may be lost."""
        if self._guard is not None:
            self._guard.on_lost(report)

    def leadership(self) -> ServiceGuard | None:
        """The guard that elects the leader, when opened for a service."""
        return self._guard

    async def probe(self) -> None:
        """A small write, once the guard holds its lock again (if it lost it)."""
        if self._guard is not None:
            await self._guard.take_again()
        await super().probe()
