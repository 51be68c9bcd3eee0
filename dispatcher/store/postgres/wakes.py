"""New work wakes the workers: ``LISTEN dispatcher_work`` (and ``dispatcher_changes``)
on a connection of its own.

Migration 0014 makes every text queued on a pacing key notify the channel
``dispatcher_work`` with the key as payload, once per key per transaction, when it
commits. Migration 0016 makes a campaign created or whose state changed notify
``dispatcher_changes`` with ``campaign:<id>``, and an automation rule added or removed
with ``rules``. :class:`WorkListener` listens on a connection of its own (not the
pool's) and calls the registered callbacks, on the event loop, with the keys that got
work and with the changes: the notifications that arrive together are handed over in
one call.

Notifications sent while nobody listens are lost. So when the listener starts
listening, and again after each reconnection, it reads every key with a text queued
and reports them all (a key with work is never left unreported by a gap), and reports
:data:`ANY_CHANGE` (anything may have changed: read it all again). While it cannot
listen (the database restarting, no connection slot free), it tries again every
:data:`POLL_EVERY` seconds and each time reads the keys with work through the store's
pool and reports them, with :data:`ANY_CHANGE`: a polling fallback, one read a second,
until it listens again. The connection is asked to answer every :data:`CHECK_EVERY`
seconds, so one that went silent counts as lost within seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import asyncpg

from dispatcher.errors import StoreError
from dispatcher.store.leasing import ANY_CHANGE, ChangeCallback
from dispatcher.store.port import WorkCallback
from dispatcher.store.postgres.connection import PostgresConnection

log = logging.getLogger(__name__)

CHANNEL = "dispatcher_work"
"""The channel a queued text notifies (migration 0014), its key as payload."""
CHANGES = "dispatcher_changes"
"""The channel a campaign's or the rules' change notifies (migration 0016)."""
APPLICATION_NAME = "dispatcher-wakes"
"""The listening connection's ``application_name`` (``pg_stat_activity``)."""
CHECK_EVERY = 1.0
"""Seconds between two checks that the listening connection still answers."""
CHECK_TIMEOUT = 2.0
"""Seconds a check may take before the connection counts as lost."""
POLL_EVERY = 1.0
"""Seconds between two tries to listen again, each reporting the keys with work."""

_LOST = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
         asyncpg.InternalClientError)  # fmt: skip


class WorkListener:
    """Listens for keys that got work and for changes, and reports each to its callback
    (registered once each, before or after the listener starts)."""

    def __init__(self, db: PostgresConnection, *, connect_timeout: float) -> None:
        self._db = db
        self.work: WorkCallback | None = None
        self.changes: ChangeCallback | None = None
        self._connect_timeout = connect_timeout
        self._pending: set[str] = set()
        self._changed: set[str] = set()
        self._flush: asyncio.Handle | None = None
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._failures = 0

    @property
    def listening(self) -> bool:
        """Whether notifications reach this listener now (else it polls)."""
        return self._listening.is_set()

    async def wait_listening(self) -> None:
        """Until the listener listens (at start, or again after a loss)."""
        await self._listening.wait()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="store-wakes")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- the loop ---------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except _LOST as exc:
                self._lost(exc)
            await asyncio.sleep(POLL_EVERY)
            if not self.listening:
                await self._poll()

    async def _listen(self) -> None:
        """Listen until the connection is lost (raises what lost it)."""
        db: asyncpg.Connection[Any] = await asyncpg.connect(
            self._db.url.dsn,
            timeout=self._connect_timeout,
            server_settings={"application_name": APPLICATION_NAME},
        )
        closed = asyncio.Event()
        db.add_termination_listener(lambda _db: closed.set())
        try:
            await db.add_listener(CHANNEL, self._notified)
            await db.add_listener(CHANGES, self._changed_notified)
            # Notifications sent before the LISTEN are lost: every key with work counts,
            # and anything may have changed.
            self._report(row["key"] for row in await db.fetch(self._db.query("keys_with_work")))
            self._report_change(ANY_CHANGE)
            self._listening.set()
            if self._failures:
                said = {"url": self._db.url.shown, "failures": self._failures}
                log.warning("store.wakes_listening_again", extra=said)
                self._failures = 0
            while not closed.is_set():
                try:
                    await asyncio.wait_for(closed.wait(), CHECK_EVERY)
                except TimeoutError:
                    await db.fetchval(self._db.query("wakes_check"), timeout=CHECK_TIMEOUT)
            raise ConnectionError("the listening connection was closed")
        finally:
            self._listening.clear()
            db.terminate()

    def _lost(self, exc: BaseException) -> None:
        self._failures += 1
        if self._failures == 1:
            log.warning("store.wakes_lost", extra={
                "url": self._db.url.shown, "error": f"{exc!r}",
                "fallback": f"the keys with work are read every {POLL_EVERY:g} s"})  # fmt: skip

    async def _poll(self) -> None:
        """The fallback while not listening: report every key with work, and that
        anything may have changed, if the database answers the store's pool."""
        try:
            async with self._db.pool.acquire() as db:
                rows = await db.fetch(self._db.query("keys_with_work"), timeout=CHECK_TIMEOUT)
        except (*_LOST, StoreError):
            return
        self._report(row["key"] for row in rows)
        self._report_change(ANY_CHANGE)

    # -- reporting --------------------------------------------------------------------
    def _notified(self, _db: object, _pid: int, _channel: str, key: object) -> None:
        self._report((str(key),))

    def _changed_notified(self, _db: object, _pid: int, _channel: str, what: object) -> None:
        self._report_change(str(what))

    def _report(self, keys: Iterable[str]) -> None:
        """Hand ``keys`` to the callback soon: those reported meanwhile go with them."""
        self._pending.update(keys)
        self._soon()

    def _report_change(self, what: str) -> None:
        """Hand the change ``what`` to its callback soon, with those reported meanwhile."""
        self._changed.add(what)
        self._soon()

    def _soon(self) -> None:
        if (self._pending or self._changed) and self._flush is None:
            self._flush = asyncio.get_running_loop().call_soon(self._hand_over)

    def _hand_over(self) -> None:
        self._flush = None
        keys, self._pending = frozenset(self._pending), set()
        changed, self._changed = frozenset(self._changed), set()
        for callback, what in ((self.work, keys), (self.changes, changed)):
            if callback is None or not what:
                continue
            try:
                callback(what)
            except Exception:
                log.exception("store.wakes_callback_failed", extra={"keys": len(what)})


__all__ = ["CHANGES", "CHANNEL", "WorkListener"]
