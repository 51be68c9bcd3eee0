"""The embedded default store: SQLite in WAL mode through ``aiosqlite``.

Writes are group-committed: every write verb queues its statements and awaits the
commit of the batch it joined. While one batch is being written, the next one
gathers, so under load one transaction carries many transitions and a quiet
service commits each write at once. SQL lives in ``sql/sqlite.sql``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite

from dispatcher import metrics, private
from dispatcher.calls import Call, CallEvent, CallStatus, VoiceResult
from dispatcher.errors import ConfigError, StoreError, StoreUnavailable
from dispatcher.lifecycle import Resource
from dispatcher.metrics import EngagementRow, MetricsQuery
from dispatcher.model import (
    DntEntry,
    Event,
    Lane,
    Message,
    Source,
    TextStatus,
    Transition,
)
from dispatcher.store import NumberState
from dispatcher.store.automation_verbs import SQLiteAutomations
from dispatcher.store.campaign_verbs import SQLiteCampaigns
from dispatcher.store.queries import load_migrations, load_queries

log = logging.getLogger(__name__)

Params = tuple[Any, ...]


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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ts(at: datetime | None) -> int | None:
    """Times are stored as whole microseconds since the Unix epoch, UTC: exact, compact,
    ordered, and several times cheaper to write than ISO 8601 text."""
    return round(at.timestamp() * 1_000_000) if at is not None else None


def _dt(us: int | None) -> datetime | None:
    return _EPOCH + timedelta(microseconds=us) if us is not None else None


def _at(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _message(row: sqlite3.Row) -> Message:
    """Rows become messages here and only here."""
    return Message(
        id=row["id"],
        seq=row["seq"],
        sender=row["sender"],
        recipient=row["recipient"],
        body=row["body"],
        segments=row["segments"],
        lane=Lane(row["lane"]),
        status=TextStatus(row["status"]),
        reason=row["reason"],
        provider_code=row["provider_code"],
        provider_id=row["provider_id"],
        attempt_id=row["attempt_id"],
        duplicate_of=row["duplicate_of"],
        idempotency_key=row["idempotency_key"],
        fingerprint=row["fingerprint"],
        accepted_at=_at(row["accepted_at"]),
        expires_at=_at(row["expires_at"]),
        send_started_at=_dt(row["send_started_at"]),
        updated_at=_at(row["updated_at"]),
        campaign_id=row["campaign_id"],
        trigger=row["trigger"],
    )


def _event_row(event: Event) -> Params:
    return (
        event.message_id,
        _ts(event.at),
        event.status.value,
        event.reason,
        event.provider_code,
        event.source.value,
        int(event.applied),
        event.detail,
    )


def _call(row: sqlite3.Row) -> Call:
    """Rows become calls here and only here."""
    return Call(
        id=row["id"],
        seq=row["seq"],
        account=row["account"],
        sender=row["sender"],
        recipient=row["recipient"],
        script=row["script"],
        script_name=row["script_name"],
        lane=Lane(row["lane"]),
        status=CallStatus(row["status"]),
        reason=row["reason"],
        provider_code=row["provider_code"],
        provider_id=row["provider_id"],
        attempt_id=row["attempt_id"],
        placed_at=_dt(row["placed_at"]),
        answered_by=row["answered_by"],
        script_done=bool(row["script_done"]),
        idempotency_key=row["idempotency_key"],
        fingerprint=row["fingerprint"],
        trigger=row["trigger"],
        campaign_id=row["campaign_id"],
        expires_at=_dt(row["expires_at"]),
        accepted_at=_at(row["accepted_at"]),
        updated_at=_at(row["updated_at"]),
    )


def _call_event(row: sqlite3.Row) -> CallEvent:
    """Rows become call events here and only here."""
    return CallEvent(
        call_id=row["call_id"],
        at=_at(row["at"]),
        status=CallStatus(row["status"]) if row["status"] is not None else None,
        result=VoiceResult(row["result"]) if row["result"] is not None else None,
        step=row["step"],
        reason=row["reason"],
        provider_code=row["provider_code"],
        source=Source(row["source"]),
        applied=bool(row["applied"]),
        detail=row["detail"],
    )


def _call_event_row(event: CallEvent) -> Params:
    return (
        event.call_id,
        _ts(event.at),
        event.status.value if event.status is not None else None,
        event.result.value if event.result is not None else None,
        event.step,
        event.reason,
        event.provider_code,
        event.source.value,
        int(event.applied),
        event.detail,
    )


_FIRST_US, _LAST_US = -(2**62), 2**62
"""Time bounds of a metrics query that names none."""


def _text_row(row: sqlite3.Row) -> EngagementRow:
    """Rows of the engagement queries become engagement rows here and only here."""
    return EngagementRow(
        channel="text", item_id=row["message_id"], at=_at(row["at"]), status=row["status"],
        reason=row["reason"], campaign_id=row["campaign_id"], sender=row["sender"],
        automation=metrics.parse_trigger(row["trigger"])[0], taken=bool(row["taken"]),
    )  # fmt: skip


def _call_row(row: sqlite3.Row) -> EngagementRow:
    return EngagementRow(
        channel="voice", item_id=row["call_id"], at=_at(row["at"]), status=row["status"],
        result=row["result"], applied=bool(row["applied"]), reason=row["reason"],
        campaign_id=row["campaign_id"], sender=row["sender"],
        automation=metrics.parse_trigger(row["trigger"])[0],
    )  # fmt: skip


def _play_row(row: sqlite3.Row) -> EngagementRow:
    return EngagementRow(
        channel="text", item_id=row["message_id"], at=_at(row["at"]), kind="play",
        campaign_id=row["campaign_id"], sender=row["sender"],
        automation=metrics.parse_trigger(row["trigger"])[0],
    )  # fmt: skip


def _engagement_rows(query: MetricsQuery, raw: list[list[sqlite3.Row]]) -> list[EngagementRow]:
    """The rows of the engagement queries as engagement rows (in a worker thread)."""
    texts, calls, plays, made, sources = raw
    rows = [*map(_text_row, texts), *map(_call_row, calls), *map(_play_row, plays)]
    by_id = {source["id"]: source for source in sources}
    for r in made:
        source = by_id.get(metrics.parse_trigger(r["trigger"])[1] or "")
        row = metrics.activity_row(
            channel=r["channel"], item_id=r["id"], at=_at(r["accepted_at"]),
            trigger=r["trigger"], source_sender=source["sender"] if source else None,
            source_campaign=source["campaign_id"] if source else None,
        )  # fmt: skip
        if row is not None:
            rows.append(row)
    raw.clear()  # the database rows are freed in this thread, not on the event loop
    del texts, calls, plays, made, sources, by_id
    return [row for row in rows if query.matches(row)]


def _dnt(row: sqlite3.Row) -> DntEntry:
    return DntEntry(
        number=row["number"],
        added_at=_at(row["added_at"]),
        added_by=row["added_by"],
        reason=row["reason"],
    )


class SQLiteStore(SQLiteCampaigns, SQLiteAutomations, Resource):
    """Store adapter for ``sqlite:///path/to/file.db``."""

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
        self._dnt_lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str, *, commit_window: float = 0.0, **_options: object) -> SQLiteStore:
        prefix = "sqlite:///"
        if not url.startswith(prefix) or len(url) == len(prefix):
            raise ConfigError(
                f"store.url: {url!r} is not a SQLite URL; write sqlite:///path/to/file.db",
                field="store.url",
            )
        return cls(Path(url[len(prefix) :]), commit_window=commit_window)

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
        await self._write(("store_probe", [(_ts(datetime.now(UTC)),)]))

    # -- reads -----------------------------------------------------------------------
    async def _rows(self, name: str, params: Params) -> list[sqlite3.Row]:
        if self._reader is None:
            raise StoreError("the store is not open")
        rows = await self._reader.execute_fetchall(self._q[name], params)
        return list(rows)

    async def _one(self, name: str, params: Params) -> sqlite3.Row | None:
        rows = await self._rows(name, params)
        return rows[0] if rows else None

    async def _message_or_none(self, name: str, params: Params) -> Message | None:
        row = await self._one(name, params)
        return _message(row) if row is not None else None

    async def _messages(self, name: str, params: Params) -> list[Message]:
        return [_message(row) for row in await self._rows(name, params)]

    # -- submission ------------------------------------------------------------------
    async def insert_message(self, message: Message, events: Sequence[Event]) -> Message:
        [stored] = await self.insert_messages([(message, events)])
        return stored

    async def insert_messages(
        self, items: Sequence[tuple[Message, Sequence[Event]]]
    ) -> list[Message]:
        stored: list[Message] = []
        rows: list[Params] = []
        events: list[Params] = []
        for m, first_events in items:
            self._seq += 1  # taken now: other inserts may move self._seq while this one waits
            stored.append(replace(m, seq=self._seq))
            rows.append((
                self._seq, m.id, m.sender, m.recipient, m.body, m.segments, int(m.lane),
                m.status.value, int(m.status is TextStatus.QUEUED), m.reason, m.provider_code,
                m.provider_id, m.attempt_id, m.duplicate_of, m.idempotency_key, m.fingerprint,
                _ts(m.accepted_at), _ts(m.expires_at), _ts(m.send_started_at), _ts(m.updated_at),
                m.campaign_id, m.trigger,
            ))  # fmt: skip
            events.extend(_event_row(e) for e in first_events)
        await self._write(("insert_message", rows), ("insert_event", events))
        return stored

    async def accepted_since(self, since: datetime) -> list[Message]:
        return await self._messages("accepted_since", (_ts(since),))

    async def by_idempotency_key(self, key: str) -> Message | None:
        return await self._message_or_none("by_idempotency_key", (key,))

    async def last_accepted_to(self, recipient: str) -> Message | None:
        return await self._message_or_none("last_accepted_to", (recipient,))

    # -- the queue -------------------------------------------------------------------
    async def head(self, sender: str) -> Message | None:
        return await self._message_or_none("head", (sender,))

    async def heads(self, senders: Sequence[str], limit: int) -> dict[str, list[Message]]:
        result: dict[str, list[Message]] = {sender: [] for sender in senders}
        for chunk in _chunks(list(senders), 500):
            for message in await self._messages("heads", (json.dumps(chunk), limit)):
                result[message.sender].append(message)
        return result

    async def queued_ahead(self, message: Message) -> int:
        lane = int(message.lane)
        row = await self._one("queued_ahead", (message.sender, lane, lane, message.seq))
        return int(row[0]) if row else 0

    async def numbers(self) -> list[NumberState]:
        return [
            NumberState(
                number=row[0], next_slot_at=_dt(row[1]), paused=bool(row[2]), depth=int(row[3])
            )
            for row in await self._rows("numbers", ())
        ]

    async def set_next_slot(self, sender: str, at: datetime) -> None:
        await self._write(("set_next_slot", [(sender, _ts(at))]))

    async def set_paused(self, sender: str, paused: bool) -> None:
        await self._write(("set_paused", [(sender, int(paused))]))

    async def next_expiry(self) -> datetime | None:
        row = await self._one("next_expiry", ())
        return _dt(row[0]) if row else None

    async def expired(self, now: datetime, limit: int) -> list[Message]:
        return await self._messages("expired", (_ts(now), limit))

    # -- transitions -----------------------------------------------------------------
    async def record(
        self,
        transitions: Sequence[Transition],
        next_slots: Mapping[str, datetime] | None = None,
    ) -> None:
        updates = [
            (
                t.event.status.value, t.event.reason, t.event.provider_code, _ts(t.event.at),
                t.provider_id, t.attempt_id, _ts(t.send_started_at), t.message_id,
            )
            for t in transitions
            if t.event.applied
        ]  # fmt: skip
        await self._write(
            ("insert_event", [_event_row(t.event) for t in transitions]),
            ("apply_transition", updates),
            ("set_next_slot", [(n, _ts(at)) for n, at in (next_slots or {}).items()]),
        )

    async def in_status(self, status: TextStatus, limit: int) -> list[Message]:
        return await self._messages("in_status", (status.value, limit))

    # -- reads -----------------------------------------------------------------------
    async def get(self, message_id: str) -> Message | None:
        return await self._message_or_none("get", (message_id,))

    async def by_provider_id(self, provider_id: str) -> Message | None:
        return await self._message_or_none("by_provider_id", (provider_id,))

    async def history(self, message_id: str) -> list[Event]:
        return [
            Event(
                message_id=row["message_id"],
                at=_at(row["at"]),
                status=TextStatus(row["status"]),
                reason=row["reason"],
                provider_code=row["provider_code"],
                source=Source(row["source"]),
                applied=bool(row["applied"]),
                detail=row["detail"],
            )
            for row in await self._rows("history", (message_id,))
        ]

    async def find(self, recipient: str, limit: int) -> list[Message]:
        return await self._messages("find", (recipient, limit))

    async def counts(self) -> dict[TextStatus, int]:
        return {TextStatus(row[0]): int(row[1]) for row in await self._rows("counts", ())}

    # -- Do Not Text list ------------------------------------------------------------
    async def dnt_add(self, entry: DntEntry) -> DntEntry:
        params = (entry.number, _ts(entry.added_at), entry.added_by, entry.reason)
        await self._write(("dnt_add", [params]))
        return await self.dnt_get(entry.number) or entry

    async def dnt_remove(self, number: str) -> bool:
        async with self._dnt_lock:  # "did it exist" must be answered once per removal
            existed = await self.dnt_get(number) is not None
            await self._write(("dnt_remove", [(number,)]))
        return existed

    async def dnt_get(self, number: str) -> DntEntry | None:
        row = await self._one("dnt_get", (number,))
        return _dnt(row) if row is not None else None

    async def dnt_many(self, numbers: Collection[str]) -> dict[str, DntEntry]:
        found: dict[str, DntEntry] = {}
        for chunk in _chunks(list(numbers), 500):
            for row in await self._rows("dnt_many", (json.dumps(chunk),)):
                found[row["number"]] = _dnt(row)
        return found

    async def dnt_list(self, limit: int) -> list[DntEntry]:
        return [_dnt(row) for row in await self._rows("dnt_list", (limit,))]

    # -- voice calls -----------------------------------------------------------------
    async def _call_or_none(self, name: str, params: Params) -> Call | None:
        row = await self._one(name, params)
        return _call(row) if row is not None else None

    async def _calls(self, name: str, params: Params) -> list[Call]:
        return [_call(row) for row in await self._rows(name, params)]

    async def insert_call(self, call: Call, events: Sequence[CallEvent]) -> Call:
        self._call_seq += 1  # taken now: other inserts may move it while this one waits
        c = replace(call, seq=self._call_seq)
        row = (
            c.seq, c.id, c.account, c.sender, c.recipient, c.script, c.script_name, int(c.lane),
            c.status.value, c.reason, c.provider_code, c.provider_id, c.attempt_id,
            _ts(c.placed_at), c.answered_by, int(c.script_done), c.idempotency_key,
            c.fingerprint, c.trigger, _ts(c.accepted_at), _ts(c.updated_at), c.campaign_id,
            _ts(c.expires_at),
        )  # fmt: skip
        await self._write(
            ("insert_call", [row]), ("insert_call_event", [_call_event_row(e) for e in events])
        )
        return c

    async def update_call(
        self,
        call: Call,
        events: Sequence[CallEvent],
        next_slot: tuple[str, datetime] | None = None,
    ) -> None:
        c = call
        projection = (
            c.status.value, c.reason, c.provider_code, c.provider_id, c.attempt_id,
            _ts(c.placed_at), c.answered_by, int(c.script_done), _ts(c.updated_at), c.id,
        )  # fmt: skip
        statements: list[tuple[str, list[Params]]] = [
            ("insert_call_event", [_call_event_row(e) for e in events]),
            ("update_call", [projection]),
        ]
        if next_slot is not None:
            account, at = next_slot
            statements.append(("set_call_slot", [(account, _ts(at))]))
        await self._write(*statements)  # one batch: one transaction

    async def get_call(self, call_id: str) -> Call | None:
        return await self._call_or_none("get_call", (call_id,))

    async def call_by_provider_id(self, provider_id: str) -> Call | None:
        return await self._call_or_none("call_by_provider_id", (provider_id,))

    async def call_by_idempotency_key(self, key: str) -> Call | None:
        return await self._call_or_none("call_by_idempotency_key", (key,))

    async def call_history(self, call_id: str) -> list[CallEvent]:
        return [_call_event(row) for row in await self._rows("call_history", (call_id,))]

    async def calls_in_status(self, statuses: Collection[CallStatus], limit: int) -> list[Call]:
        names = sorted({s.value for s in statuses})
        return await self._calls("calls_in_status", (json.dumps(names), limit))

    async def find_calls(self, recipient: str, limit: int) -> list[Call]:
        return await self._calls("find_calls", (recipient, limit))

    async def call_counts(self) -> dict[CallStatus, int]:
        return {CallStatus(row[0]): int(row[1]) for row in await self._rows("call_counts", ())}

    async def call_slots(self) -> dict[str, datetime]:
        return {row[0]: _at(row[1]) for row in await self._rows("call_slots", ())}

    # -- voice links and engagement metrics ------------------------------------------
    async def add_voice_link(
        self,
        token: str,
        *,
        message_id: str,
        campaign_id: str | None,
        message: str,
        created_at: datetime,
    ) -> None:
        row = (token, message_id, campaign_id, message, _ts(created_at))
        await self._write(("add_voice_link", [row]))

    async def voice_link(self, token: str) -> tuple[str, str] | None:
        row = await self._one("voice_link", (token,))
        return (row[0], row[1]) if row is not None else None

    async def record_play(self, token: str, at: datetime) -> None:
        await self._write(("record_play", [(token, _ts(at))]))

    async def engagement(self, query: MetricsQuery) -> list[EngagementRow]:
        since = _ts(query.since) if query.since is not None else _FIRST_US
        until = _ts(query.until) if query.until is not None else _LAST_US
        low, high = metrics.automation_range(query.automation)
        rule = (low, high) if query.automation is not None else (None, None)
        params = (since, until, query.campaign_id, query.sender, *rule)
        names = ("engagement_texts", "engagement_calls", "engagement_plays")
        raw = [await self._rows(name, params) for name in names]
        made = await self._rows("engagement_made", (since, until, low, high))
        wanted = sorted({s for r in made if (s := metrics.parse_trigger(r["trigger"])[1])})
        raw += [made, await self._rows("engagement_sources", (json.dumps(wanted),))]
        del made
        # A million events make about two seconds of Python: done in a worker thread
        # (which frees the database rows too), so sends keep their pace meanwhile.
        return await asyncio.to_thread(_engagement_rows, query, raw)


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
