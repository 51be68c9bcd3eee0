"""The leader's guard: of the workers (services) on one PostgreSQL database, the one
that holds it runs what must run once (calls and email, campaigns, automations, the
expiry sweep, status callbacks); every worker paces the texts of the numbers it leases
(``leases.py``).

The leader holds a session-level advisory lock on a connection of its own
(``postgres_guard.sql``), and writes who it is (host, process id, home folder, start
time) in ``service_guard``. A worker that finds the lock held at start is a follower;
it tries to take the lock every second (:meth:`ServiceGuard.try_lead`), and leads once
it does: when the leader's session has ended (it stopped or died).

The lock lives as long as the guard's session. When that connection is lost (the
database restarted, the network, the session ended by an operator), another service
may take the lock meanwhile: the service is told at once (a store fault: it starts no
sends) and stays paused until its guard holds the lock again, taken anew when the
store is probed (:meth:`ServiceGuard.take_again`). The connection is also asked to
answer every :data:`CHECK_EVERY` seconds, so a connection that went silent counts as
lost within seconds, long before the database would end its session.

Only the service holds it: commands that read or copy the database, and the tests'
stores, open the store without it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from dispatcher.errors import StoreError, StoreUnavailable
from dispatcher.store.postgres.url import PostgresURL

log = logging.getLogger(__name__)

APPLICATION_NAME = "dispatcher-guard"
"""The guard connection's ``application_name`` (``pg_stat_activity``), to find it by."""
CHECK_EVERY = 1.0
"""Seconds between two checks that the guard's connection still answers."""
CHECK_TIMEOUT = 2.0
"""Seconds a check may take before the connection counts as lost."""

Report = Callable[[StoreUnavailable], None]
_LOST = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
         asyncpg.InternalClientError)  # fmt: skip
"""What a connection that failed raises (InternalClientError: one whose server process
was ended, found broken when next used)."""


class ServiceGuardHeld(StoreError):
    """Another service holds the database's single-worker guard."""


@dataclass(frozen=True, slots=True)
class Holder:
    """Who a service says it is, in ``service_guard``."""

    host: str
    pid: int
    home: str
    started_at: datetime

    @classmethod
    def this_process(cls, home: str) -> Holder:
        return cls(socket.gethostname(), os.getpid(), home, datetime.now(UTC))

    def describe(self) -> str:
        return (f"host {self.host}, process {self.pid}, home {self.home}, started "
                f"{self.started_at.astimezone(UTC).isoformat(timespec='seconds')}")  # fmt: skip


