"""The SQLite store's connections and its group commit.

Writes are group-committed: every write verb queues its statements and awaits the
commit of the batch it joined. While one batch is being written, the next one
gathers, so under load one transaction carries many transitions and a quiet
service commits each write at once. Reads have a connection (and a thread) of their
own. SQL lives in named queries (``dispatcher/store/sql/sqlite*.sql``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite

from dispatcher import private
from dispatcher.errors import StoreError, StoreUnavailable
from dispatcher.lifecycle import Resource
from dispatcher.store.queries import load_migrations, load_queries
from dispatcher.store.sqlite.rows import Params, Row, us

log = logging.getLogger(__name__)

_MERGED = ("insert_message", "insert_event", "apply_transition", "set_next_slot")
"""Statements whose rows from many writers join one executemany, in this order. A
transition is only written once its message's insert has committed, so running the
inserts of a batch before its updates never reorders what depends on what. Any
other statement is a barrier: it runs where it was added."""


@dataclass(slots=True)
class _Batch:
    statements: list[tuple[str, list[Params]]] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    _segment: dict[str, tuple[str, list[Params]]] = field(default_factory=dict)

    def add(self, name: str, sql: str, rows: list[Params]) -> None:
        if name in _MERGED:
            self._segment.setdefault(name, (sql, []))[1].extend(rows)
        else:
            self._close_segment()
            self.statements.append((sql, rows))

    def _close_segment(self) -> None:
        for name in _MERGED:
            if (entry := self._segment.get(name)) is not None and entry[1]:
                self.statements.append(entry)
        self._segment = {}

    def sealed(self) -> list[tuple[str, list[Params]]]:
        """Every statement of the batch, in the order to run them."""
        self._close_segment()
        return self.statements


def _write_error(path: Path, failure: BaseException) -> StoreError:
    """The error every writer of a failed batch hears. A database that refuses a write
    it should take (a full disk, an I/O error, locked, read-only, damaged) is
    :class:`StoreUnavailable`: the service pauses and retries. A write the data itself
    refuses (a broken constraint) is a plain :class:`StoreError`."""
    fault = isinstance(failure, sqlite3.DatabaseError) and not isinstance(
        failure, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError
    )
    kind = StoreUnavailable if fault else StoreError
    error = kind(f"writing to {path} failed: {failure}")
    error.__cause__ = failure
    return error


class SQLiteConnection(Resource):
    """The writer and reader connections every part of the SQLite store shares."""

    def __init__(self, path: Path, *, commit_window: float = 0.0) -> None:
        self._path = path
        self._window = commit_window
        self._last_commit = 0.0
        self._q = load_queries("sqlite")
        self._db: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._batch = _Batch()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
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
        try:
            db = self._db = await aiosqlite.connect(self._path, isolation_level=None)
            db.row_factory = sqlite3.Row
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA busy_timeout=5000")
            self._db = db
            await self._migrate()
            # Reads have a connection (and a thread) of their own: in WAL mode they see
            # the last commit and never wait behind the batches being written.
            reader = self._reader = await aiosqlite.connect(self._path, isolation_level=None)
            reader.row_factory = sqlite3.Row
            await reader.execute("PRAGMA query_only=ON")
            await reader.execute("PRAGMA busy_timeout=5000")
            self._reader = reader
            row = await self._one("max_seq", ())
            self._seq = int(row[0]) if row else 0
            row = await self._one("call_max_seq", ())
            self._call_seq = int(row[0]) if row else 0
        except sqlite3.DatabaseError as exc:
            await self._close_connections()
            raise StoreError(f"cannot open the database {self._path}: {exc}") from exc
        self._writer = asyncio.create_task(self._write_loop(), name="sqlite-group-commit")

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
        await self._close_connections()

    async def _close_connections(self) -> None:
        for connection in (self._reader, self._db):
            if connection is not None:
                await connection.close()
        self._db = self._reader = None

    async def _migrate(self) -> None:
        db = self._conn
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

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("the store is not open")
        return self._db

    # -- group commit ----------------------------------------------------------------
    async def _write(self, *statements: tuple[str, Iterable[Params]]) -> None:
        if self._closing:
            raise StoreError("the store is closing")
        for name, rows in statements:
            self._batch.add(name, self._q[name], list(rows))
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._batch.waiters.append(waiter)
        self._wake.set()
        await waiter

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            busy = time.monotonic() - self._last_commit < self._window
            if busy and not self._closing:
                # Writes are flowing: let the batch gather. A lone write is not delayed.
                await asyncio.sleep(self._window)
            self._wake.clear()
            batch, self._batch = self._batch, _Batch()
            if batch.waiters:
                await self._commit(batch)
                self._last_commit = time.monotonic()
            if self._closing and not self._batch.waiters:
                return

    async def _commit(self, batch: _Batch) -> None:
        db = self._conn
        try:
            await db.execute("BEGIN IMMEDIATE")
            # Every statement is queued to the database thread at once: one wait for all.
            results = await asyncio.gather(
                *(db.executemany(sql, rows) for sql, rows in batch.sealed()),
                return_exceptions=True,
            )
            failures = [r for r in results if isinstance(r, BaseException)]
            if not failures:
                await db.execute("COMMIT")
        except Exception as exc:  # every waiter must hear of any failure
            failures = [exc]
        if failures:
            # An error in any statement rolls the whole batch back.
            with contextlib.suppress(sqlite3.Error, ValueError):
                await db.execute("ROLLBACK")
            error = _write_error(self._path, failures[0])
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
