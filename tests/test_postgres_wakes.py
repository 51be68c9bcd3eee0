"""New work wakes the workers, on a throwaway PostgreSQL cluster (``postgres``): one
store queues texts, another is told which keys got work (``LISTEN``/``NOTIFY``, one
notification per key per transaction), again after its listening connection is lost,
and through the polling fallback while it cannot listen. Campaigns and automation rules
changed by one store are told to another the same way, and a campaign's import is seen
alive while its worker holds the import's lock."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager

import asyncpg
import pytest

from dispatcher.core.campaigns import CampaignState
from dispatcher.core.model import Source, TextStatus, transition
from dispatcher.store import WorkCallback
from dispatcher.store.leasing import ANY_CHANGE
from dispatcher.store.memory import MemoryStore
from dispatcher.store.postgres.store import PostgresStore
from dispatcher.store.postgres.wakes import APPLICATION_NAME, CHANNEL
from tests.peers_postgres import Cluster
from tests.test_store_contract import T0, make_campaign, make_message

WITHIN = 10.0  # seconds a wake may take before the test fails


class Woken:
    """The keys a store reported, call by call."""

    def __init__(self) -> None:
        self.calls: list[frozenset[str]] = []
        self._changed = asyncio.Event()

    def __call__(self, keys: Collection[str]) -> None:
        self.calls.append(frozenset(keys))
        self._changed.set()

    @property
    def keys(self) -> set[str]:
        return set().union(*self.calls)

    async def until(self, *keys: str) -> None:
        """Until every one of ``keys`` was reported, within :data:`WITHIN` seconds."""
        async with asyncio.timeout(WITHIN):
            while not set(keys) <= self.keys:
                self._changed.clear()
                await self._changed.wait()


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WITHIN
    while not await check():
        assert time.monotonic() < deadline, f"not within {WITHIN} s: {what}"
        await asyncio.sleep(0.02)


@pytest.fixture
async def url(postgres: Cluster) -> str:
    return await postgres.fresh_database()


@pytest.fixture
async def writer(url: str) -> AsyncIterator[PostgresStore]:
    """The store that queues texts (a worker's own, without a listener)."""
    store = PostgresStore(url, min_size=1, max_size=4)
    async with store:
        yield store


@asynccontextmanager
async def listening(url: str, callback: WorkCallback) -> AsyncIterator[PostgresStore]:
    """A store of its own that reports to ``callback``, once it listens."""
    store = PostgresStore(url)
    store.on_work(callback)
    async with store:
        assert store.wakes is not None
        async with asyncio.timeout(WITHIN):
            await store.wakes.wait_listening()
        yield store


@pytest.fixture
async def woken(url: str) -> AsyncIterator[tuple[PostgresStore, Woken]]:
    """A second store, listening, once it listens."""
    woken = Woken()
    async with listening(url, woken) as store:
        yield store, woken


async def queue(store: PostgresStore, sender: str, *ids: str) -> None:
    """Texts queued on ``sender``, in one write."""
    await store.insert_messages([(make_message(i, sender=sender), []) for i in ids])


async def test_texts_queued_by_one_store_wake_another(
    writer: PostgresStore, woken: tuple[PostgresStore, Woken]
) -> None:
    _, seen = woken
    await queue(writer, "+14155550101", "a1", "a2", "a3")
    await seen.until("+14155550101")
    await writer.insert_messages([
        (make_message("b1", sender="+14155550102"), []),
        (make_message("c1", sender="+14155550103"), []),
    ])  # fmt: skip
    await seen.until("+14155550102", "+14155550103")
    assert seen.keys == {"+14155550101", "+14155550102", "+14155550103"}


async def test_one_notification_per_key_per_transaction(writer: PostgresStore, url: str) -> None:
    """Five texts on one key and two on another in one write: one notification each;
    a text written as not accepted (not Queued) notifies nothing."""
    got: list[str] = []
    arrived = asyncio.Event()
    listener = await asyncpg.connect(url)

    def heard(_db: object, _pid: int, _channel: str, payload: object) -> None:
        got.append(str(payload))
        if payload == "+14155550199":
            arrived.set()

    try:
        await listener.add_listener(CHANNEL, heard)
        unsent = make_message("u1", sender="+14155550103", status=TextStatus.UNSENT)
        await writer.insert_messages(
            [(make_message(f"k{i}", sender="+14155550101"), []) for i in range(5)]
            + [(make_message(f"j{i}", sender="+14155550102"), []) for i in range(2)]
            + [(unsent, [])]
        )
        await queue(writer, "+14155550199", "last")  # committed after: delivered after
        async with asyncio.timeout(WITHIN):
            await arrived.wait()
    finally:
        await listener.close()
    assert sorted(got) == ["+14155550101", "+14155550102", "+14155550199"]


async def test_a_text_back_on_the_queue_wakes(
    writer: PostgresStore, woken: tuple[PostgresStore, Woken]
) -> None:
    """A Pending text accepted onto the queue notifies as a new one does."""
    _, seen = woken
    pending = make_message("p1", sender="+14155550104", status=TextStatus.PENDING)
    await writer.insert_messages([(pending, [])])
    step, _ = transition(pending, TextStatus.QUEUED, at=T0, source=Source.SCHEDULER)
    await writer.record([step])
    await seen.until("+14155550104")


async def test_a_lost_listening_connection_is_replaced_and_misses_nothing(
    writer: PostgresStore, woken: tuple[PostgresStore, Woken], url: str
) -> None:
    """The listening session ended by the server: texts queued meanwhile are reported
    when it listens again, and later ones as they come."""
    store, seen = woken
    assert store.wakes is not None
    admin = await asyncpg.connect(url)
    try:
        ended = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1 AND datname = current_database()",
            APPLICATION_NAME,
        )
        assert ended == 1
        await queue(writer, "+14155550105", "gap1")  # maybe while nobody listens
        await seen.until("+14155550105")

        async def listens_anew() -> bool:
            n = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
                " AND datname = current_database()", APPLICATION_NAME)  # fmt: skip
            return n == 1 and store.wakes is not None and store.wakes.listening

        await eventually(listens_anew, "the listener listens again")
        await queue(writer, "+14155550106", "after1")
        await seen.until("+14155550106")
    finally:
        await admin.close()


