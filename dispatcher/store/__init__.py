"""The store: a port (``dispatcher.store.port``) and its adapters, one package each.

Adapters are picked by URL and imported lazily: ``memory://`` (the public fake,
``dispatcher.store.memory``) and ``sqlite:///path/to/dispatcher.db`` (the embedded
default, ``dispatcher.store.sqlite``) and ``postgresql://user@host/database`` (also
spelled ``postgres://``: the shared database, ``dispatcher.store.postgres``, one service
per database for now). Every adapter passes the same contract suite
(``tests/test_store_contract.py``).
"""

from __future__ import annotations

from dispatcher.adapters import load_adapter
from dispatcher.store.port import (
    CallbackStore,
    CallStore,
    CampaignStore,
    ConsentStore,
    DoNotTextStore,
    Elected,
    EmailStore,
    EngagementStore,
    GuardHolder,
    Leadership,
    NumberState,
    RunStore,
    Store,
    TextStore,
    Watched,
    WorkCallback,
    Workers,
    WorkersStore,
    WorkerState,
)

__all__ = [
    "CallStore",
    "CallbackStore",
    "CampaignStore",
    "ConsentStore",
    "DoNotTextStore",
    "Elected",
    "EmailStore",
    "EngagementStore",
    "GuardHolder",
    "Leadership",
    "NumberState",
    "RunStore",
    "Store",
    "TextStore",
    "Watched",
    "WorkCallback",
    "WorkerState",
    "Workers",
    "WorkersStore",
    "open_store",
]

_ADAPTERS = {
    "memory": ("dispatcher.store.memory", "MemoryStore"),
    "sqlite": ("dispatcher.store.sqlite", "SQLiteStore"),
    "postgresql": ("dispatcher.store.postgres.store", "PostgresStore"),
    "postgres": ("dispatcher.store.postgres.store", "PostgresStore"),
}


def open_store(url: str, **options: object) -> Store:
    """Build the store adapter named by ``url``'s scheme (not yet opened). The service
    passes ``service_home`` (its home folder): a PostgreSQL store then holds the
    single-worker guard; the other adapters ignore it."""
    store: Store = load_adapter(url, _ADAPTERS, key="store.url", what="store", **options)
    return store
