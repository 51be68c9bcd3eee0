"""The SQLite store's writer process: its protocol, its errors, its deaths.

The writer is a program of its own fed batches on a pipe (``writer_process.py``). A
batch is one transaction; a refused batch is answered as a fault (the service pauses)
or as a data error; a writer that dies fails the batches it had with
``StoreUnavailable`` and the next batch starts another; a writer never outlives its
service. With the service running, the simulator's send log is the judge: whatever
the writer's deaths, every accepted text is sent exactly once.
"""

from __future__ import annotations

import ast
import asyncio
import fcntl
import gc
import marshal
import os
import resource
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dispatcher import testing
from dispatcher.control.client import ControlClient
from dispatcher.core.model import Event, Lane, Message, Source, TextStatus, Transition, transition
from dispatcher.engine.texts import TextDesk
from dispatcher.errors import StoreError, StoreUnavailable
from dispatcher.store.sqlite import SQLiteStore, writer, writer_process
from dispatcher.store.sqlite.writer import WriterProcess
from dispatcher.store.sqlite.writer_process import HEADER
from dispatcher.testing import running_service, wait_for
from tests.helpers import Service, gaps_by_number, send_log
from tests.test_store_faults import CARRIER, fill, small_disk

NOW = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
SENDERS = ["+14155550100", "+14155550101", "+14155550102"]


def queued(message_id: str, key: str | None = None) -> tuple[Message, list[Event]]:
    message = Message(
        id=message_id, sender=SENDERS[0], recipient="+15550100001", body="hi", segments=1,
        lane=Lane.BULK, status=TextStatus.QUEUED, accepted_at=NOW,
        expires_at=NOW + timedelta(hours=1), updated_at=NOW, idempotency_key=key,
    )  # fmt: skip
    event = Event(message_id=message_id, at=NOW, status=TextStatus.QUEUED, source=Source.API)
    return message, [event]


