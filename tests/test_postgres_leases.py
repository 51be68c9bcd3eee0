"""Leases on pacing keys and the one-round-trip start of a send, on a throwaway
PostgreSQL cluster (``postgres``): workers contending for keys, the fencing of a
worker that lost its key, expiry and takeover, a previous owner's next slot, and many
connections racing with never two sends in flight from one key."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest

from dispatcher.clock import FakeClock, SystemClock
from dispatcher.core.model import Message, Reason, Source, TextStatus, Transition, transition
from dispatcher.engine.ownership import Leased
from dispatcher.errors import StoreUnavailable
from dispatcher.store import open_store
from dispatcher.store.leasing import KeyWork
from dispatcher.store.postgres.connection import PostgresConnection
from dispatcher.store.postgres.leases import Lease, Leases, Send, StartOutcome, worker_id
from dispatcher.store.postgres.store import PostgresStore
from tests.peers_postgres import Cluster

SECOND = timedelta(seconds=1)
_ids = itertools.count(1)


@pytest.fixture
async def db(postgres: Cluster) -> AsyncIterator[PostgresStore]:
    """The store: the leases' statements and the texts' writes (``record``) share it."""
    async with PostgresStore(await postgres.fresh_database(), max_size=12) as store:
        yield store


# Messages are put on the queue with SQL of their own here: rows with what the leases
# and the store's reads need, without a whole text to build.
async def queue(db: PostgresConnection, key: str, count: int = 1) -> list[str]:
    ids = [f"m{next(_ids)}" for _ in range(count)]
    await db.pool.executemany(
        "INSERT INTO messages (id, sender, recipient, body, segments, lane, status, accepted,"
        " accepted_at, expires_at, updated_at) VALUES ($1, $2, '+15550001111', 'hi', 1, 1,"
        " 'Queued', true, now(), now() + interval '1 hour', now())",
        [(message_id, key) for message_id in ids],
    )
    await Leases(db, SystemClock(), "queue").add_keys([key])
    return ids


async def numbers_with_work(db: PostgresConnection, count: int, texts: int = 1) -> list[str]:
    """``count`` sending numbers with ``texts`` texts Queued on each."""
    keys = [f"+1555000{i:04d}" for i in range(count)]
    for key in keys:
        await queue(db, key, texts)
    return keys


async def head(db: PostgresConnection, key: str) -> str | None:
    found: str | None = await db.pool.fetchval(
        "SELECT id FROM messages WHERE sender = $1 AND status = 'Queued'"
        " ORDER BY lane, seq LIMIT 1",
        key,
    )
    return found


async def status(db: PostgresConnection, message_id: str) -> tuple[str, int | None]:
    row = await db.pool.fetchrow("SELECT status, epoch FROM messages WHERE id = $1", message_id)
    assert row is not None
    return row["status"], row["epoch"]


async def worker(
    db: PostgresConnection, name: str, *, lease: float = 6.0, clock: FakeClock | None = None
) -> Leases:
    leases = Leases(db, clock or SystemClock(), worker_id(name), lease_seconds=lease,
                    min_lease_seconds=min(1.0, lease / 3))  # fmt: skip
    await leases.register()
    return leases


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.02)


def answer(text: Message, epoch: int, status: TextStatus, **fields: Any) -> Transition:
    """The provider's answer to the send of ``text`` started under ``epoch``, as a worker
    records it: a step out of Sending, fenced on that status and epoch (``Leased.fence``),
    whatever the database has of the text now."""
    started = msgspec.structs.replace(text, status=TextStatus.SENDING)
    step, _ = transition(started, status, at=datetime.now(UTC), source=Source.PROVIDER,
                         **fields)  # fmt: skip
    return msgspec.structs.replace(step, fenced=True, epoch=epoch)


async def sent(
    db: PostgresStore,
    sends: Sequence[tuple[str, int]],
    next_slots: Mapping[str, datetime] | None = None,
) -> None:
    """Record the Sent of each text started under its epoch, in one write of the store
    (as the engine does after a send, with the numbers' next slots when given)."""
    steps = []
    for message_id, epoch in sends:
        text = await db.get(message_id)
        assert text is not None
        steps.append(answer(text, epoch, TextStatus.SENT, provider_id=f"SM{message_id}"))
    await db.record(steps, next_slots)


async def next_slot(db: PostgresConnection, key: str) -> datetime | None:
    at: datetime | None = await db.pool.fetchval(
        "SELECT next_slot_at FROM pacing_keys WHERE key = $1", key
    )
    return at


async def events(db: PostgresConnection, message_id: str) -> list[tuple[str, str]]:
    rows = await db.pool.fetch(
        "SELECT status, source FROM events WHERE message_id = $1 ORDER BY id", message_id
    )
    return [(row["status"], row["source"]) for row in rows]


async def test_two_workers_share_the_keys_with_work(db: PostgresConnection) -> None:
    for key in ("+15550000001", "+15550000002", "+15550000003", "+15550000004"):
        await queue(db, key)
    await db.pool.execute("INSERT INTO pacing_keys (key) VALUES ('+15550000009')")  # no work
    one, two = await worker(db, "one"), await worker(db, "two")
    first = await one.acquire()
    assert first.share == 2  # 4 keys in play, 2 live workers
    second = await two.acquire()
    assert second.share == 2
    assert len(first.taken) == len(second.taken) == 2
    assert {lease.key for lease in first.taken}.isdisjoint(lease.key for lease in second.taken)
    assert all(lease.epoch == 1 for lease in [*first.taken, *second.taken])
    assert (await one.acquire()).taken == []  # nothing free; a key without work is not taken
    assert await one.renew() == []
    assert set(one.held) == {lease.key for lease in first.taken}


async def test_the_share_counts_live_workers_and_skips_paused_keys(
    db: PostgresConnection,
) -> None:
    keys = await numbers_with_work(db, 5)
    await db.pool.execute("UPDATE pacing_keys SET paused = true WHERE key = $1", keys[-1])
    one, gone = await worker(db, "one"), await worker(db, "gone")
    await db.pool.execute(  # its heartbeat stopped a minute ago: it no longer counts
        "UPDATE workers SET heartbeat_at = now() - interval '1 minute' WHERE id = $1", gone.worker
    )
    acquired = await one.acquire()
    assert acquired.share == 4  # four keys in play (one paused), one live worker
    assert sorted(lease.key for lease in acquired.taken) == keys[:-1]


async def test_workers_acquiring_at_once_never_take_the_same_key(db: PostgresConnection) -> None:
    keys = await numbers_with_work(db, 40)
    workers = [await worker(db, f"w{i}") for i in range(6)]
    results = await asyncio.gather(*(w.acquire() for w in workers))
    taken = [lease.key for result in results for lease in result.taken]
    assert len(taken) == len(set(taken))
    assert all(len(result.taken) <= result.share for result in results)
    for _ in range(3):  # whoever was skipped takes the rest, up to the share
        await asyncio.gather(*(w.acquire() for w in workers))
    owners = await db.pool.fetch("SELECT owner, count(*) AS n FROM pacing_keys GROUP BY owner")
    assert sum(row["n"] for row in owners) == len(keys)
    assert all(row["owner"] is not None and row["n"] <= 7 for row in owners)  # ceil(40 / 6)


async def test_a_worker_that_lost_its_key_changes_nothing(db: PostgresStore) -> None:
    key = "+15550000001"
    m1, m2, m3 = await queue(db, key, 3)
    old = await worker(db, "old", lease=0.6)
    [lease] = (await old.acquire()).taken
    start = await old.start_send(lease, m1, "a1", timedelta(0))
    assert start.outcome is StartOutcome.STARTED
    assert start.trusted
    await sent(db, [(m1, lease.epoch)])
    assert await status(db, m1) == ("Sent", lease.epoch)
    new = await worker(db, "new")

    async def taken_over() -> bool:
        return bool((await new.acquire()).taken)

    await eventually(taken_over, "the new worker takes the lapsed key")
    [fresh] = new.held.values()
    assert fresh.epoch == lease.epoch + 1
    assert (await new.start_send(fresh, m2, "a2", timedelta(0))).outcome is StartOutcome.STARTED
    # The old owner, stalled past its lease, wakes up and carries on as if it held it:
    stale = Lease(key, lease.epoch, time.monotonic() + 60, None)  # its clock says "still mine"
    refused = await old.start_send(stale, m3, "a3", timedelta(0))
    assert refused.outcome is StartOutcome.NOT_OWNER
    assert not refused.trusted
    assert old.held == {}  # the refusal told it the key is gone
    # It records a failure of m2 under its own epoch, with a next slot a minute on:
    m2_now = await db.get(m2)
    assert m2_now is not None
    slot = await next_slot(db, key)
    await db.record([answer(m2_now, lease.epoch, TextStatus.FAILED)],
                    {key: datetime.now(UTC) + timedelta(minutes=1)})  # fmt: skip
    assert await status(db, m2) == ("Sending", fresh.epoch)
    assert await events(db, m2) == [("Sending", "scheduler")]
    assert await next_slot(db, key) == slot
    assert await status(db, m3) == ("Queued", None)
    await sent(db, [(m2, fresh.epoch)])
    assert await status(db, m2) == ("Sent", fresh.epoch)
    assert await events(db, m2) == [("Sending", "scheduler"), ("Sent", "provider")]


async def test_a_lease_lapses_by_the_workers_own_clock_first(db: PostgresConnection) -> None:
    key = "+15550000001"
    [m1] = await queue(db, key)
    clock = FakeClock()
    one = await worker(db, "one", lease=6.0, clock=clock)
    [lease] = (await one.acquire()).taken
    clock.stall(6.0)  # the process was stopped: the database's lease may have lapsed
    assert not one.trusted(lease)
    start = await one.start_send(lease, m1, "a1", SECOND)
    assert start.outcome is StartOutcome.LEASE_SHORT
    assert not start.trusted
    assert await status(db, m1) == ("Queued", None)  # nothing was asked of the database
    assert await one.renew() == []  # the database's lease had not lapsed: renewed
    [renewed] = one.held.values()
    assert one.trusted(renewed)  # from the clock's new reading


async def test_a_lease_too_short_for_a_send_starts_nothing(db: PostgresConnection) -> None:
    [m1] = await queue(db, "+15550000001")
    one = await worker(db, "one")
    [lease] = (await one.acquire()).taken
    await db.pool.execute(
        "UPDATE pacing_keys SET lease_expires_at = now() + interval '200 milliseconds'"
    )
    start = await one.start_send(lease, m1, "a1", SECOND)
    assert start.outcome is StartOutcome.LEASE_SHORT
    assert await status(db, m1) == ("Queued", None)


async def test_expired_lease_is_taken_over_and_the_old_owner_hears_it(
    db: PostgresConnection,
) -> None:
    key = "+15550000001"
    await queue(db, key)
    one = await worker(db, "one", lease=0.5)
    two = await worker(db, "two", lease=0.5)
    [lease] = (await one.acquire()).taken
    assert (await two.acquire()).taken == []  # held: not free yet

    async def lapsed() -> bool:
        return bool((await two.acquire()).taken)

    await eventually(lapsed, "the key is free once its lease lapsed")
    assert two.held[key].epoch == lease.epoch + 1
    assert await one.renew() == [key]
    assert one.held == {}
    owner = await db.pool.fetchval("SELECT owner FROM pacing_keys WHERE key = $1", key)
    assert owner == two.worker


async def test_the_next_slot_of_a_previous_owner_holds(db: PostgresStore) -> None:
    key = "+15550000001"
    m1, m2 = await queue(db, key, 2)
    one, two = await worker(db, "one"), await worker(db, "two")
    [lease] = (await one.acquire()).taken
    first = await one.start_send(lease, m1, "a1", SECOND)
    assert first.started_at is not None
    assert first.next_slot_at == first.started_at + SECOND
    await sent(db, [(m1, lease.epoch)])
    assert await status(db, m1) == ("Sent", lease.epoch)
    assert await one.release([key]) == [key]
    [taken] = (await two.acquire()).taken
    assert taken.next_slot_at == first.next_slot_at  # the new owner sees the slot
    early = await two.start_send(taken, m2, "a2", SECOND)
    assert early.outcome is StartOutcome.TOO_EARLY
    assert early.next_slot_at == first.next_slot_at
    assert await status(db, m2) == ("Queued", None)

    async def started() -> bool:
        return (await two.start_send(taken, m2, "a2", SECOND)).outcome is StartOutcome.STARTED

    await eventually(started, "the send starts once the slot has come")
    second_at = await db.pool.fetchval("SELECT send_started_at FROM messages WHERE id = $1", m2)
    assert second_at - first.started_at >= SECOND


async def test_one_send_in_flight_per_key(db: PostgresStore) -> None:
    key = "+15550000001"
    m1, m2 = await queue(db, key, 2)
    one = await worker(db, "one")
    [lease] = (await one.acquire()).taken
    assert (await one.start_send(lease, m1, "a1", timedelta(0))).outcome is StartOutcome.STARTED
    busy = await one.start_send(lease, m2, "a2", timedelta(0))
    assert busy.outcome is StartOutcome.BUSY  # m1's outcome is not recorded yet
    again = await one.start_send(lease, m1, "a1", timedelta(0))
    assert again.outcome is StartOutcome.BUSY
    with pytest.raises(asyncpg.UniqueViolationError):  # the index holds against any writer
        await db.pool.execute("UPDATE messages SET status = 'Sending', epoch = $2 WHERE id = $1",
                              m2, lease.epoch)  # fmt: skip
    await sent(db, [(m1, lease.epoch)])
    assert await status(db, m1) == ("Sent", lease.epoch)
    assert (await one.start_send(lease, m1, "a1", timedelta(0))).outcome is (
        StartOutcome.NOT_QUEUED
    )
    assert (await one.start_send(lease, m2, "a2", timedelta(0))).outcome is StartOutcome.STARTED


async def test_many_starts_in_one_round_trip_each_with_its_outcome(
    db: PostgresConnection,
) -> None:
    keys = [f"+1555000{i:04d}" for i in range(6)]
    heads = [(await queue(db, key, 2))[0] for key in keys]
    one = await worker(db, "one")
    await one.acquire(limit=5)
    two = await worker(db, "two")
    theirs = (await two.acquire()).taken[0]  # the sixth key
    mine = [one.held[key] for key in keys[:5]]
    await db.pool.execute(  # the fourth key's slot is a minute away
        "UPDATE pacing_keys SET next_slot_at = now() + interval '1 minute' WHERE key = $1",
        keys[3],
    )
    lapsed = Lease(keys[4], mine[4].epoch, time.monotonic() - 1, None)  # by this clock
    sends = [
        Send(mine[2], heads[2], "a2", SECOND),
        Send(theirs, heads[5], "a5", SECOND),  # another worker's key
        Send(mine[0], heads[0], "a0", SECOND),
        Send(mine[0], heads[0], "a0-again", SECOND),  # the same key again: its slot is taken
        Send(mine[3], heads[3], "a3", SECOND),
        Send(lapsed, heads[4], "a4", SECOND),
        Send(mine[1], heads[2], "a1", SECOND),  # a message of another key
    ]
    starts = await one.start_sends(sends)
    assert [start.outcome for start in starts] == [
        StartOutcome.STARTED,
        StartOutcome.NOT_OWNER,
        StartOutcome.STARTED,
        StartOutcome.TOO_EARLY,
        StartOutcome.TOO_EARLY,
        StartOutcome.LEASE_SHORT,
        StartOutcome.NOT_QUEUED,
    ]
    assert [start.trusted for start in starts] == [True, False, True, False, False, False, False]
    assert await status(db, heads[0]) == ("Sending", mine[0].epoch)
    assert await status(db, heads[5]) == ("Queued", None)
    assert keys[5] not in one.held  # it learnt the key is not its own
    assert (await two.start_send(theirs, heads[5], "a5", SECOND)).outcome is StartOutcome.STARTED


async def test_workers_shed_keys_beyond_their_share_when_others_join(
    db: PostgresConnection,
) -> None:
    keys = await numbers_with_work(db, 6)
    one = await worker(db, "one")
    await queue(db, keys[-1])  # a second text, behind the one in flight
    assert len((await one.acquire()).taken) == 6
    busy_lease = one.held[keys[-1]]
    head_of_busy = await head(db, keys[-1])
    assert head_of_busy is not None
    started = await one.start_send(busy_lease, head_of_busy, "a1", timedelta(0))
    assert started.outcome is StartOutcome.STARTED
    two, three = await worker(db, "two"), await worker(db, "three")
    share = (await two.acquire()).share
    assert share == 2
    shed = await one.shed(share)
    assert keys[-1] not in shed  # a key with a send in flight stays
    assert len(one.held) == 2
    assert keys[-1] in one.held
    assert len((await two.acquire()).taken) == 2
    assert len((await three.acquire()).taken) == 2


async def test_a_key_whose_acquisition_answer_was_lost_is_adopted_at_renewal(
    db: PostgresConnection,
) -> None:
    [m1] = await queue(db, "+15550000001")
    one = await worker(db, "one")
    # The database gave the key to this worker, and the answer never reached it:
    await db.pool.execute(
        "UPDATE pacing_keys SET owner = $1, epoch = 5, lease_expires_at = now() + interval '6 s'",
        one.worker,
    )
    assert one.held == {}
    assert await one.renew() == []
    [adopted] = one.held.values()
    assert adopted.epoch == 5
    assert (await one.start_send(adopted, m1, "a1", SECOND)).outcome is StartOutcome.STARTED


async def test_a_connection_lost_mid_start_is_unavailable_and_loses_nothing(
    db: PostgresConnection,
) -> None:
    key = "+15550000001"
    [m1] = await queue(db, key)
    one = await worker(db, "one")
    [lease] = (await one.acquire()).taken
    admin = await asyncpg.connect(db.url.dsn)
    try:
        holding = admin.transaction()
        await holding.start()
        await admin.execute("SELECT 1 FROM pacing_keys WHERE key = $1 FOR UPDATE", key)
        starting = asyncio.create_task(one.start_send(lease, m1, "a1", SECOND))

        async def waiting() -> bool:  # the start waits for the key's lock
            return bool(await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            ))  # fmt: skip

        await eventually(waiting, "the start waits for the key's lock")
        await admin.execute(  # its connection is cut (a network fault, a restart)
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        with pytest.raises(StoreUnavailable, match="the database"):
            await starting
        await holding.rollback()
    finally:
        await admin.close()
    assert await status(db, m1) == ("Queued", None)  # nothing half done
    start = await one.start_send(lease, m1, "a1", SECOND)  # on a new connection
    assert start.outcome is StartOutcome.STARTED


async def test_a_worker_whose_row_was_removed_registers_again(db: PostgresConnection) -> None:
    [m1] = await queue(db, "+15550000001")
    one = await worker(db, "one")
    await one.register("127.0.0.1:8081")
    [lease] = (await one.acquire()).taken
    await db.pool.execute("DELETE FROM workers WHERE id = $1", one.worker)
    assert await one.renew() == [lease.key]  # nothing it held counts any more
    address = await db.pool.fetchval("SELECT address FROM workers WHERE id = $1", one.worker)
    assert address == "127.0.0.1:8081"
    [again] = (await one.acquire()).taken
    assert again.epoch == lease.epoch + 1
    assert (await one.start_send(lease, m1, "a1", SECOND)).outcome is StartOutcome.NOT_OWNER
    assert one.held == {again.key: again}  # the refusal of the old lease keeps the new one
    assert (await one.start_send(again, m1, "a1", SECOND)).outcome is StartOutcome.STARTED


async def test_a_clean_stop_gives_every_key_back(db: PostgresConnection) -> None:
    for key in ("+15550000001", "+15550000002"):
        await queue(db, key)
    one = await worker(db, "one")
    assert len((await one.acquire()).taken) == 2
    await one.deregister()
    free = await db.pool.fetchval("SELECT count(*) FROM pacing_keys WHERE owner IS NULL")
    assert free == 2
    assert await db.pool.fetchval("SELECT count(*) FROM workers") == 0


async def test_racing_workers_never_send_twice_from_a_key(db: PostgresStore) -> None:
    """Six workers on six connections, short leases that lapse and move between them,
    each sending as fast as its keys allow: per key, every send starts after the
    previous one's spacing, one at a time, and every message once."""
    keys = await numbers_with_work(db, 4, texts=12)
    spacing = timedelta(milliseconds=40)
    rng = random.Random(16)
    workers = [await worker(db, f"w{i}", lease=0.4) for i in range(6)]
    deadline = time.monotonic() + 60

    async def run(w: Leases) -> None:
        while time.monotonic() < deadline:
            await w.renew()
            await w.acquire(limit=2)
            sends = [
                Send(lease, message, f"a-{message}", spacing)
                for lease in w.held.values()
                if (message := await head(db, lease.key)) is not None
            ]
            rng.shuffle(sends)  # in any order: the keys are locked in theirs
            starts = await w.start_sends(sends)
            await asyncio.sleep(rng.random() / 100)  # the provider's answers
            answered = [(send.message_id, send.lease.epoch)
                        for send, start in zip(sends, starts, strict=True)
                        if start.outcome is StartOutcome.STARTED]  # fmt: skip
            await sent(db, answered)
            for message_id, epoch in answered:
                assert await status(db, message_id) == ("Sent", epoch)
            if await db.pool.fetchval("SELECT count(*) FROM messages WHERE status = 'Queued'") == 0:
                return
            if rng.random() < 0.2:
                await w.release(list(w.held))  # keys move between workers
            await asyncio.sleep(0)

    await asyncio.gather(*(run(w) for w in workers))
    rows = await db.pool.fetch(
        "SELECT m.sender, m.id, m.epoch, m.send_started_at, m.status,"
        " (SELECT count(*) FROM events e WHERE e.message_id = m.id AND e.status = 'Sending')"
        " AS starts FROM messages m ORDER BY m.sender, m.send_started_at"
    )
    assert all(row["status"] == "Sent" and row["starts"] == 1 for row in rows)
    by_key: defaultdict[str, list[asyncpg.Record]] = defaultdict(list)
    for row in rows:
        by_key[row["sender"]].append(row)
    epochs: set[tuple[str, int]] = set()
    for key, sends in by_key.items():
        assert len(sends) == 12
        for before, after in itertools.pairwise(sends):
            assert after["send_started_at"] - before["send_started_at"] >= spacing, key
        epochs.update((key, row["epoch"]) for row in sends)
    assert len(epochs) > len(keys), "the keys moved between workers during the race"


async def test_renewals_starts_and_slots_of_many_keys_at_once_never_deadlock(
    db: PostgresStore,
) -> None:
    """Two workers with 500 keys between them, each with a store of its own, renewing,
    starting sends, recording their Sent with the next slots, writing next slots of
    every key held and giving keys back at once on several connections: no statement
    waits for a key another holds while holding one that one waits for (renewing locked
    the keys in the order it found them, a start in key order: "deadlock detected" ended
    the worker). The rows are written in a shuffled order, so that order is not the
    keys'."""
    keys = [f"+1555{i:07d}" for i in range(500)]
    random.Random(7).shuffle(keys)
    await db.pool.executemany(
        "INSERT INTO messages (id, sender, recipient, body, segments, lane, status, accepted,"
        " accepted_at, expires_at, updated_at) VALUES ($1, $2, '+15550001111', 'hi', 1, 1,"
        " 'Queued', true, now(), now() + interval '1 hour', now())",
        [(f"d{i}-{t}", key) for i, key in enumerate(keys) for t in range(3)],
    )
    for key in keys:  # one row at a time: the table's order is the shuffled one
        await db.pool.execute("INSERT INTO pacing_keys (key) VALUES ($1)", key)
    other = PostgresStore(db.url.dsn, max_size=12)
    await other.open()
    one, two = await worker(db, "one"), await worker(other, "two")
    store_of = {one: db, two: other}
    await one.acquire()
    await two.acquire()
    assert len(one.held) + len(two.held) == len(keys)
    rounds = 12

    async def renewing(w: Leases) -> None:
        for _ in range(rounds * 2):
            await w.renew()
            await asyncio.sleep(0)

    async def starting(w: Leases) -> None:
        for _ in range(rounds):
            held = list(w.held.values())
            heads = await db.pool.fetch(
                "SELECT DISTINCT ON (sender) sender, id FROM messages WHERE status = 'Queued'"
                " AND sender = ANY($1::TEXT[]) ORDER BY sender, id",
                [lease.key for lease in held],
            )
            first = {row["sender"]: row["id"] for row in heads}
            sends = [Send(lease, first[lease.key], f"a-{first[lease.key]}", timedelta(0))
                     for lease in held if lease.key in first]  # fmt: skip
            starts = await w.start_sends(sends)
            started = [send for send, start in zip(sends, starts, strict=True)
                       if start.outcome is StartOutcome.STARTED]  # fmt: skip
            at = await db_now(db)
            await sent(store_of[w], [(send.message_id, send.lease.epoch) for send in started],
                       {send.lease.key: at for send in started})  # fmt: skip

    async def holding(w: Leases) -> None:
        for _ in range(rounds * 2):
            at = await db_now(db)
            await store_of[w].record([], {lease.key: at for lease in w.held.values()})

    async def moving(w: Leases) -> None:
        for _ in range(rounds):
            held = sorted(w.held)
            await w.release(held[: len(held) // 10])  # some keys given back, taken again
            await w.acquire()

    try:
        await asyncio.gather(*(run(w) for w in (one, two)
                               for run in (renewing, starting, holding, moving)))  # fmt: skip
    finally:
        await other.close()
    assert (one.retried, two.retried) == (0, 0), "statements ended as deadlocks"
    assert (db.runs_again, other.runs_again) == (0, 0), "writes ended as deadlocks"
    assert await db.pool.fetchval("SELECT count(*) FROM messages WHERE status = 'Sent'") > 0


async def test_a_statement_ended_as_a_deadlock_runs_again(db: PostgresConnection) -> None:
    """A renewal the database ends as a deadlock (here with another session that locks
    the worker's two keys in the other order) is run again, not reported as a refusal
    (which ended the worker)."""
    first, second = await numbers_with_work(db, 2)
    one = await worker(db, "one")
    assert len((await one.acquire()).taken) == 2
    admin = await asyncpg.connect(db.url.dsn)
    try:
        await admin.execute("SET deadlock_timeout = '30s'")  # the renewal finds the cycle
        holding = admin.transaction()
        await holding.start()
        await admin.execute("SELECT 1 FROM pacing_keys WHERE key = $1 FOR UPDATE", second)
        renewing = asyncio.create_task(one.renew())

        async def waiting() -> bool:  # the renewal holds the first key, waits for the second
            return bool(await db.pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            ))  # fmt: skip

        await eventually(waiting, "the renewal waits for the second key")
        # The cycle: this session waits for the first key; the renewal is ended.
        await admin.execute("SELECT 1 FROM pacing_keys WHERE key = $1 FOR UPDATE", first)
        await eventually(lambda: asyncio.sleep(0, one.retried > 0), "the renewal runs again")
        await holding.rollback()
        assert await renewing == []  # nothing lost
    finally:
        await admin.close()
    assert one.retried == 1
    assert set(one.held) == {first, second}


async def db_now(db: PostgresConnection) -> datetime:
    now: datetime = await db.pool.fetchval("SELECT clock_timestamp()")
    return now


async def test_a_send_claimed_ahead_starts_at_its_intended_slot(db: PostgresStore) -> None:
    key = "+15550000001"
    m1, m2, m3 = await queue(db, key, 3)
    one = await worker(db, "one")
    [lease] = (await one.acquire()).taken
    slot = await db_now(db) + timedelta(milliseconds=250)  # claimed a lead ahead
    first = await one.start_send(lease, m1, "a1", SECOND, slot)
    assert first.outcome is StartOutcome.STARTED
    assert first.trusted
    assert first.started_at == slot
    assert first.next_slot_at == slot + SECOND  # booked from the slot, not the claim
    await sent(db, [(m1, lease.epoch)])
    assert await status(db, m1) == ("Sent", lease.epoch)
    # The next send is claimed ahead too, before the database's clock reaches its slot:
    second = await one.start_send(lease, m2, "a2", SECOND, slot + SECOND)
    assert second.outcome is StartOutcome.STARTED
    assert second.next_slot_at == slot + 2 * SECOND
    await sent(db, [(m2, lease.epoch)])
    assert await status(db, m2) == ("Sent", lease.epoch)
    early = await one.start_send(lease, m3, "a3", SECOND, slot + 2 * SECOND - timedelta(
        milliseconds=1))  # fmt: skip
    assert early.outcome is StartOutcome.TOO_EARLY
    assert early.next_slot_at == slot + 2 * SECOND
    assert await status(db, m3) == ("Queued", None)
    started = await db.pool.fetch(
        "SELECT send_started_at FROM messages WHERE id = ANY($1) ORDER BY seq", [m1, m2]
    )
    assert [row["send_started_at"] for row in started] == [slot, slot + SECOND]


async def test_a_new_owner_starts_at_the_previous_owners_slot_not_before(
    db: PostgresStore,
) -> None:
    key = "+15550000001"
    m1, m2 = await queue(db, key, 2)
    one, two = await worker(db, "one"), await worker(db, "two")
    [lease] = (await one.acquire()).taken
    slot = await db_now(db) + timedelta(seconds=3)
    assert (await one.start_send(lease, m1, "a1", SECOND, slot)).outcome is StartOutcome.STARTED
    await sent(db, [(m1, lease.epoch)])
    assert await status(db, m1) == ("Sent", lease.epoch)
    assert await one.release([key]) == [key]
    [taken] = (await two.acquire()).taken
    assert taken.next_slot_at == slot + SECOND
    now = await db_now(db)
    for before in (now, slot, slot + SECOND - timedelta(microseconds=1)):
        refused = await two.start_send(taken, m2, "a2", SECOND, before)
        assert refused.outcome is StartOutcome.TOO_EARLY, before
    assert await status(db, m2) == ("Queued", None)
    start = await two.start_send(taken, m2, "a2", SECOND, slot + SECOND)
    assert start.outcome is StartOutcome.STARTED
    assert start.next_slot_at == slot + 2 * SECOND


async def test_a_slot_past_the_lease_starts_nothing(db: PostgresConnection) -> None:
    [m1] = await queue(db, "+15550000001")
    one = await worker(db, "one")  # a 6 s lease; a send needs 1 s of it left at its slot
    [lease] = (await one.acquire()).taken
    late = await db_now(db) + timedelta(seconds=5, milliseconds=500)
    refused = await one.start_send(lease, m1, "a1", SECOND, late)
    assert refused.outcome is StartOutcome.LEASE_SHORT
    assert await status(db, m1) == ("Queued", None)
    soon = await db_now(db) + timedelta(seconds=1)
    assert (await one.start_send(lease, m1, "a1", SECOND, soon)).outcome is StartOutcome.STARTED


async def test_the_hand_off_moves_the_next_slot_later_only_with_a_step_that_passes(
    db: PostgresStore,
) -> None:
    """A send's record carries the number's next slot (its hand-off plus its hold): it
    moves the slot later, never earlier, and only with a fenced step that passes (a
    worker that lost the key, whose step no longer finds its text, writes none of it)."""
    key = "+15550000001"
    m1, m2, m3 = await queue(db, key, 3)
    one = await worker(db, "one", lease=0.5)
    [lease] = (await one.acquire()).taken
    slot = await db_now(db)
    assert (await one.start_send(lease, m1, "a1", SECOND, slot)).outcome is StartOutcome.STARTED
    handed_off = slot + timedelta(milliseconds=300)  # the channel handed it over late
    await sent(db, [(m1, lease.epoch)], {key: handed_off + SECOND})
    assert await status(db, m1) == ("Sent", lease.epoch)
    assert await next_slot(db, key) == handed_off + SECOND
    await db.record([], {key: slot + SECOND})  # an earlier slot, written late: kept
    assert await next_slot(db, key) == handed_off + SECOND
    two = await worker(db, "two")

    async def taken_over() -> bool:
        return bool((await two.acquire()).taken)

    await eventually(taken_over, "the new worker takes the lapsed key")
    # The old owner, stalled, records a late failure of m1 with a hand-off a minute later:
    # m1 is no longer Sending, so neither the step nor the slot is written.
    settled = await db.get(m1)
    assert settled is not None
    await db.record([answer(settled, lease.epoch, TextStatus.FAILED)],
                    {key: handed_off + timedelta(minutes=1)})  # fmt: skip
    assert await status(db, m1) == ("Sent", lease.epoch)
    assert await events(db, m1) == [("Sending", "scheduler"), ("Sent", "provider")]
    assert await next_slot(db, key) == handed_off + SECOND
    # The new owner's send, handed over late too: its record moves the slot.
    [fresh] = two.held.values()
    start = await two.start_send(fresh, m2, "a2", SECOND, handed_off + SECOND)
    assert start.outcome is StartOutcome.STARTED
    assert start.next_slot_at == handed_off + 2 * SECOND
    held_until = handed_off + 2 * SECOND + timedelta(milliseconds=300)
    await sent(db, [(m2, fresh.epoch)], {key: held_until})
    assert await status(db, m2) == ("Sent", fresh.epoch)
    assert await next_slot(db, key) == held_until
    early = await two.start_send(fresh, m3, "a3", SECOND, held_until - timedelta(microseconds=1))
    assert early.outcome is StartOutcome.TOO_EARLY
    start = await two.start_send(fresh, m3, "a3", SECOND, held_until)
    assert start.outcome is StartOutcome.STARTED


async def test_a_stale_owners_fenced_records_change_nothing(postgres: Cluster) -> None:
    """The store's write of transitions (the engine's path after a send) with fenced
    steps: a worker whose lease lapsed, and whose text was settled and started again by
    the new owner, records its late answer: the text, its events and the number's next
    slot stay as the new owner left them; the new owner's own records apply."""
    async with open_store(await postgres.fresh_database()) as store:
        assert isinstance(store, PostgresConnection)
        key = "+15550000001"
        [m1] = await queue(store, key)
        old = await worker(store, "old", lease=0.6)
        [lease] = (await old.acquire()).taken
        start = await old.start_send(lease, m1, "a1", SECOND)
        assert start.outcome is StartOutcome.STARTED
        new = await worker(store, "new")

        async def taken_over() -> bool:
            return bool((await new.acquire()).taken)

        await eventually(taken_over, "the new worker takes the lapsed key")
        [fresh] = new.held.values()
        sending = await store.get(m1)
        assert sending is not None
        # The new owner reconciles the text (the provider never had it) and starts it again.
        back, _ = transition(sending, TextStatus.QUEUED, at=sending.updated_at,
                                  source=Source.RECONCILE, reason=Reason.NOT_RECEIVED)  # fmt: skip
        await store.record([msgspec.structs.replace(back, fenced=True, epoch=lease.epoch)])
        assert await status(store, m1) == ("Queued", lease.epoch)
        again = await new.start_send(fresh, m1, "a2", SECOND, start.next_slot_at)
        assert again.outcome is StartOutcome.STARTED
        slot = await store.pool.fetchval("SELECT next_slot_at FROM pacing_keys WHERE key = $1", key)
        events = await store.pool.fetchval("SELECT count(*) FROM events WHERE message_id = $1", m1)
        # The old owner's late answer to its own attempt: Sent under its epoch, a minute on.
        late, _ = transition(sending, TextStatus.SENT, at=sending.updated_at,
                             source=Source.PROVIDER, provider_id="SMlate")  # fmt: skip
        await store.record([msgspec.structs.replace(late, fenced=True, epoch=lease.epoch)],
                           {key: slot + timedelta(minutes=1)})  # fmt: skip
        assert await status(store, m1) == ("Sending", fresh.epoch)
        assert await store.pool.fetchval(
            "SELECT next_slot_at FROM pacing_keys WHERE key = $1", key) == slot  # fmt: skip
        assert await store.pool.fetchval(
            "SELECT count(*) FROM events WHERE message_id = $1", m1) == events  # fmt: skip
        # The new owner's answer applies, with its event and its next slot.
        restarted = await store.get(m1)
        assert restarted is not None
        sent_step, _ = transition(restarted, TextStatus.SENT, at=restarted.updated_at,
                                  source=Source.PROVIDER, provider_id="SMnew")  # fmt: skip
        await store.record([msgspec.structs.replace(sent_step, fenced=True, epoch=fresh.epoch)],
                           {key: slot + SECOND})  # fmt: skip
        assert await status(store, m1) == ("Sent", fresh.epoch)
        moved = await store.pool.fetchval(
            "SELECT next_slot_at FROM pacing_keys WHERE key = $1", key
        )
        assert moved == slot + SECOND


async def test_a_renewal_does_not_wait_for_a_busy_pool(postgres: Cluster) -> None:
    """Every connection of the pool is taken (a busy worker's claims, starts and writes)
    for longer than the lease: the renewals run on a connection of their own, so the
    leases are renewed meanwhile and none lapses (a renewal on the pool waited for it,
    and the leases lapsed)."""
    async with PostgresConnection(await postgres.fresh_database(), min_size=1,
                                  max_size=1) as db:  # fmt: skip
        keys = await numbers_with_work(db, 2)
        one = await worker(db, "one", lease=3.0)
        taken = {lease.key: lease for lease in (await one.acquire()).taken}
        assert sorted(taken) == keys
        first = await lease_expiry(db, keys[0])
        async with db.pool.acquire() as busy:  # the pool's one connection, held
            renewing = asyncio.create_task(one.renew())

            async def renewed() -> bool:
                return renewing.done()

            await eventually(renewed, "a renewal while the pool is held")
            assert renewing.result() == []
            later = await busy.fetchval("SELECT max(lease_expires_at) FROM pacing_keys")
            assert later > first
        assert {key: lease.epoch for key, lease in one.held.items()} == {
            key: lease.epoch for key, lease in taken.items()}  # fmt: skip
        assert all(one.trusted(lease) for lease in one.held.values())
        sessions = await db.pool.fetch(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
        assert "dispatcher-leases" in {row["application_name"] for row in sessions}


async def lease_expiry(db: PostgresConnection, key: str) -> datetime:
    expiry: datetime = await db.pool.fetchval(
        "SELECT lease_expires_at FROM pacing_keys WHERE key = $1", key
    )
    return expiry


async def test_a_renewal_lost_with_its_connection_opens_another(db: PostgresConnection) -> None:
    """The renewals' connection ended (a network fault, the server process ended): that
    renewal is the database unavailable, and the next one runs on a new connection,
    keeping the leases it still holds."""
    [key] = await numbers_with_work(db, 1)
    one = await worker(db, "one")
    [lease] = (await one.acquire()).taken
    assert await one.renew() == []
    [before] = await renewals_sessions(db)
    await db.pool.execute("SELECT pg_terminate_backend($1)", before)
    with contextlib.suppress(StoreUnavailable):  # unless the end was heard before it
        await one.renew()
    assert await one.renew() == []
    assert one.held[key].epoch == lease.epoch
    [after] = await renewals_sessions(db)
    assert after != before
    await one.deregister()
    assert await renewals_sessions(db) == []  # a clean stop closes it


async def renewals_sessions(db: PostgresConnection) -> list[int]:
    """The server processes of the renewals' connections to this database."""
    rows = await db.pool.fetch(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'dispatcher-leases'"
        " AND datname = current_database()"
    )
    return [row["pid"] for row in rows]


async def test_what_other_verbs_change_during_a_renewal_stands(db: PostgresConnection) -> None:
    """A renewal runs beside the worker's other verbs: a key taken while it ran is not
    reported lost, and a key given back while it ran is not held again."""
    first, second, third = await numbers_with_work(db, 3)
    one = await worker(db, "one")
    await one.acquire(limit=2)  # the first two keys
    assert sorted(one.held) == [first, second]
    admin = await asyncpg.connect(db.url.dsn)
    try:
        holding = admin.transaction()
        await holding.start()  # the renewal waits for the first key's row
        await admin.execute("SELECT 1 FROM pacing_keys WHERE key = $1 FOR UPDATE", first)
        renewing = asyncio.create_task(one.renew())

        async def waiting() -> bool:
            return bool(await db.pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            ))  # fmt: skip

        await eventually(waiting, "the renewal waits for the first key")
        assert [lease.key for lease in (await one.acquire()).taken] == [third]
        assert await one.release([second]) == [second]
        await holding.rollback()
        assert await renewing == []  # the third key, taken meanwhile, is not lost
    finally:
        await admin.close()
    assert sorted(one.held) == [first, third]  # the second, given back, is not held again
    assert await one.renew() == []


class Desk:
    """The texts' desk as the leases' loop sees it: its work can take long."""

    def __init__(self) -> None:
        self.lost_keys: list[str] = []
        self.working = asyncio.Event()
        self.done = asyncio.Event()

    async def record(self, steps: object, *, ahead: bool = False) -> None:
        raise AssertionError("not in this test")

    def counted(self, steps: object) -> None:
        raise AssertionError("not in this test")

    def lost(self, keys: Collection[str]) -> None:
        self.lost_keys.extend(keys)

    def reading_work(self) -> None:
        return None

    async def work(self, found: Sequence[KeyWork]) -> None:
        self.working.set()
        await self.done.wait()


async def test_leases_are_renewed_while_a_turn_takes_longer_than_the_lease(
    db: PostgresConnection,
) -> None:
    """The leases' turn reads what its numbers hold and hands it to the desk, whose work
    (texts left Sending reconciled with the provider) can take longer than the lease:
    the renewals run on their own timer meanwhile, so nothing lapses (renewing at the
    start of each turn, the leases lapsed while the turn was held)."""
    [key] = await numbers_with_work(db, 1)
    leases = Leases(db, SystemClock(), worker_id("one"), lease_seconds=3.0,
                    min_lease_seconds=1.0)  # fmt: skip
    faults: list[StoreUnavailable] = []
    owner = Leased(leases, address=None, faulted=lambda: False, store_fault=faults.append)
    desk = Desk()
    owner.attach(desk)
    running = asyncio.create_task(owner.run())
    try:
        await asyncio.wait_for(desk.working.wait(), 30)  # the turn is held from here
        held = await lease_expiry(db, key)

        async def past_the_lease() -> bool:  # the lease held at the start would have lapsed
            return bool(await db.pool.fetchval("SELECT now() > $1", held + timedelta(
                milliseconds=200)))  # fmt: skip

        await eventually(past_the_lease, "the lease's term passes", within=30)
        row = await db.pool.fetchrow(
            "SELECT owner, lease_expires_at > now() AS live FROM pacing_keys WHERE key = $1", key
        )
        assert row is not None
        assert (row["owner"], row["live"]) == (leases.worker, True)
        assert desk.lost_keys == []
        lease = leases.lease_of(key)
        assert lease is not None
        assert leases.trusted(lease)
        assert faults == []
    finally:
        desk.done.set()
        await owner.close()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert await db.pool.fetchval("SELECT owner FROM pacing_keys WHERE key = $1", key) is None


async def test_a_key_a_release_under_way_gave_back_is_not_reported_lost(
    postgres: Cluster,
) -> None:
    """A release committed before a renewal read the keys, its answer not in when the
    renewal's is: the renewal does not find the key given back, and does not report it
    lost (it used to: a worker shedding keys logged them lost); a key the next renewal
    does not find either is lost."""
    async with PostgresConnection(await postgres.fresh_database(), min_size=1,
                                  max_size=1) as db:  # fmt: skip
        first, second, third = await numbers_with_work(db, 3)
        one = await worker(db, "one")
        assert len((await one.acquire()).taken) == 3
        async with db.pool.acquire() as busy:  # the release waits for the pool
            releasing = asyncio.create_task(one.release([second]))
            await asyncio.sleep(0)  # under way
            # As if the release had committed (the second key), and another worker had
            # taken the third, before the renewal read the keys:
            await busy.execute("UPDATE pacing_keys SET owner = NULL, lease_expires_at = NULL"
                               " WHERE key = $1", second)  # fmt: skip
            await busy.execute("UPDATE pacing_keys SET owner = 'another', epoch = epoch + 1"
                               " WHERE key = $1", third)  # fmt: skip
            assert await one.renew() == []  # neither is known lost yet
            assert sorted(one.held) == [first, second, third]
        assert await releasing == []  # the release's answer: nothing left to give back
        assert await one.renew() == [third]  # not found twice: lost
        assert sorted(one.held) == [first]


def _indexes(plan: object) -> set[str]:
    """The indexes a plan (EXPLAIN's JSON) reads."""
    if isinstance(plan, list):
        return set().union(*(_indexes(p) for p in plan))
    if not isinstance(plan, dict):
        return set()
    found = {plan["Index Name"]} if "Index Name" in plan else set()
    return found.union(*(_indexes(v) for v in plan.values() if isinstance(v, (list, dict))))


async def test_the_texts_sending_of_a_key_are_found_on_their_own_index(
    db: PostgresConnection,
) -> None:
    """Whether a key has a text Sending (each start's ``busy``, the turn's reads of the
    keys held and free) is read on an index of the key's Sending texts, not on every
    entry of ``status = 'Sending'``: every text that passed through Sending leaves one
    there until it is vacuumed (with 2,000 busy numbers x 10, a probe read 21,814 of them,
    about 4 ms, and the turn's read of its keys took 9.9 s)."""
    keys = await numbers_with_work(db, 40, texts=25)
    # Most texts have been sent (through Sending: with no epoch here, as several at once
    # of a key), one of each key is Sending.
    await db.pool.execute(
        "UPDATE messages SET status = 'Sending' WHERE status = 'Queued' AND seq % 25 <> 0"
    )
    await db.pool.execute("UPDATE messages SET status = 'Sent' WHERE status = 'Sending'")
    await db.pool.execute(
        "UPDATE messages SET status = 'Sending', epoch = 1 WHERE id IN (SELECT DISTINCT ON"
        " (sender) id FROM messages WHERE status = 'Queued' ORDER BY sender, seq)"
    )
    await db.pool.execute("ANALYZE messages")
    probe = "SELECT 1 FROM messages AS m WHERE m.sender = $1 AND m.status = 'Sending'"
    statements: list[tuple[str, str, tuple[object, ...]]] = [
        ("the start's busy check (dispatcher_start_send)", probe, (keys[0],)),
        ("key_work", db.query("key_work"), (keys,)),
        ("acquire_leases", db.query("acquire_leases"), ("w", 6.0, 100)),
        ("shed_leases", db.query("shed_leases"), ("w", 0)),
    ]
    async with db.pool.acquire() as connection, connection.transaction():
        await connection.execute("SET LOCAL enable_seqscan = off")  # indexes only, here
        for what, statement, args in statements:
            plan = json.loads(await connection.fetchval(f"EXPLAIN (FORMAT JSON) {statement}",
                                                        *args))  # fmt: skip
            read = _indexes(plan)
            assert "messages_sending" in read, (what, read)
            assert "messages_status" not in read, (what, read)
    source = await db.pool.fetchval(
        "SELECT prosrc FROM pg_proc WHERE proname = 'dispatcher_start_send'"
    )
    assert "WHERE m.sender = p_key AND m.status = 'Sending'" in source  # the probe above
