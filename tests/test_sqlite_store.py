"""The SQLite store's group commit: batches are atomic and keep their writers' order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest

from dispatcher.core.model import Event, Lane, Message, Source, TextStatus
from dispatcher.errors import StoreError
from dispatcher.store.queries import load_queries
from dispatcher.store.sqlite import SQLiteStore

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