def sending(message: Message) -> Transition:
    return transition(message, TextStatus.SENDING, at=NOW, source=Source.SCHEDULER)[0]


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie has ended: it only awaits its reaper)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def writers_of(pid: int) -> list[int]:
    """The writer processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"writer_process.py" in cmdline:
            found.append(int(entry.name))
    return found


def reaped(pid: int) -> bool:
    """Whether ``pid`` has ended and been waited for by its parent."""
    return not Path(f"/proc/{pid}").exists()


async def gone(pid: int) -> bool:
    return not running(pid)


# -- the program -------------------------------------------------------------------------


def test_the_writer_program_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(writer_process.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    }
    assert imported - {"__future__"} <= sys.stdlib_module_names, imported
    assert "dispatcher" not in imported
    assert writer.command(Path("x.db"))[:3] == [sys.executable, "-I", "-S"]


def _frame(statements: list[tuple[str, list[tuple[Any, ...]]]]) -> bytes:
    return writer.encode(statements)


def _answers(data: bytes) -> list[Any]:
    answers = []
    while data:
        (size,) = HEADER.unpack(data[: HEADER.size])
        answers.append(marshal.loads(data[HEADER.size : HEADER.size + size]))  # noqa: S302
        data = data[HEADER.size + size :]
    return answers


def test_the_program_answers_each_batch_and_exits_at_the_end_of_its_input(
    tmp_path: Path,
) -> None:
    db = tmp_path / "w.db"
    with sqlite3.connect(db) as setup:
        setup.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
    insert = "INSERT INTO t (k, v) VALUES (?, ?)"
    batches = [
        _frame([(insert, [("a", 1), ("b", 2)])]),
        _frame([(insert, [("c", 3)]), (insert, [("a", 9)])]),  # a broken key: all or nothing
        _frame([(insert, [("d", 4)]), ("UPDATE nowhere SET v = 1", [()])]),  # no such table
        _frame([(insert, [("e", 5)])]),
    ]
    cut = _frame([(insert, [("f", 6)])])[:-3]  # the service died while writing it
    done = subprocess.run(
        writer.command(db), input=b"".join(batches) + cut, capture_output=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    ready, ok, data_error, fault, last = _answers(done.stdout)
    assert (ready, ok, last) == (None, None, None)
    assert data_error[:2] == (False, "IntegrityError")
    assert fault[:2] == (True, "OperationalError")
    with sqlite3.connect(db) as check:
        assert check.execute("SELECT k FROM t ORDER BY k").fetchall() == [("a",), ("b",), ("e",)]


# -- the store's writer ------------------------------------------------------------------


@asynccontextmanager
async def opened(path: Path) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(path) as store:
        yield store


async def test_a_data_error_is_a_store_error_and_a_full_disk_is_a_fault(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        async with opened(disk / "t.db") as store:
            await store.insert_messages([queued("m1", key="k")])
            with pytest.raises(StoreError) as refused:
                await store.insert_messages([queued("m2", key="k")])
            assert not isinstance(refused.value, StoreUnavailable)
            assert isinstance(refused.value.__cause__, sqlite3.IntegrityError)

            fill(disk)
            many = [queued(f"big{i}") for i in range(2000)]
            with pytest.raises(StoreUnavailable, match="full") as fault:
                await store.insert_messages(many)
            assert isinstance(fault.value.__cause__, sqlite3.OperationalError)
            assert await store.get("big0") is None  # the whole batch rolled back
            (disk / "filler").unlink()
            await store.insert_messages(many)  # the same writer takes writes again
            assert await store.get("big1999") is not None


async def test_a_killed_writer_fails_its_batch_and_the_next_batch_starts_another(
    tmp_path: Path,
) -> None:
    async with opened(tmp_path / "t.db") as store:
        await store.insert_messages([queued("m0")])
        first = store.writer_pid
        assert first is not None
        os.kill(first, signal.SIGSTOP)  # it takes no batch now: they stay in flight
        writes = [asyncio.ensure_future(store.insert_messages([queued(f"m{i}")]))
                  for i in (1, 2, 3)]  # fmt: skip

        async def in_flight() -> bool:
            return store.writes_in_flight == len(writes)

        await wait_for(in_flight, what="the writes to reach the writer")
        os.kill(first, signal.SIGKILL)
        results = await asyncio.gather(*writes, return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        assert "signal 9" in str(results[0])
        assert not running(first)  # reaped

        await store.insert_messages([queued("m4")])
        assert store.writer_pid not in (None, first)
        assert [await store.get(f"m{i}") is not None for i in range(5)] == [
            True, False, False, False, True,
        ]  # fmt: skip


async def test_a_killed_writer_fails_the_future_its_batch_shares_and_every_write_beside_it(
    tmp_path: Path,
) -> None:
    # Writes handed over within 0.5 s of a commit gather for 0.5 s: all three join one
    # batch, whichever turn of the loop hands each over.
    async with SQLiteStore(tmp_path / "t.db", commit_window=0.5) as store:
        m1, m2, m3 = await store.insert_messages([queued(f"m{i}") for i in (1, 2, 3)])
        first = store.writer_pid
        assert first is not None
        os.kill(first, signal.SIGSTOP)
        shared = [store.record_soon([sending(m)]) for m in (m1, m2)]  # nothing awaits them
        awaited = asyncio.ensure_future(store.record([sending(m3)]))
        assert shared[0] is shared[1]

        async def in_flight() -> bool:
            return store.writes_in_flight == 3

        await wait_for(in_flight, what="the three writes to reach the writer")
        os.kill(first, signal.SIGKILL)
        results = await asyncio.gather(shared[0], awaited, return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        assert [(await store.get(m.id)).status for m in (m1, m2, m3)] == [  # type: ignore[union-attr]
            TextStatus.QUEUED, TextStatus.QUEUED, TextStatus.QUEUED,
        ]  # fmt: skip
        again = store.record_soon([sending(m1)])  # the next batch: its own future, a new writer
        assert again is not shared[0]
        await again
        assert (await store.get(m1.id)).status is TextStatus.SENDING  # type: ignore[union-attr]


async def test_close_ends_and_reaps_the_writer_and_kills_one_that_hangs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    async with opened(tmp_path / "t.db") as store:
        await store.insert_messages([queued(f"m{i}") for i in range(500)])
        pid = store.writer_pid
        assert pid is not None
    assert reaped(pid)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert after.ru_utime + after.ru_stime > before.ru_utime + before.ru_stime

    monkeypatch.setattr(writer, "CLOSE_TIMEOUT", 0.2)
    async with opened(tmp_path / "t.db") as store:
        await store.insert_messages([queued("late")])
        hung = store.writer_pid
        assert hung is not None
        os.kill(hung, signal.SIGSTOP)  # a writer that does not end by itself
    assert reaped(hung)


async def test_a_value_sqlite_binds_in_the_service_is_written_as_it_would_bind_it(
    tmp_path: Path,
) -> None:
    db = tmp_path / "t.db"
    with sqlite3.connect(db) as setup:
        setup.execute("CREATE TABLE t (s, i)")
    process = WriterProcess(db)
    await process.start()
    try:
        await process.run([("INSERT INTO t VALUES (?, ?)", [(TextStatus.SENT, Lane.BULK)])])
        with pytest.raises(StoreError, match="cannot write"):
            await process.run([("INSERT INTO t VALUES (?, ?)", [(object(), 1)])])
    finally:
        await process.close()
    with sqlite3.connect(db) as check:
        assert check.execute("SELECT s, i FROM t").fetchall() == [("Sent", int(Lane.BULK))]


# -- the running service -----------------------------------------------------------------


class Harness(testing.Harness):
    async def faulted(self) -> bool:
        return (await self.service.status()).store_fault is not None

    async def healthy(self) -> bool:
        return (await self.service.status()).store_fault is None

    def sends(self) -> Counter[str]:
        return Counter(str(r["message_id"]) for r in self.simulator.records())


@asynccontextmanager
async def service_on(home: Path) -> AsyncIterator[tuple[Harness, SQLiteStore]]:
    store = SQLiteStore(home / "dispatcher.db", commit_window=0.002)
    async with running_service(home, simulator=CARRIER, store=store) as harness:
        yield Harness.of(harness), store


def settled(h: Harness, texts: list[Message]) -> Callable[[], Awaitable[bool]]:
    async def done() -> bool:
        return all([await h.status_of(m) is TextStatus.DELIVERED for m in texts])

    return done


async def test_kill_9_of_the_writer_with_batches_in_flight_loses_and_repeats_no_text(
    tmp_path: Path,
) -> None:
    paused = 0
    async with service_on(tmp_path) as (h, store):
        # 16 texts a number: about 16 fake seconds of sends.
        texts = [await h.text(SENDERS[i % 3], f"+165055503{i:02d}", f"text {i}", lane=Lane.BULK)
                 for i in range(48)]  # fmt: skip
        for death in range(6):
            await h.advance_at_polls(h.healthy, what="the service to take writes")
            # A text more on each number, so there are writes to lose at this death
            # however far the fake clock ran in the recoveries before it (the polls move
            # it further on a slow machine).
            texts += [await h.text(sender, f"+16505551{death}{k:02d}", f"more {death}.{k}",
                                   lane=Lane.BULK) for k, sender in enumerate(SENDERS)]  # fmt: skip
            pid = store.writer_pid or await _started(h, store)
            if death % 2 == 0:
                # Stopped while it waits for its next batch; that batch stays in the pipe:
                # its answer is surely lost.
                await _turns_until(h, lambda: not store.writes_in_flight)
                os.kill(pid, signal.SIGSTOP)
                try:
                    await h.advance_at_polls(lambda: _unread(pid), what="a batch in the pipe")  # noqa: B023
                finally:
                    os.kill(pid, signal.SIGKILL)
                await h.advance_at_polls(h.faulted, what="the service to pause")
                paused += 1
            else:
                # Killed while a batch is with it: running, committed, or answered.
                await _turns_until(h, lambda: bool(store.writes_in_flight))
                os.kill(pid, signal.SIGKILL)
            await h.advance_at_polls(lambda: _replaced(store, pid), what="a new writer")  # noqa: B023
        await h.advance_at_polls(settled(h, texts), what="every text to be delivered")
        assert await h.healthy()
    assert paused == 3
    assert h.sends() == Counter({m.id: 1 for m in texts})  # none lost, none twice
    gaps = gaps_by_number(list(h.simulator.records()))
    assert min(g for per in gaps.values() for g in per) >= 1.0


async def _unread(pid: int) -> bool:
    """Whether bytes wait in the stdin pipe of process ``pid``: a batch it has not read."""
    fd = os.open(f"/proc/{pid}/fd/0", os.O_RDONLY | os.O_NONBLOCK)
    try:
        waiting = fcntl.ioctl(fd, termios.FIONREAD, struct.pack("i", 0))
    finally:
        os.close(fd)
    return bool(struct.unpack("i", waiting)[0])


async def _replaced(store: SQLiteStore, pid: int) -> bool:
    return store.writer_pid not in (None, pid)


async def _turns_until(h: Harness, holds: Callable[[], bool], within: float = 60.0) -> None:
    """Return as soon as ``holds()``, checked at every turn of the event loop (a batch
    is with the writer for a few milliseconds: polls would miss it), the fake clock
    moving 10 ms a turn."""
    deadline = time.monotonic() + within
    while not holds():
        if time.monotonic() > deadline:
            raise AssertionError(f"not so within {within} s")
        await h.clock.advance(0.01)
        await asyncio.sleep(0)


async def _started(h: Harness, store: SQLiteStore) -> int:
    """The writer's process id, once the next batch has started one."""

    async def started() -> bool:
        return store.writer_pid is not None

    await h.advance_at_polls(started, what="a writer process")
    assert store.writer_pid is not None
    return store.writer_pid


