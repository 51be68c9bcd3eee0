"""The PostgreSQL store's connection pool and its schema.

One ``asyncpg`` pool per process. Opening it proves the database answers (an
unreachable or refusing database is a clear :class:`StoreError` at start, naming the
URL without its password), then brings the schema up to date under an advisory lock:
of several workers started at the same moment against an empty database, one applies
the migrations (``dispatcher/store/sql/migrations/postgres``, each in a transaction of
its own) and the others wait for it, then find nothing left to do. A database whose
schema is newer than this program's migrations is refused. SQL lives in named queries
(``dispatcher/store/sql/postgres*.sql``).

A connection given back to the pool is reset by :func:`keep_session`: the rollback of a
transaction left open (which the pool runs first, whatever the reset), and nothing
else, because the pool's connections keep no session state (asyncpg's default reset
runs four statements at every release: ``pg_advisory_unlock_all()``, ``CLOSE ALL``,
``UNLISTEN *``, ``RESET ALL``). What would leave such state runs on a connection of its
own (:class:`Sessions`), outside the pool: the migrations' advisory
lock, the leader's guard, the listener of new work, the leases' renewal.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from dispatcher.errors import ConfigError, StoreError, StoreUnavailable
from dispatcher.lifecycle import Resource
from dispatcher.store.postgres.url import PostgresURL, parse_url
from dispatcher.store.queries import load_migrations, load_queries

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
"""Seconds a connection has to be established before the database counts as unreachable."""
APPLICATION_NAME = "dispatcher"
"""The pool's connections' ``application_name`` (``pg_stat_activity``)."""
MIGRATIONS_NAME = "dispatcher-migrations"
"""The ``application_name`` of the connection the schema is brought up to date on."""


async def keep_session(db: asyncpg.Connection[Any]) -> None:
    """The pool's reset of a connection given back: nothing to run. Before it the pool
    rolls back a transaction left open (a write that failed half way, a task cancelled
    in a transaction) and drops the connection's listeners; a connection whose reset
    fails is closed, not given to the next user. The pool's connections hold nothing
    else past a transaction: the store runs no ``SET`` (its settings are the
    connection's startup parameters), no ``LISTEN``, no cursor outside a transaction
    (asyncpg's are closed with it), and only transaction-level advisory locks
    (``pg_advisory_xact_lock``); the session-level ones (the migrations', the guard's)
    are taken on connections of their own. asyncpg's prepared statements stay cached
    per connection, as they do under its default reset."""
    del db


class Sessions:
    """Connections of their own, outside the pool: for session state the pool's reset
    does not clear, or work that must not wait for the pool. Each user closes its own;
    those left open are ended with the store."""

    def __init__(self, url: PostgresURL, connect_timeout: float) -> None:
        self._url = url
        self._connect_timeout = connect_timeout
        self._open: set[asyncpg.Connection[Any]] = set()

    async def open(self, application_name: str) -> asyncpg.Connection[Any]:
        """A new connection named ``application_name`` (``pg_stat_activity``). Raises
        what ``asyncpg.connect`` raises."""
        db: asyncpg.Connection[Any] = await asyncpg.connect(
            self._url.dsn,
            timeout=self._connect_timeout,
            server_settings={"application_name": application_name},
        )
        self._open.add(db)
        db.add_termination_listener(self._open.discard)
        return db

    async def close(self, db: asyncpg.Connection[Any]) -> None:
        """Close ``db`` (at once, if it does not answer)."""
        self._open.discard(db)
        try:
            await db.close(timeout=self._connect_timeout)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            db.terminate()

    def end_all(self) -> None:
        """End every connection still open (the store closes)."""
        still, self._open = self._open, set()
        for db in still:
            db.terminate()


class PostgresConnection(Resource):
    """The pool every part of the PostgreSQL store shares."""

    def __init__(
        self,
        url: str | PostgresURL,
        *,
        min_size: int = 2,
        max_size: int = 10,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self._url = url if isinstance(url, PostgresURL) else parse_url(url)
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._q = load_queries("postgres")
        self._pool: asyncpg.Pool | None = None
        self.sessions = Sessions(self._url, self._connect_timeout)  # outside the pool

    @property
    def url(self) -> PostgresURL:
        return self._url

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("the store is not open")
        return self._pool

    def query(self, name: str) -> str:
        """The named query ``name``."""
        return self._q[name]

    async def open(self) -> None:
        shown = self._url.shown
        try:
            pool = await asyncpg.create_pool(
                self._url.dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._connect_timeout,
                server_settings={"application_name": APPLICATION_NAME},
                reset=keep_session,
            )
        except TimeoutError as exc:
            raise StoreUnavailable(f"the database {shown} did not answer within "
                                   f"{self._connect_timeout:g} s") from exc  # fmt: skip
        except asyncpg.InvalidCatalogNameError as exc:
            raise StoreError(f"the database {shown} does not exist: {exc}") from exc
        except (asyncpg.InvalidAuthorizationSpecificationError,
                asyncpg.InvalidPasswordError) as exc:  # fmt: skip
            raise StoreError(f"the database {shown} refused the login: {exc}") from exc
        except asyncpg.ClientConfigurationError as exc:  # a parameter's value, before connecting
            raise ConfigError(f"store.url: {shown}: {exc}", field="store.url") from exc
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(f"cannot reach the database {shown}: {exc}") from exc
        self._pool = pool
        try:
            await self._migrate()
        except BaseException:
            self._pool = None
            await pool.close()
            raise

    async def close(self) -> None:
        self.sessions.end_all()
        if (pool := self._pool) is not None:
            self._pool = None
            await pool.close()

    async def _migrate(self) -> None:
        migrations = load_migrations("postgres")
        newest = migrations[-1][0] if migrations else 0
        try:
            db = await self.sessions.open(MIGRATIONS_NAME)  # its session-level lock ends with it
            try:
                await db.execute(self._q["migration_lock"])
                try:
                    await db.execute(self._q["schema_migrations"])
                    done = {row["version"] for row in await db.fetch(self._q["schema_versions"])}
                    if done and max(done) > newest:
                        raise StoreError(
                            f"the database {self._url.shown} has schema version {max(done)}, "
                            f"newer than this dispatcher knows (up to {newest}): upgrade "
                            "dispatcher before running it against this database"
                        )
                    for version, script in migrations:
                        if version in done:
                            continue
                        async with db.transaction():
                            await db.execute(script)
                            await db.execute(self._q["schema_migrated"], version)
                        log.info("store.migrated",
                                 extra={"version": version, "url": self._url.shown})  # fmt: skip
                finally:
                    await db.execute(self._q["migration_unlock"])
            finally:
                await self.sessions.close(db)
        except asyncpg.PostgresError as exc:
            raise StoreError(f"migrating the database {self._url.shown} failed: {exc}") from exc
        except (OSError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(
                f"lost the database {self._url.shown} while migrating it: {exc}"
            ) from exc
