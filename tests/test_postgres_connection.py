"""The PostgreSQL store's URL, pool and schema, on a throwaway cluster (``postgres``)."""

from __future__ import annotations

import asyncio
import contextlib
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


async def _last_statement(url: str, pid: int) -> tuple[str, str]:
    """What the server process ``pid`` ran last and its state, seen from another session."""
    admin = await asyncpg.connect(url)
    try:
        row = await admin.fetchrow("SELECT state, query FROM pg_stat_activity WHERE pid = $1", pid)
    finally:
        await admin.close()
    assert row is not None
    return row["state"], row["query"]


async def test_a_connection_given_back_runs_no_reset_statement(postgres: Cluster) -> None:
    """A connection given back to the pool is not sent asyncpg's reset (four statements:
    pg_advisory_unlock_all(), CLOSE ALL, UNLISTEN *, RESET ALL, at every release): the
    pool's connections keep no session state, and the migrations' lock was taken on a
    connection of its own."""
    url = await postgres.fresh_database()
    async with PostgresConnection(url, min_size=1, max_size=1) as store:
        async with store.pool.acquire() as db:
            pid = await db.fetchval("SELECT pg_backend_pid() /* the last */")
        assert await _last_statement(url, pid) == ("idle", "SELECT pg_backend_pid() /* the last */")
        async with store.pool.acquire() as db:
            assert await db.fetchval("SELECT pg_backend_pid()") == pid  # the same one, reused
            locks = await db.fetchval(
                "SELECT count(*) FROM pg_locks WHERE pid = $1 AND locktype = 'advisory'", pid
            )
            assert locks == 0  # the migrations' lock did not come with it


async def test_a_connection_given_back_mid_failure_leaves_nothing_to_the_next_user(
    postgres: Cluster,
) -> None:
    """Connections given back half way through a transaction (a statement refused, a
    task cancelled while its statement runs, a transaction left open) are rolled back
    before the next user has them: no transaction open, no row or lock of it left, and
    the next statement runs (not "current transaction is aborted")."""
    url = await postgres.fresh_database()
    async with PostgresConnection(url, min_size=1, max_size=1) as store:
        await store.pool.execute("CREATE TABLE scratch (n INTEGER PRIMARY KEY)")

        async def refused() -> None:
            async with store.pool.acquire() as db, db.transaction():
                await db.execute("INSERT INTO scratch VALUES (1)")
                await db.execute("SELECT pg_advisory_xact_lock(99)")
                await db.execute("INSERT INTO scratch VALUES (1)")  # a unique key

        async def cancelled(started: asyncio.Event) -> None:
            async with store.pool.acquire() as db, db.transaction():
                await db.execute("INSERT INTO scratch VALUES (2)")
                await db.execute("SELECT pg_advisory_xact_lock(99)")
                started.set()
                await db.execute("SELECT pg_sleep(60)")

        async def left_open() -> None:
            async with store.pool.acquire() as db:
                await db.execute("BEGIN")
                await db.execute("INSERT INTO scratch VALUES (3)")
                await db.execute("SELECT pg_advisory_xact_lock(99)")
                with contextlib.suppress(asyncpg.UniqueViolationError):
                    await db.execute("INSERT INTO scratch VALUES (3)")

        async def check(after: str) -> None:
            async with store.pool.acquire() as db:
                pid = await db.fetchval("SELECT pg_backend_pid()")
                assert await _last_statement(url, pid) == ("idle", "SELECT pg_backend_pid()"), after
                assert not db.is_in_transaction(), after
                assert await db.fetchval("SELECT count(*) FROM scratch") == 0, after
                locks = await db.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE pid = $1 AND locktype = 'advisory'", pid
                )
                assert locks == 0, after

        with pytest.raises(asyncpg.UniqueViolationError):
            await refused()
        await check("a statement refused")
        started = asyncio.Event()
        task = asyncio.create_task(cancelled(started))
        await asyncio.wait_for(started.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await check("a task cancelled mid-statement")
        loop = asyncio.get_running_loop()
        said: list[str] = []
        loop.set_exception_handler(lambda _loop, context: said.append(context["message"]))
        try:
            await left_open()
        finally:
            loop.set_exception_handler(None)
        assert len(said) == 1
        assert said[0].startswith("Resetting connection with an active transaction")
        await check("a transaction left open")