@pytest.mark.parametrize("lost", [TextStatus.SENDING, TextStatus.SENT])
async def test_a_batch_committed_whose_answer_was_lost_is_settled_not_resent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lost: TextStatus
) -> None:
    """The writer commits the batch with the intent to send (or the record of the
    send) and dies before its answer reaches the service: the writes hear
    ``StoreUnavailable`` for a batch that is in the database."""
    target: list[str] = []
    real_run = WriterProcess.run

    async def commit_then_die(self: WriterProcess, statements: writer.Statements) -> None:
        await real_run(self, statements)
        if target and any(
            sql.lstrip().startswith("INSERT INTO events") and row[0] == target[0]
            and row[2] == lost.value
            for sql, rows in statements for row in rows
        ):  # fmt: skip
            target.clear()
            assert self.pid is not None
            os.kill(self.pid, signal.SIGKILL)
            await real_run(self, [])  # the answer is not there: StoreUnavailable
            raise AssertionError("a dead writer answered")

    monkeypatch.setattr(WriterProcess, "run", commit_then_die)
    async with service_on(tmp_path) as (h, _store):
        h.service.hold()
        first = await h.text(SENDERS[0], "+16505550401", "first")
        later = await h.text(SENDERS[0], "+16505550402", "later")
        target.append(first.id)
        h.service.release()
        await h.advance_at_polls(h.faulted, what="the lost answer")
        assert not target
        await h.advance_at_polls(settled(h, [first, later]), what="both texts to be delivered")
        history = (await h.service.message(first.id)).history
    assert h.sends() == Counter({first.id: 1, later.id: 1})
    P, Q, SG, ST, D = (TextStatus.PENDING, TextStatus.QUEUED, TextStatus.SENDING,
                       TextStatus.SENT, TextStatus.DELIVERED)  # fmt: skip
    applied = [(e.status, e.reason) for e in history if e.applied]
    if lost is TextStatus.SENDING:  # the committed intent: the carrier never had it
        assert [status for status, _ in applied] == [P, Q, SG, Q, SG, ST, D]
        assert applied[3][1] == "not_received_by_provider"
    else:  # the committed record of the send stands
        assert [status for status, _ in applied] == [P, Q, SG, ST, D]


