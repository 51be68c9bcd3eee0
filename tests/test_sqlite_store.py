"""The SQLite store's group commit: batches are atomic and keep their writers' order."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest

from dispatcher.core.model import Event, Lane, Message, Source, TextStatus, Transition, transition
from dispatcher.errors import StoreError
from dispatcher.store.queries import load_queries
from dispatcher.store.sqlite import SQLiteStore, connection
from dispatcher.testing import wait_for

NOW = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


def queued(message_id: str, key: str | None = None) -> tuple[Message, list[Event]]:
    message = Message(
        id=message_id, sender="+15550000001", recipient="+15550100001", body="hi",
        segments=1, lane=Lane.BULK, status=TextStatus.QUEUED, accepted_at=NOW,
        expires_at=NOW + timedelta(hours=1), updated_at=NOW, idempotency_key=key,
    )  # fmt: skip
    event = Event(message_id=message_id, at=NOW, status=TextStatus.QUEUED, source=Source.API)
    return message, [event]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(tmp_path / "t.db", commit_window=0.01) as opened:
        yield opened


async def test_a_failing_write_rolls_back_its_whole_batch(store: SQLiteStore) -> None:
    # The window gathers all three writes into one batch; the second breaks a unique key.
    results = await asyncio.gather(
        store.insert_messages([queued("m1", key="k")]),
        store.insert_messages([queued("m2", key="k")]),
        store.record([], next_slots={"+15550000001": NOW}),
        return_exceptions=True,
    )
    assert all(isinstance(r, StoreError) for r in results)
    assert await store.get("m1") is None
    assert await store.get("m2") is None
    assert await store.numbers() == []
    # The store still works after the failed batch.
    await store.insert_messages([queued("m3", key="k")])
    assert await store.get("m3") is not None


async def test_writes_of_one_batch_keep_their_order_across_barriers(store: SQLiteStore) -> None:
    number = "+15550000001"
    await asyncio.gather(
        store.record([], next_slots={number: NOW}),
        store.set_paused(number, True),
        store.record([], next_slots={number: NOW + timedelta(seconds=1)}),
        store.set_paused(number, False),
        store.set_paused(number, True),
        store.record([], next_slots={number: NOW + timedelta(seconds=2)}),
    )
    [state] = await store.numbers()
    assert state.paused
    assert state.next_slot_at == NOW + timedelta(seconds=2)


def test_every_named_query_is_used() -> None:
    adapter = resources.files("dispatcher.store.sqlite")
    code = "".join(f.read_text() for f in adapter.iterdir() if f.name.endswith(".py"))
    assert [name for name in load_queries("sqlite") if f'"{name}"' not in code] == []


# -- claims ahead of the writes in order ---------------------------------------------------


def step(message: Message, status: TextStatus) -> Transition:
    return transition(message, status, at=NOW, source=Source.SCHEDULER)[0]


@asynccontextmanager
async def writer_stopped(store: SQLiteStore) -> AsyncIterator[None]:
    """A batch in flight at a stopped writer: the writes handed over meanwhile gather
    behind it, and go once the writer runs again."""
    pid = store.writer_pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        in_flight = store.record_soon([], next_slots={"+15550000009": NOW})

        async def sent() -> bool:
            return store.writes_in_flight == 1

        await wait_for(sent, what="a batch to reach the stopped writer")
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
    await in_flight


def events_in_commit_order(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT message_id, status FROM events ORDER BY id").fetchall()
    return [(str(m), str(s)) for m, s in rows if str(s) != TextStatus.QUEUED.value]


async def committed_in_order(*writes: tuple[str, Awaitable[None]]) -> list[str]:
    """The labels of ``writes`` in the order their commits were reported."""
    order: list[str] = []

    async def labelled(label: str, write: Awaitable[None]) -> None:
        await write
        order.append(label)

    await asyncio.gather(*(labelled(label, write) for label, write in writes))
    return order


async def test_a_claim_commits_ahead_of_the_writes_in_order(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "t.db") as store:
        m1, m2, m3 = await store.insert_messages([queued(f"m{i}") for i in (1, 2, 3)])
        async with writer_stopped(store):
            sent = store.record_soon([step(m1, TextStatus.SENDING)])  # nothing waits for it
            other = store.record_soon([step(m2, TextStatus.SENDING)])
            claim = asyncio.ensure_future(store.record([step(m3, TextStatus.SENDING)], ahead=True))
            await asyncio.sleep(0)  # the claim is handed over, behind the other two
        order = await committed_in_order(("sent", sent), ("other", other), ("claim", claim))
    assert order == ["claim", "sent", "other"]
    assert events_in_commit_order(tmp_path / "t.db") == [
        ("m3", "Sending"), ("m1", "Sending"), ("m2", "Sending"),
    ]  # fmt: skip


async def test_a_claim_never_commits_ahead_of_an_earlier_write_of_its_own_message(
    tmp_path: Path,
) -> None:
    async with SQLiteStore(tmp_path / "t.db") as store:
        m1, m2, m3 = await store.insert_messages([queued(f"m{i}") for i in (1, 2, 3)])
        async with writer_stopped(store):
            retried = store.record_soon([step(m1, TextStatus.UNSENT)])
            other = store.record_soon([step(m2, TextStatus.SENDING)])
            claims = [
                asyncio.ensure_future(store.record([step(m, TextStatus.SENDING)], ahead=True))
                for m in (m3, m1)
            ]  # the first may go ahead; the second is m1's, behind m1's own write
            await asyncio.sleep(0)
        await asyncio.gather(retried, other, *claims)
        assert (await store.get("m1")).status is TextStatus.SENDING  # type: ignore[union-attr]
    # m1's claim came after its own earlier write, and with it everything handed over
    # before that write (m2's, in order); m3's claim had nothing of its own to wait for.
    assert events_in_commit_order(tmp_path / "t.db") == [
        ("m3", "Sending"), ("m1", "Unsent"), ("m2", "Sending"), ("m1", "Sending"),
    ]  # fmt: skip


async def test_a_claim_waits_behind_a_full_backlog_of_writes_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "BACKLOG", 4)  # rows: each transition writes two
    async with SQLiteStore(tmp_path / "t.db") as store:
        m1, m2, m3 = await store.insert_messages([queued(f"m{i}") for i in (1, 2, 3)])
        async with writer_stopped(store):
            backlog = [store.record_soon([step(m, TextStatus.SENDING)]) for m in (m1, m2)]
            claim = asyncio.ensure_future(store.record([step(m3, TextStatus.SENDING)], ahead=True))
            await asyncio.sleep(0)
        await asyncio.gather(*backlog, claim)
    assert events_in_commit_order(tmp_path / "t.db") == [
        ("m1", "Sending"), ("m2", "Sending"), ("m3", "Sending"),
    ]  # fmt: skip


async def test_writes_nothing_awaits_share_one_future_per_batch(store: SQLiteStore) -> None:
    # Handed over while one batch gathers, they share its future: the caller watches
    # one done callback per batch, not one per write.
    first = store.record_soon([], next_slots={"+15550000001": NOW})
    second = store.record_soon([], next_slots={"+15550000002": NOW})
    assert first is second
    await first
    later = store.record_soon([], next_slots={"+15550000003": NOW})
    assert later is not first  # the next batch has its own
    await later
    assert {s.number for s in await store.numbers()} == {
        "+15550000001", "+15550000002", "+15550000003",
    }  # fmt: skip


async def test_a_new_text_is_written_ahead_of_the_send_paths_next_batch(
    store: SQLiteStore,
) -> None:
    # A batch is being written; meanwhile a status change and a new text gather. The
    # new text's batch goes first: a submission never waits behind the send path's.
    first = store.record_soon([], next_slots={"+15550000001": NOW})
    for _ in range(1000):  # bounded: until the writer has the first batch
        if store.writes_in_flight:
            break
        await asyncio.sleep(0)
    assert store.writes_in_flight
    gathered = store.record_soon([], next_slots={"+15550000002": NOW})
    [stored] = await store.insert_messages([queued("m1")])
    assert stored.id == "m1"
    assert not gathered.done()  # written after the new text
    await asyncio.gather(first, gathered)
    assert {s.number for s in await store.numbers()} == {"+15550000001", "+15550000002"}
    # New texts still commit in the order they came, whichever batch each joined.
    done: list[str] = []

    async def submit(message_id: str) -> None:
        await store.insert_messages([queued(message_id)])
        done.append(message_id)

    writes = []
    for i in range(6):
        writes.append(asyncio.ensure_future(submit(f"n{i}")))
        store.record_soon([], next_slots={f"+1555000010{i}": NOW})
        await asyncio.sleep(0)
    await asyncio.gather(*writes)
    assert done == [f"n{i}" for i in range(6)]
