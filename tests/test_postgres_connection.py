"""The PostgreSQL store's URL, pool and schema, on a throwaway cluster (``postgres``)."""

from __future__ import annotations

import asyncio
import tempfile
import time
from urllib.parse import urlsplit

import asyncpg
import pytest

from dispatcher.errors import ConfigError, StoreError, StoreUnavailable
from dispatcher.store import open_store
from dispatcher.store.postgres.connection import PostgresConnection
from dispatcher.store.postgres.url import parse_url
from dispatcher.store.queries import load_migrations
from tests.peers_postgres import Cluster

KNOWN = [version for version, _ in load_migrations("postgres")]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://u@h/db", "is not a PostgreSQL URL"),
        ("postgresql://u@h:port/db", "is not a valid URL"),
        ("postgresql://u@h:0/db", "port 0"),
        ("postgresql://u@h/db/more", "has a '/'"),
        ("postgresql://u@h/db#x", "no #fragment"),
        ("postgresql://u@h/db?sslmod=require", "unknown parameter 'sslmod'"),
        ("postgresql://u@/db?host=/run/pg&port=x", "port 'x'"),
        ("postgresql://u@h/db?sslmode=bogus", "sslmode 'bogus'"),
        ("postgresql://u@h/db?target_session_attrs=any-of-them", "is not one of any, primary"),
    ],
)
def test_a_bad_url_is_refused_naming_the_setting(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=r"store\.url") as caught:
        parse_url(url)
    assert says in str(caught.value)
    assert caught.value.field == "store.url"


def test_a_url_is_shown_without_its_password() -> None:
    parsed = parse_url("postgresql://app:s3cret@db.example:5432/dispatch?sslmode=require")
    assert parsed.dsn.endswith("sslmode=require")
    assert parsed.shown == "postgresql://app:***@db.example:5432/dispatch?sslmode=require"
    assert "s3cret" not in parse_url("postgres://app@/d?host=/run/pg&password=s3cret").shown
    for written in ("postgresql://", "postgresql:///dispatch", "postgres://app@/d?host=/run/pg"):
        assert parse_url(written).shown == written  # nothing to hide: as written
    with pytest.raises(ConfigError) as caught:
        parse_url("postgresql://app:s3cret@h/db?nope=1")
    assert "s3cret" not in str(caught.value)


async def test_an_unreachable_database_is_a_clear_error_at_start() -> None:
    with tempfile.TemporaryDirectory(prefix="dsp-") as empty:  # no server's socket in it
        url = f"postgresql://app:s3cret@/dispatch?host={empty}&port=5999"
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="cannot reach the database") as caught:
            async with PostgresConnection(url, connect_timeout=5):
                pass
    assert time.monotonic() - started < 5
    assert "app:***@" in str(caught.value)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("parameters", "says"),
    [("sslnegotiation=bogus", "sslnegotiation"), ("host=/a,/b&port=1,2,3", "3 port numbers")],
)
async def test_a_setting_the_driver_refuses_is_refused_naming_the_setting(
    parameters: str, says: str
) -> None:
    with pytest.raises(ConfigError, match=r"^store\.url: postgresql://") as caught:
        async with PostgresConnection(f"postgresql://app:s3cret@/dispatch?{parameters}"):
            pass
    assert says in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert caught.value.field == "store.url"


async def test_a_missing_database_is_named(postgres: Cluster) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        async with PostgresConnection(postgres.url("no_such_database")):
            pass


async def test_a_database_that_refuses_connections_is_named_in_the_error(
    postgres: Cluster,
) -> None:
    url = await postgres.fresh_database()
    database = urlsplit(url).path.lstrip("/")
    admin = await asyncpg.connect(postgres.url())
    try:
        async with open_store(url) as store:
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = $1", database)  # fmt: skip
            with pytest.raises(StoreError) as caught:
                await store.get("msg_1")
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await admin.close()
    assert str(caught.value).startswith(f"reading the database {url} failed: "), caught.value


async def _versions(url: str) -> list[int]:
    db = await asyncpg.connect(url)
    try:
        return [row["version"] for row in await db.fetch("SELECT version FROM schema_migrations")]
    finally:
        await db.close()


async def test_opening_migrates_once_and_reopening_changes_nothing(postgres: Cluster) -> None:
    url = await postgres.fresh_database()
    async with PostgresConnection(url) as store:
        tables = await store.pool.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
    assert {"messages", "events", "workers", "pacing_keys"} <= {t["tablename"] for t in tables}
    async with PostgresConnection(url):
        pass
    assert sorted(await _versions(url)) == KNOWN


async def test_workers_started_together_migrate_once(postgres: Cluster) -> None:
    url = await postgres.fresh_database()
    # The lock the migrations take, held here: every worker waits at it.
    holder = await asyncpg.connect(url)
    await holder.execute("SELECT pg_advisory_lock(7036811740212253505)")
    stores = [PostgresConnection(url, min_size=1, max_size=2) for _ in range(4)]
    opening = [asyncio.create_task(store.open()) for store in stores]
    try:
        deadline = time.monotonic() + 30
        waiting = 0
        while waiting < 4:  # each opening worker blocked on the lock, none past it
            assert time.monotonic() < deadline, f"{waiting} of 4 workers wait for the lock"
            assert not any(task.done() for task in opening)
            waiting = await holder.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            await asyncio.sleep(0.02)
        await holder.execute("SELECT pg_advisory_unlock(7036811740212253505)")
        await asyncio.wait_for(asyncio.gather(*opening), timeout=60)
        assert sorted(await _versions(url)) == KNOWN  # each version applied once
    finally:
        await holder.close()
        for store in stores:
            await store.close()


async def test_a_schema_newer_than_the_program_is_refused(postgres: Cluster) -> None:
    url = await postgres.fresh_database()
    async with PostgresConnection(url) as store:
        await store.pool.execute("INSERT INTO schema_migrations (version) VALUES ($1)", 9999)
    with pytest.raises(StoreError, match=r"schema version 9999, newer than this dispatcher"):
        async with PostgresConnection(url):
            pass
    assert 9999 in await _versions(url)  # refused, not altered


async def test_a_failed_migration_leaves_no_half_applied_version(postgres: Cluster) -> None:
    url = await postgres.fresh_database()
    db = await asyncpg.connect(url)
    try:  # a table of the first migration exists already: its script fails
        await db.execute("CREATE TABLE events (id INTEGER)")
    finally:
        await db.close()
    with pytest.raises(StoreError, match=r"migrating the database .* failed"):
        async with PostgresConnection(url):
            pass
    db = await asyncpg.connect(url)
    try:
        assert await db.fetch("SELECT version FROM schema_migrations") == []
        assert await db.fetchval("SELECT to_regclass('messages')") is None  # rolled back
    finally:
        await db.close()