async def test_the_sends_records_of_one_batch_wake_one_callback(tmp_path: Path) -> None:
    """Each Sent is handed to the store without waiting; those of one batch share its
    future, on which the texts desk puts one done callback (a thousand Sent in a batch
    woke a thousand callbacks in one turn of the loop), and the texts they move out of
    Sending are no longer counted as being written once it is done."""
    shares: Counter[int] = Counter()  # writes handed over with each future
    callbacks: dict[int, int] = {}  # the most done callbacks seen on it

    async with service_on(tmp_path) as (h, store):
        record_soon = store.record_soon

        def spied(
            steps: Sequence[Transition], next_slots: Mapping[str, datetime] | None = None
        ) -> asyncio.Future[None]:
            written = record_soon(steps, next_slots)
            shares[id(written)] += 1

            def look() -> None:  # once the desk has watched it
                if not written.done():
                    seen = len(getattr(written, "_callbacks", None) or ())
                    callbacks[id(written)] = max(callbacks.get(id(written), 0), seen)

            asyncio.get_running_loop().call_soon(look)
            return written

        store.record_soon = spied  # type: ignore[method-assign,assignment]
        h.service.hold()
        texts = [await h.text(f"+1415555030{i}", f"+165055506{i:02d}", f"text {i}")
                 for i in range(8)]  # fmt: skip
        h.service.release()
        await h.advance_at_polls(settled(h, texts), what="every text to be delivered")
        assert not h.service.texts._writing
    shared = [key for key, n in shares.items() if n >= 2]
    assert shared, shares
    assert [callbacks.get(key) for key in shared] == [1] * len(shared)


