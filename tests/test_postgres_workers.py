"""The view across workers on a throwaway PostgreSQL cluster (``postgres``): workers
registered and holding keys through :class:`Leases`, as the engine's loop will, read
back through the store's ``workers``: heartbeats, live or not, keys held, sends of the
last minute, and the worker that holds the guard marked as leading."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from dispatcher.clock import SystemClock
from dispatcher.store.postgres.leases import Leases, Send, StartOutcome, worker_id
from dispatcher.store.postgres.store import PostgresStore
from tests.peers_postgres import Cluster
from tests.test_store_contract import make_message


@pytest.fixture
async def store(postgres: Cluster) -> AsyncIterator[PostgresStore]:
    async with PostgresStore(await postgres.fresh_database()) as opened:
        yield opened


async def register(store: PostgresStore, name: str, address: str | None) -> Leases:
    leases = Leases(store, SystemClock(), worker_id(name))
    await leases.register(address)
    return leases


async def test_each_worker_with_its_heartbeat_keys_and_sends(store: PostgresStore) -> None:
    keys = [f"+1415555010{i}" for i in range(3)]
    await store.insert_messages(
        [(make_message(f"{key}-{n}", sender=key), []) for key in keys for n in range(2)]
    )
    first = await register(store, "worker-a", "127.0.0.1:8081")
    second = await register(store, "worker-b", None)
    gone = await register(store, "worker-c", "127.0.0.1:8083")
    await store.pool.execute(
        "UPDATE workers SET heartbeat_at = now() - interval '30 seconds' WHERE id = $1",
        gone.worker,
    )  # its heartbeat stopped half a minute ago
    taken = (await first.acquire()).taken
    assert len(taken) == 2  # its share: 3 keys with work over 2 live workers, rounded up
    rest = (await second.acquire()).taken
    assert len(rest) == 1
    starts = await first.start_sends(
        [Send(lease, f"{lease.key}-0", f"att-{lease.key}", timedelta(seconds=1)) for lease in taken]
    )
    assert [s.outcome for s in starts] == [StartOutcome.STARTED] * 2

    found = await store.workers()
    assert found is not None
    assert found.leader is None  # no service holds the guard
    assert found.lease_seconds == 6.0
    by_id = {w.id: w for w in found.workers}
    assert [w.id for w in found.workers] == sorted(by_id)
    a, b, c = by_id[first.worker], by_id[second.worker], by_id[gone.worker]
    assert (a.address, a.live, a.keys, a.sent_last_minute, a.leads) == (
        "127.0.0.1:8081", True, 2, 2, False)  # fmt: skip
    assert (b.address, b.live, b.keys, b.sent_last_minute) == (None, True, 1, 0)
    assert (c.live, c.keys, c.sent_last_minute) == (False, 0, 0)
    assert c.heartbeat_age >= 30 > a.heartbeat_age >= 0
    assert a.started_at <= b.started_at

    owners = await store.owners([*keys, "+14155550199"])
    assert owners == {**{lease.key: first.worker for lease in taken}, rest[0].key: second.worker}
    await store.pool.execute(
        "UPDATE pacing_keys SET lease_expires_at = now() - interval '1 second' WHERE key = $1",
        rest[0].key,
    )  # its lease lapsed: held by none
    assert rest[0].key not in (await store.owners(keys) or {})


async def test_the_worker_that_holds_the_guard_leads(
    store: PostgresStore, postgres: Cluster, tmp_path: Path
) -> None:
    home = str(tmp_path / "worker-a")
    async with PostgresStore(store.url.dsn, service_home=home):
        leader = await register(store, home, "127.0.0.1:8081")
        other = await register(store, str(tmp_path / "worker-b"), None)
        found = await store.workers()
        assert found is not None
        assert found.leader is not None
        assert (found.leader.home, found.leader.pid > 0) == (home, True)
        leading = {w.id: w.leads for w in found.workers}
        assert leading == {leader.worker: True, other.worker: False}
    found = await store.workers()  # its service stopped: its lock is free
    assert found is not None
    assert found.leader is None
    assert not any(w.leads for w in found.workers)
