"""The SQLite store's connections and its group commit.

Writes are group-committed: every write verb queues its statements (:meth:`enqueue`)
and awaits the commit of the batch it joined. While one batch is being written, the
next one gathers, so under load one transaction carries many transitions and a quiet
service commits each write at once. Writes commit in the order they were handed over,
except the writes marked ``ahead`` (a claim, which its sends wait for; a new text's
insert, which its submission waits for, see :meth:`SQLiteConnection.new_ahead`): they gather
in a batch of their own that goes to the writer before the writes in order, unless
they touch a message that has a write among those (then that write and everything
before it go first, in the same batch), or the writes in order hold
:data:`BACKLOG` rows or more (then they go first: backpressure on the send path).
The batches are written by a process of their
own (``writer.py``, ``writer_process.py``): SQLite's work never holds this
interpreter's lock. Reads have a connection (and a thread) of their own, in this
process. SQL lives in named queries (``dispatcher/store/sql/sqlite*.sql``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite

from dispatcher import private
from dispatcher.core.tally import STORE_WRITE, Histogram
from dispatcher.errors import StoreError
from dispatcher.lifecycle import Resource
from dispatcher.store.queries import load_migrations, load_queries
from dispatcher.store.sqlite.rows import Params, Row, us
from dispatcher.store.sqlite.writer import WriterProcess

log = logging.getLogger(__name__)

_MERGED = ("insert_message", "insert_event", "apply_transition", "set_next_slot")
"""Statements whose rows from many writers join one executemany, in this order. A
transition is only written once its message's insert has committed, so running the
inserts of a batch before its updates never reorders what depends on what. Any
other statement is a barrier: it runs where it was added."""


BACKLOG = 4096
"""Rows the writes in order may hold while claims go ahead of them. Past it, the next
write marked ``ahead`` commits behind them, so a writer that falls behind slows the
claims (and the sends) instead of letting the Sent and Delivered pile up."""


@dataclass(slots=True)
class _Batch:
    statements: list[tuple[str, str, list[Params]]] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    rows: int = 0
    writes: int = 0  # writes handed over into it
    soon: asyncio.Future[None] | None = None  # shared by its writes nothing awaits one by one
    messages: set[str] = field(default_factory=set)  # the messages its writes change
    inserts: bool = False  # it holds a new message's insert
    _segment: dict[str, tuple[str, list[Params]]] = field(default_factory=dict)

    def add(self, name: str, sql: str, rows: list[Params]) -> None:
        self.rows += len(rows)
        self.inserts = self.inserts or (name == "insert_message" and bool(rows))
        if name in _MERGED:
            self._segment.setdefault(name, (sql, []))[1].extend(rows)
        else:
            self._close_segment()
            self.statements.append((name, sql, rows))

    def take(self, earlier: _Batch) -> None:
        """Put the writes of ``earlier`` (handed over before this batch's next write)
        in this batch, in their order, with their waiters."""
        for name, sql, rows in earlier._sealed():
            self.add(name, sql, rows)
        self.waiters.extend(earlier.waiters)
        self.writes += earlier.writes
        self.messages |= earlier.messages

    def _close_segment(self) -> None:
        for name in _MERGED:
            if (entry := self._segment.get(name)) is not None and entry[1]:
                self.statements.append((name, *entry))
        self._segment = {}

    def _sealed(self) -> list[tuple[str, str, list[Params]]]:
        self._close_segment()
        return self.statements

    def sealed(self) -> list[tuple[str, list[Params]]]:
        """Every statement of the batch, in the order to run them."""
        return [(sql, rows) for _, sql, rows in self._sealed()]


def _unexpected(path: Path, failure: Exception) -> StoreError:
    error = StoreError(f"writing to {path} failed: {failure}")
    error.__cause__ = failure
    return error


class SQLiteConnection(Resource):
    """The writer process and the reader connection every part of the SQLite store
    shares."""

    def __init__(self, path: Path, *, commit_window: float = 0.0) -> None:
        self._path = path
        self._window = commit_window
        self._last_commit = 0.0
        self._write_seconds = Histogram(STORE_WRITE)  # each batch, from its hand-off to its answer
        self._q = load_queries("sqlite")
        self._reader: aiosqlite.Connection | None = None
        self._writer = WriterProcess(path)
        self._batch = _Batch()  # the writes in order
        self._ahead = _Batch()  # writes that may commit before the writes in order
        self._wake = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self._starting: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._seq = 0
        self._call_seq = 0
        self._closing = False
        self._dnt_lock = asyncio.Lock()  # "did it exist" is answered once per removal
        self._runs_lock = asyncio.Lock()  # "was it new" is answered once per run

    # -- lifecycle -------------------------------------------------------------------
    async def open(self) -> None:
        try:
            # Created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the
            # database file's mode (a file it creates itself would be 0644).
            private.folder(self._path.parent)
            os.close(private.create(self._path, os.O_RDWR))
        except OSError as exc:
            raise StoreError(f"cannot open the database {self._path}: {exc}") from exc
        # The writer starts (an interpreter's start-up) while the schema is brought up
        # to date here and the reader opens, and while the caller reads: the first batch
        # waits for it to be ready (and hears why, if it could not start).
        self._starting = asyncio.create_task(self._writer.start(), name="sqlite-writer-start")
        try:
            async with aiosqlite.connect(self._path, isolation_level=None) as db:
                await db.execute("PRAGMA busy_timeout=5000")
                await db.execute("PRAGMA journal_mode=WAL")
                await self._migrate(db)
            # Reads have a connection (and a thread) of their own: in WAL mode they see
            # the last commit and never wait behind the batches being written.
            reader = self._reader = await aiosqlite.connect(self._path, isolation_level=None)
            reader.row_factory = sqlite3.Row
            await reader.execute("PRAGMA query_only=ON")
            await reader.execute("PRAGMA busy_timeout=5000")
            row = await self._one("max_seq", ())
            self._seq = int(row[0]) if row else 0
            row = await self._one("call_max_seq", ())
            self._call_seq = int(row[0]) if row else 0
        except sqlite3.DatabaseError as exc:
            await self._close_writer()
            await self._close_reader()
            raise StoreError(f"cannot open the database {self._path}: {exc}") from exc
        self._committer = asyncio.create_task(self._write_loop(), name="sqlite-group-commit")

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._committer is not None:
            await self._committer
        await self._close_writer()
        await self._close_reader()

    async def _close_writer(self) -> None:
        if (starting := self._starting) is not None:
            self._starting = None
            await asyncio.wait([starting])  # started or not, it is closed below
            if not starting.cancelled():
                starting.exception()  # no write waited for it: nobody to tell
        await self._writer.close()  # reaped: its CPU counts among this process's children

    async def _close_reader(self) -> None:
        if self._reader is not None:
            await self._reader.close()
        self._reader = None

    @property
    def writer_pid(self) -> int | None:
        """The writer process's id while one runs."""
        return self._writer.pid

    @property
    def writes_in_flight(self) -> int:
        """Writes whose batch is with the writer, not answered yet."""
        return self._in_flight

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        await db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        )
        done = {
            row[0] for row in await db.execute_fetchall("SELECT version FROM schema_migrations")
        }
        for version, script in load_migrations("sqlite"):
            if version in done:
                continue
            await db.executescript(
                f"BEGIN;\n{script}\nINSERT INTO schema_migrations (version) VALUES ({version});\n"
                "COMMIT;"
            )
            log.info("store.migrated", extra={"version": version, "path": str(self._path)})

    # -- group commit ----------------------------------------------------------------
    def enqueue(
        self,
        *statements: tuple[str, Iterable[Params]],
        messages: Collection[str] = (),
        ahead: bool = False,
        shared: bool = False,
    ) -> asyncio.Future[None]:
        """Add ``statements`` (query name, rows) to the batch being gathered; the future
        is done once the batch has committed, or fails with the batch's error
        (:class:`StoreUnavailable` when the database refuses writes or the writer died,
        else :class:`StoreError`). Raises :class:`StoreError` at once if the store is
        not open or is closing.

        ``messages``: the ids of the messages whose rows the write changes. ``ahead``:
        the write may commit before the writes in order handed over earlier, none of
        which may then change one of its ``messages`` (those are committed with it, or
        before it). ``shared``: every such write of one batch gets the same future (a
        write nothing awaits on its own, such as a Sent: one future and one done
        callback per batch, not one per text)."""
        if self._committer is None or self._closing:
            raise StoreError("the store is closing" if self._closing else "the store is not open")
        batch = self._batch
        if ahead:
            if batch.waiters and (batch.rows >= BACKLOG or not batch.messages.isdisjoint(messages)):
                self._ahead.take(batch)  # never ahead of its own messages' earlier writes
                self._batch = _Batch()
            batch = self._ahead
        for name, rows in statements:
            batch.add(name, self._q[name], list(rows))
        batch.messages.update(messages)
        batch.writes += 1
        self._wake.set()
        if shared and batch.soon is not None:
            return batch.soon
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        batch.waiters.append(waiter)
        if shared:
            batch.soon = waiter
        return waiter

    async def _write(
        self,
        *statements: tuple[str, Iterable[Params]],
        messages: Collection[str] = (),
        ahead: bool = False,
    ) -> None:
        await self.enqueue(*statements, messages=messages, ahead=ahead)

    def new_ahead(self) -> bool:
        """May a new text's insert go ahead of the writes in order? While a batch is
        being written or claims wait ahead (else the next batch goes at once anyway),
        and never ahead of an earlier new text's insert, so texts commit in the order
        they were submitted (their queue order)."""
        return (self._in_flight > 0 or bool(self._ahead.waiters)) and not self._batch.inserts

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            busy = time.monotonic() - self._last_commit < self._window
            if busy and not self._closing:
                # Writes are flowing: let the batch gather. A lone write is not delayed.
                await asyncio.sleep(self._window)
            self._wake.clear()
            if self._ahead.waiters:  # the claims first
                batch, self._ahead = self._ahead, _Batch()
                if self._batch.waiters:
                    self._wake.set()  # the writes in order are next
            else:
                batch, self._batch = self._batch, _Batch()
            if batch.waiters:
                self._in_flight = batch.writes
                began = time.monotonic()
                try:
                    await self._commit(batch)
                finally:
                    self._in_flight = 0
                self._last_commit = time.monotonic()
                self._write_seconds.observe(self._last_commit - began)
            if self._closing and not self._batch.waiters and not self._ahead.waiters:
                return

    async def _commit(self, batch: _Batch) -> None:
        try:
            if (starting := self._starting) is not None:
                self._starting = None
                await starting  # the writer of the first batch
            await self._writer.run(batch.sealed())
        except Exception as exc:  # every waiter must hear of any failure
            error = exc if isinstance(exc, StoreError) else _unexpected(self._path, exc)
            for waiter in batch.waiters:
                if not waiter.done():
                    waiter.set_exception(error)
            return
        for waiter in batch.waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def probe(self) -> None:
        """One small write through the group commit: does the database take writes?"""
        await self._write(("store_probe", [(us(datetime.now(UTC)),)]))

    # -- reads -----------------------------------------------------------------------
    async def _rows(self, name: str, params: Params) -> list[Row]:
        if self._reader is None:
            raise StoreError("the store is not open")
        rows = await self._reader.execute_fetchall(self._q[name], params)
        return list(rows)

    async def _one(self, name: str, params: Params) -> Row | None:
        rows = await self._rows(name, params)
        return rows[0] if rows else None