async def test_a_batch_of_sends_records_lost_with_its_writer_is_one_fault_and_none_resent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Sent of several texts, handed over together, share one future; the writer
    dies before that batch commits. The texts desk hears the error once (the future's
    error is retrieved: no "exception was never retrieved"), the service pauses, and
    each text is settled by asking the carrier, never sent again."""
    lost: list[int] = []  # the Sent in the batch the writer died with
    real_run = WriterProcess.run

    async def die_before(self: WriterProcess, statements: writer.Statements) -> None:
        sent = sum(row[2] == TextStatus.SENT.value for sql, rows in statements
                   if sql.lstrip().startswith("INSERT INTO events") for row in rows)  # fmt: skip
        if not lost and sent >= 2:
            lost.append(sent)
            assert self.pid is not None
            os.kill(self.pid, signal.SIGKILL)
        await real_run(self, statements)

    failed: list[BaseException] = []  # the failed futures the texts desk was told of
    written = TextDesk._written

    def watched(desk: TextDesk, leaving: list[str], future: asyncio.Future[None]) -> None:
        if not future.cancelled() and (exc := future.exception()) is not None:
            failed.append(exc)
        written(desk, leaving, future)

    monkeypatch.setattr(WriterProcess, "run", die_before)
    monkeypatch.setattr(TextDesk, "_written", watched)
    loop = asyncio.get_running_loop()
    unhandled: list[str] = []
    loop.set_exception_handler(lambda _, context: unhandled.append(str(context["message"])))
    try:
        async with service_on(tmp_path) as (h, _store):
            h.service.hold()
            texts = [await h.text(f"+1415555020{i}", f"+165055504{i:02d}", f"text {i}")
                     for i in range(6)]  # fmt: skip
            h.service.release()
            await h.advance_at_polls(h.faulted, what="the lost batch")
            await h.advance_at_polls(settled(h, texts), what="every text to be delivered")
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert lost
    assert lost[0] >= 2
    assert len(failed) == 1
    assert isinstance(failed[0], StoreUnavailable)
    assert [m for m in unhandled if "never retrieved" in m] == []
    assert h.sends() == Counter({m.id: 1 for m in texts})


@pytest.mark.acceptance
async def test_kill_9_of_the_service_leaves_no_writer_and_loses_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    service = Service(home)
    await service.start()
    accepted: list[str] = []
    try:
        async with ControlClient(service.socket) as client:
            for i in range(30):
                answer = await client.call(
                    "submit", **{"from": SENDERS[i % 3]}, to=f"+1650555{i:04d}", body=f"t {i}"
                )
                accepted.append(answer["id"])

        async def sent(n: int) -> bool:
            return len(send_log(home)) >= n

        await wait_for(lambda: sent(6), what="6 sends")
        assert service.process is not None
        [orphan] = writers_of(service.process.pid)
        service.kill9()
        await wait_for(lambda: gone(orphan), what="the writer to end with its service")

        await service.start()
        assert service.process is not None
        [successor] = writers_of(service.process.pid)

        async with ControlClient(service.socket) as status:

            async def settled_all() -> bool:
                counts: dict[str, int] = (await status.call("status"))["counts"]
                return counts.get("Delivered", 0) == len(accepted)

            await wait_for(settled_all, what="every accepted text to be delivered")
    finally:
        assert service.stop() == 0
    assert not running(successor)  # ended with the service's shutdown
    logged = [r["message_id"] for r in send_log(home)]
    assert sorted(logged) == sorted(accepted)  # each once: none lost, none twice
    assert min(g for per in gaps_by_number(send_log(home)).values() for g in per) >= 1.0
