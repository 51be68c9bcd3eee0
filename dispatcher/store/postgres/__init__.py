"""The shared-database store: PostgreSQL through ``asyncpg``, for several workers.

Built so far: the connection pool and its schema (``connection.py``, ``url.py``) and the
leases on pacing keys with the one-round-trip start of a send (``leases.py``). The
store port's verbs come next; until they all pass the store contract suite, no
``store.url`` reaches this package (docs/scale-out.md). SQL lives in
``dispatcher/store/sql/postgres*.sql`` and ``sql/migrations/postgres``.
"""