class ServiceGuard:
    """The advisory lock held by the leader of the workers on one database."""

    def __init__(
        self, url: PostgresURL, queries: dict[str, str], *, me: Holder, connect_timeout: float
    ) -> None:
        self._url = url
        self._q = queries
        self._me = me
        self._connect_timeout = connect_timeout
        self._db: asyncpg.Connection[Any] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._report: Report | None = None
        self._holder = ""  # who held the lock when this process last found it held
        self._holder_is_service = False  # a dispatcher service (not another session)
        self._lost: StoreUnavailable | None = None  # since the last take, if lost
        self._led = False  # this process has held the lock (a loss is then a fault)

    @property
    def held(self) -> bool:
        """Whether the guard holds the lock, as far as this process knows."""
        return self._db is not None

    def on_lost(self, report: Report) -> None:
        """Call ``report`` when the lock may be lost (now, if it was already)."""
        self._report = report
        if self._lost is not None:
            report(self._lost)

    async def take(self) -> None:
        """Connect and take the lock, at start. Raises :class:`ServiceGuardHeld`
        naming the holder, or :class:`StoreUnavailable` if the database does not answer."""
        await self._take(refuse=True)

    async def try_lead(self) -> bool:
        """Take the lock if it is free (the leader's session ended): whether this
        process holds it now. Raises :class:`StoreUnavailable` if the database does not
        answer."""
        if not self.held:
            await self._take(refuse=False)
        return self.held

    @property
    def leads(self) -> bool:
        """Whether this process leads: it holds the lock."""
        return self.held

    def leader(self) -> str:
        """Who held the lock when this process last found it held (for its log)."""
        return self._holder

    async def _take(self, *, refuse: bool) -> None:
        db = await self._connect()
        refusal = ""
        try:
            if await db.fetchval(self._q["guard_take"]):
                await db.execute(self._q["guard_record"], self._me.host, self._me.pid,
                                 self._me.home, self._me.started_at)  # fmt: skip
            else:
                refusal = await self._refusal(db)
        except BaseException as exc:
            db.terminate()
            if isinstance(exc, _LOST):
                raise StoreUnavailable(f"taking this service's lock on the database "
                                       f"{self._url.shown} failed: {exc}") from exc  # fmt: skip
            raise
        if refusal:
            db.terminate()
            self._holder = refusal
            if refuse:
                raise ServiceGuardHeld(refusal)
            return
        self._db = db
        self._led = True
        self._lost = None
        db.add_termination_listener(self._terminated)
        self._watch = asyncio.get_running_loop().create_task(self._check(db), name="store-guard")

    async def take_again(self) -> None:
        """After a loss: take the lock anew, or raise :class:`StoreUnavailable` (still
        unreachable, or another service took it meanwhile: this one stays paused)."""
        if self.held or not self._led:  # a follower has no lock to take again
            return
        try:
            await self.take()
        except ServiceGuardHeld as exc:
            if self._holder_is_service:  # another worker leads now: this one follows
                self._led = False
                log.warning("store.lead_taken", extra={"url": self._url.shown,
                                                       "leader": self._holder})  # fmt: skip
                return
            raise StoreUnavailable(f"{exc}; this service led before and sends nothing while "
                                   "the other leads: restart it to have it join as a "
                                   "follower (docs/scale-out.md)") from exc  # fmt: skip
        log.warning("store.guard_taken_again", extra={"url": self._url.shown})

    async def release(self) -> None:
        """Give the lock back (the service is stopping): the end of the session frees it."""
        db, self._db = self._db, None
        self._stop_watch()
        if db is None:
            return
        db.remove_termination_listener(self._terminated)
        try:
            await db.close(timeout=self._connect_timeout)
        except _LOST:
            db.terminate()

    # -- loss ------------------------------------------------------------------------
    def _terminated(self, _db: object) -> None:
        self._lose("its connection was closed")

    async def _check(self, db: asyncpg.Connection[Any]) -> None:
        """Ask the guard's connection to answer, every :data:`CHECK_EVERY` seconds."""
        while True:
            await asyncio.sleep(CHECK_EVERY)
            try:
                await db.fetchval(self._q["guard_check"], timeout=CHECK_TIMEOUT)
            except _LOST as exc:
                self._lose(f"its connection did not answer: {exc!r}")
                return

    def _lose(self, why: str) -> None:
        db, self._db = self._db, None
        if db is None:
            return
        if self._watch is not asyncio.current_task():
            self._stop_watch()
        self._watch = None
        db.remove_termination_listener(self._terminated)
        db.terminate()
        self._lost = StoreUnavailable(
            f"lost this service's lock on the database {self._url.shown} ({why}): another "
            "service may take it, so no sends start until this one holds it again"
        )
        log.error("store.guard_lost", extra={"url": self._url.shown, "why": why})
        if self._report is not None:
            self._report(self._lost)

    def _stop_watch(self) -> None:
        if (watch := self._watch) is not None:
            self._watch = None
            watch.cancel()

    # -- opening ---------------------------------------------------------------------
    async def _connect(self) -> asyncpg.Connection[Any]:
        try:
            db: asyncpg.Connection[Any] = await asyncpg.connect(
                self._url.dsn,
                timeout=self._connect_timeout,
                server_settings={"application_name": APPLICATION_NAME},
            )
        except _LOST as exc:
            raise StoreUnavailable(f"cannot reach the database {self._url.shown}: {exc}") from exc
        return db

    async def _refusal(self, db: asyncpg.Connection[Any]) -> str:
        """What the refusal says: who holds the lock, and what to do."""
        row = await db.fetchrow(self._q["guard_holder"])
        # Another dispatcher service, not a session that did not say who it is, nor this
        # process's own session that has not ended yet (a lock lost and taken again).
        self._holder_is_service = (
            row is not None and row["host"] is not None
            and (row["host"], row["pid"]) != (self._me.host, self._me.pid)
        )  # fmt: skip
        if row is None:  # released since: a retry would take it
            holder = "a session that has just let it go (start this one again)"
        elif row["host"] is None:
            holder = (f"a session that did not say who it is (server process "
                      f"{row['backend_pid']})")  # fmt: skip
        else:
            holder = Holder(row["host"], row["pid"], row["home"], row["started_at"]).describe()
        return (f"another dispatcher service already runs on the database "
                f"{self._url.shown} and leads there ({holder})")  # fmt: skip


__all__ = ["APPLICATION_NAME", "Holder", "ServiceGuard", "ServiceGuardHeld"]
