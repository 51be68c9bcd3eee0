"""The event histories (texts, calls, email) in commit order, for the readers that follow
them with a :class:`~dispatcher.core.results.Cursor`: the automations and the status
callbacks (``sql/postgres_history.sql``).

A cursor promises that nothing will ever be committed at or before it. On SQLite one
writer commits the events in id order, so an id is such a place. On PostgreSQL an
identity value is taken when the row is written, not when its transaction commits:
with two writers, event 8 may be committed and visible while event 7 is still in flight;
a reader that moved its cursor to 8 would never see 7.

So each event keeps the id of the transaction that wrote it (``tx``, a column whose
default is ``pg_current_xact_id()``), and the histories are read in ``(tx, id)`` order
and only up to the **horizon**: the oldest transaction still in flight when the reading
statement took its snapshot (``pg_snapshot_xmin``). Every transaction older than it has
ended, committed or not, and every transaction that has not ended yet, or starts later,
has a ``tx`` at or above it: the events below the horizon are final, and a later commit
always lands after them. A place in a history is ``(tx, id)``, carried in a cursor as
one number, ``tx * 2**63 + id`` (ids are positive BIGINTs), and stored as NUMERIC.

:meth:`history_tip` is the last final event of each history, once the writes this
process has handed over (the texts' writes, queued in order) have ended, as the port
asks: a result the engine has shown is in it. An event already committed above the
horizon (an older transaction is still in flight) is waited for, up to :attr:`tip_wait`
seconds, so that what another worker committed before the call is in the tip too; a
transaction that stays open longer only holds the tip back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from dispatcher.core.results import Cursor
from dispatcher.store.postgres.base import PostgresBase, Record

log = logging.getLogger(__name__)

ID_SPAN = 2**63
"""A place is ``tx * ID_SPAN + id``: ids are below it."""

_CHANNELS = ("texts", "calls", "emails")
_REBASED = ("rebased_text_place", "rebased_call_place", "rebased_email_place")


def place(tx: int, event_id: int) -> int:
    """One number for the event ``event_id`` written by transaction ``tx``."""
    return tx * ID_SPAN + event_id


def parts(at: int) -> tuple[int, int]:
    """The transaction and event id of a place (0, 0 before the first event)."""
    return divmod(int(at), ID_SPAN)


def span(after: int, upto: int) -> tuple[int, int, int, int]:
    """The parameters of a range ``(after, upto]`` of a history: tx and id of each end."""
    return (*parts(after), *parts(upto))


def stored_cursor(row: Record | None) -> Cursor | None:
    """A cursor kept in the database (three NUMERIC places)."""
    if row is None:
        return None
    return Cursor(texts=int(row[0]), calls=int(row[1]), emails=int(row[2]))


def cursor_params(cursor: Cursor) -> tuple[int, int, int]:
    return (cursor.texts, cursor.calls, cursor.emails)


def _tips(row: Record, suffix: str = "") -> Cursor:
    return Cursor(**{channel: _place(row[channel + suffix]) for channel in _CHANNELS})


def _place(pair: Sequence[int] | None) -> int:
    return 0 if pair is None else place(pair[0], pair[1])


def _covers(tip: Cursor, committed: Cursor) -> bool:
    return all(getattr(tip, c) >= getattr(committed, c) for c in _CHANNELS)


class PostgresHistory(PostgresBase):
    tip_wait = 5.0
    """How long :meth:`history_tip` waits for a transaction in flight that holds back
    events already committed (seconds)."""

    _last_write: asyncio.Future[Any] | None = None
    """The texts' write handed over last (``texts.py`` queues them in order)."""

    async def open(self) -> None:
        await super().open()
        try:
            await self._rebase_if_moved()
        except BaseException:
            await self.close()
            raise

    async def _rebase_if_moved(self) -> None:
        """A database restored from a dump into another cluster may hold transaction ids
        of this cluster's future: then every old event is put at tx 0 (in id order,
        before anything this cluster writes) and the cursors and the callbacks' places
        with them, once, before anything is followed (``postgres_history.sql``)."""
        async with self._transaction() as db:
            await db.execute(self.query("histories_lock"))
            if not await db.fetchval(self.query("histories_moved")):
                return
            for row in await db.fetch(self.query("histories_cursors")):
                places = [await db.fetchval(self.query(name), *parts(at))
                          for name, at in zip(_REBASED, row[1:], strict=True)]  # fmt: skip
                await db.execute(self.query(f"rebase_{row['kind']}_cursor"), *places)
            await db.execute(self.query("rebase_histories"))
        log.warning(
            "store.histories_rebased", extra={"reason": "transaction ids of another cluster"}
        )

    async def history_tip(self) -> Cursor:
        if (last := self._last_write) is not None:
            await asyncio.wait([last])  # a barrier: the writes handed over have ended
        deadline = time.monotonic() + self.tip_wait
        row = await self._tip_row()
        tip, committed = _tips(row), _tips(row, "_committed")
        pause = 0.001
        while not _covers(tip, committed) and time.monotonic() < deadline:
            await asyncio.sleep(pause)  # an older transaction is still in flight
            pause = min(pause * 2, 0.05)
            tip = _tips(await self._tip_row())
        return tip

    async def _tip_row(self) -> Record:
        row = await self._fetchrow("history_tip")
        assert row is not None  # one row always
        return row
