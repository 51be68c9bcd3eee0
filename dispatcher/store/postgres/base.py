"""What every part of the PostgreSQL store shares: the pool, the named queries, and one
translation of the database's refusals into the port's two errors.

- A write the data refuses (a unique key, a foreign key, a check, a value out of
  range) is :class:`~dispatcher.errors.StoreError`, and the transaction wrote nothing.
- A database that cannot take the write now (out of disk or memory, shutting down,
  read-only, unreachable, a dropped connection, a statement or connection timeout) is
  :class:`~dispatcher.errors.StoreUnavailable`: the service pauses and probes. A write
  the database ended as a deadlock or a serialization failure (:func:`rolled_back`)
  rolled back whole: a part that runs it again (:meth:`PostgresBase._rerun`, the
  leases' statements) reports it only when it ends so every time.

Each part of the port (texts, consent, calls, email, engagement, campaigns, runs,
callbacks, lists, operations) is a mixin over :class:`PostgresBase`, as the SQLite
adapter's parts are over its connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from dispatcher.core.tally import STORE_WRITE, Histogram
from dispatcher.errors import StoreError, StoreUnavailable
from dispatcher.store.postgres.connection import PostgresConnection

Record = asyncpg.Record
_T = TypeVar("_T")

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection = PoolConnectionProxy[Record]

_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")
"""SQLSTATE classes of a database that cannot take work now: connection exceptions,
insufficient resources (disk full, out of memory, too many connections), operator
intervention (shutdown, cannot connect now), system errors (I/O)."""

_UNAVAILABLE_STATES = frozenset({
    "25006",  # read_only_sql_transaction: a standby, or default_transaction_read_only
    "40001",  # serialization_failure: try again later
    "40P01",  # deadlock_detected: try again later
    "55P03",  # lock_not_available: lock_timeout
    "57014",  # query_canceled: statement_timeout
})  # fmt: skip

RUNS = 5
"""How many times a write ended so is run, in all, before it is reported unavailable."""
RERUN_AFTER = 0.02
"""Seconds before the second run of such a write; doubled before each later one."""


def rolled_back(exc: BaseException | None) -> bool:
    """Whether the database ended ``exc``'s transaction for another session's sake: a
    deadlock (40P01) or a serialization failure (40001). Nothing of it was written, and
    running it again may succeed: the store's writes and the leases' statements are run
    again then (up to :data:`RUNS` times). No other end of class 40 is: an integrity
    constraint checked at the commit fails again the same way, and a statement whose
    completion is unknown may have been written."""
    return isinstance(exc, (asyncpg.DeadlockDetectedError, asyncpg.SerializationError))


def translate(exc: BaseException, doing: str) -> StoreError | None:
    """The port's error for a failure of the database while ``doing``; ``None`` for a
    failure that is not the database's (let it pass as it is)."""
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        if state in _UNAVAILABLE_STATES or state[:2] in _UNAVAILABLE_CLASSES:
            error: StoreError = StoreUnavailable(f"{doing} failed: {exc}")
        else:
            error = StoreError(f"{doing} failed: {exc}")
    elif isinstance(exc, (OSError, TimeoutError, asyncpg.InterfaceError,
                          asyncpg.InternalClientError)):  # fmt: skip
        # InternalClientError: a pooled connection whose server process was ended
        # (pg_terminate_backend, a restart) is found broken when it is next used.
        error = StoreUnavailable(f"{doing} failed: the database did not answer: {exc}")
    else:
        return None
    error.__cause__ = exc
    return error


class PostgresBase(PostgresConnection):
    """The pool, named queries and error translation every part uses."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self._write_seconds = Histogram(STORE_WRITE)  # each write, from its start to commit
        self.runs_again = 0  # writes run again after a deadlock or serialization failure

    @property
    def write_seconds(self) -> Histogram:
        return self._write_seconds

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Connection]:
        """A connection for reads; failures become the port's errors."""
        try:
            async with self.pool.acquire() as db:
                yield db
        except Exception as exc:
            if (error := translate(exc, f"reading the database {self.url.shown}")) is None:
                raise
            raise error from exc

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Connection]:
        """A connection inside one transaction: all of it commits, or none of it; the
        time to commit is observed in ``write_seconds``."""
        began = time.perf_counter()
        try:
            async with self.pool.acquire() as db, db.transaction():
                yield db
        except Exception as exc:
            if (error := translate(exc, f"writing to the database {self.url.shown}")) is None:
                raise
            raise error from exc
        self._write_seconds.observe(time.perf_counter() - began)

    async def _rerun(self, what: str, write: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``write`` (one transaction, whole or not at all) again when the database
        ended it as a deadlock or a serialization failure, up to :data:`RUNS` times with
        a backoff from :data:`RERUN_AFTER`, logged (``store.write_run_again``); then it
        is ``StoreUnavailable`` as any other failure. Such an end rolled it back whole, so
        a second run is a first one, later: what it checks (a fence on a text's status
        and epoch) is checked again, and nothing is written twice."""
        pause = RERUN_AFTER
        for run in range(1, RUNS):
            try:
                return await write()
            except StoreUnavailable as exc:
                if not rolled_back(exc.__cause__):
                    raise
                self.runs_again += 1
                log.warning("store.write_run_again", extra={"write": what, "run": run,
                                                            "error": str(exc)})  # fmt: skip
            await asyncio.sleep(pause)
            pause *= 2
        return await write()

    async def _fetch(self, name: str, *args: object) -> list[Record]:
        async with self._read() as db:
            rows: list[Record] = await db.fetch(self.query(name), *args)
            return rows

    async def _fetchrow(self, name: str, *args: object) -> Record | None:
        async with self._read() as db:
            row: Record | None = await db.fetchrow(self.query(name), *args)
            return row

    async def _fetchval(self, name: str, *args: object) -> Any:
        async with self._read() as db:
            return await db.fetchval(self.query(name), *args)

    async def _execute(self, name: str, *args: object) -> str:
        """Run one writing statement in a transaction of its own; returns its status
        line (``UPDATE 1``)."""
        async with self._transaction() as db:
            status: str = await db.execute(self.query(name), *args)
            return status

    async def _executemany(self, name: str, rows: Iterable[Sequence[object]]) -> None:
        """Run one writing statement for each of ``rows``, all in one transaction."""
        async with self._transaction() as db:
            await db.executemany(self.query(name), rows)

    async def probe(self) -> None:
        async with self._transaction() as db:
            await db.execute(self.query("probe"))


def changed(status: str) -> int:
    """The row count of a status line such as ``UPDATE 3`` or ``INSERT 0 1``."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except ValueError:
        return 0
