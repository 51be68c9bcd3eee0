"""The shared-database store: PostgreSQL through ``asyncpg``.

``store.url = "postgresql://user@host:port/database"`` (or ``postgres://``) selects it.
Every verb of the store port passes the store contract suite on it. For now one service
runs per database: the service holds the single-worker guard (``guard.py``). The
leases on pacing keys with the one-round-trip start of a send (``leases.py``) are built
and tested, but the delivery engine is not driven by them yet (docs/scale-out.md).
SQL lives in ``dispatcher/store/sql/postgres*.sql`` and ``sql/migrations/postgres``.
The adapter is ``store.PostgresStore``; importing this package loads no driver (``url.py``
checks a URL without ``asyncpg``).
"""