async def test_while_it_cannot_listen_the_keys_with_work_are_polled(
    writer: PostgresStore, woken: tuple[PostgresStore, Woken], url: str, postgres: Cluster
) -> None:
    """The database refuses new connections and the listening session ends: the
    listener cannot listen again, and reports the keys with work through the store's
    open connections until it can."""
    store, seen = woken
    assert store.wakes is not None
    database = url.split("/")[3].split("?", maxsplit=1)[0]
    admin = await asyncpg.connect(postgres.url())  # on another database
    try:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = $1 AND datname = $2",
            APPLICATION_NAME, database,
        )  # fmt: skip

        async def not_listening() -> bool:
            return store.wakes is not None and not store.wakes.listening

        await eventually(not_listening, "the listener notices the loss")
        await queue(writer, "+14155550107", "polled1")
        await seen.until("+14155550107")
        assert not store.wakes.listening
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await admin.close()
    async with asyncio.timeout(WITHIN):
        await store.wakes.wait_listening()


async def test_a_store_for_one_service_never_calls_back() -> None:
    seen = Woken()
    async with MemoryStore() as store:
        store.on_work(seen)
        await store.insert_messages([(make_message("m1"), [])])
    assert seen.calls == []


async def test_a_callback_that_fails_is_logged_and_the_next_keys_still_come(
    writer: PostgresStore, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Woken()

    def failing(keys: Collection[str]) -> None:
        seen(keys)
        if len(seen.calls) == 1:
            raise RuntimeError("the engine is not ready")

    async with listening(url, failing):
        await queue(writer, "+14155550108", "f1")
        await seen.until("+14155550108")
        await queue(writer, "+14155550109", "f2")
        await seen.until("+14155550109")
    assert "store.wakes_callback_failed" in caplog.messages


async def test_campaigns_and_rules_changed_by_one_store_are_told_to_another(
    writer: PostgresStore, url: str
) -> None:
    """A campaign created or whose state changed, and a rule added or removed, are told
    to another store's change callback; a projected finish rewritten, or a state written
    over a state the writer did not expect, is not. The listener reports that anything
    may have changed when it starts listening (notifications before were missed)."""
    seen = Woken()
    store = PostgresStore(url)
    store.on_change(seen)
    async with store:
        await seen.until(ANY_CHANGE)
        campaign = make_campaign("cmp_told")
        await writer.create_campaign(campaign)
        await seen.until("campaign:cmp_told")
        seen.calls.clear()
        running = dataclasses.replace(campaign, state=CampaignState.RUNNING)
        assert await writer.update_campaign_from(running, CampaignState.IMPORTING)
        await seen.until("campaign:cmp_told")
        seen.calls.clear()
        # Not over a state it did not expect (another worker paused it meanwhile).
        finished = dataclasses.replace(campaign, state=CampaignState.FINISHED)
        assert not await writer.update_campaign_from(finished, CampaignState.PAUSED)
        assert (await writer.get_campaign("cmp_told")) == running
        await writer.update_campaign(dataclasses.replace(running, projected_finish=T0))
        await writer.add_rule("r1", "{}", T0)
        await seen.until("rules")
        assert seen.keys == {"rules"}  # the projected finish told nobody
        seen.calls.clear()
        await writer.delete_rule("r1")
        await seen.until("rules")


async def test_an_import_is_alive_while_its_worker_holds_its_lock(
    writer: PostgresStore, url: str
) -> None:
    """Another store sees a campaign's import alive while the importing store holds it,
    and not once it let go or its store closed (a worker that stopped or died)."""
    async with PostgresStore(url) as importer:
        assert not await writer.import_alive("cmp_a")
        async with importer.importing("cmp_a"):
            assert await writer.import_alive("cmp_a")
            assert not await writer.import_alive("cmp_b")
        assert not await writer.import_alive("cmp_a")
        lock = importer.importing("cmp_a")
        await lock.__aenter__()
        assert await writer.import_alive("cmp_a")
    assert not await writer.import_alive("cmp_a")  # its session ended with the store
