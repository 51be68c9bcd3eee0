"""The PostgreSQL store: every part of the port over one pool.

Each part is a mixin over :class:`~dispatcher.store.postgres.base.PostgresBase`, one
module each, as in the SQLite adapter. The contract suite (``tests/test_store_contract.py``)
runs on it against a real cluster.
"""

from __future__ import annotations

from typing import Any

from dispatcher.store.postgres.automations import PostgresAutomations
from dispatcher.store.postgres.base import PostgresBase
from dispatcher.store.postgres.callbacks import PostgresCallbacks
from dispatcher.store.postgres.calls import PostgresCalls
from dispatcher.store.postgres.campaigns import PostgresCampaigns
from dispatcher.store.postgres.consent import PostgresConsent
from dispatcher.store.postgres.emails import PostgresEmails
from dispatcher.store.postgres.engagement import PostgresEngagement
from dispatcher.store.postgres.listing import PostgresListing
from dispatcher.store.postgres.operations import PostgresOperations
from dispatcher.store.postgres.texts import PostgresTexts
from dispatcher.store.postgres.url import parse_url


class PostgresStore(
    PostgresCampaigns,
    PostgresAutomations,
    PostgresCallbacks,
    PostgresCalls,
    PostgresConsent,
    PostgresListing,
    PostgresOperations,
    PostgresEmails,
    PostgresEngagement,
    PostgresTexts,
    PostgresBase,
):
    """Store adapter for ``postgresql://user@host:port/database``."""

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresStore:
        parse_url(url)  # a bad URL is refused before anything opens
        pool = {k: v for k, v in options.items() if k in ("min_size", "max_size")}
        return cls(url, **pool)
