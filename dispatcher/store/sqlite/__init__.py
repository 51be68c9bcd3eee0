"""The embedded default store: SQLite in WAL mode through ``aiosqlite``.

The connections and the group commit are in ``connection.py``; rows become objects
in ``rows.py``; one module per part of the port (texts, calls, email, engagement,
campaigns, automations, the lists) adds its verbs. SQL lives in ``dispatcher/store/sql/``.
"""

from __future__ import annotations

from pathlib import Path

from dispatcher.errors import ConfigError
from dispatcher.store.sqlite.automations import SQLiteAutomations
from dispatcher.store.sqlite.callbacks import SQLiteCallbacks
from dispatcher.store.sqlite.calls import SQLiteCalls
from dispatcher.store.sqlite.campaigns import SQLiteCampaigns
from dispatcher.store.sqlite.consent import SQLiteConsent
from dispatcher.store.sqlite.emails import SQLiteEmails
from dispatcher.store.sqlite.engagement import SQLiteEngagement
from dispatcher.store.sqlite.keys import SQLiteKeys
from dispatcher.store.sqlite.listing import SQLiteListing
from dispatcher.store.sqlite.operations import SQLiteOperations
from dispatcher.store.sqlite.texts import SQLiteTexts

__all__ = ["SQLiteStore"]


class SQLiteStore(
    SQLiteTexts,
    SQLiteConsent,
    SQLiteKeys,
    SQLiteCalls,
    SQLiteEmails,
    SQLiteEngagement,
    SQLiteCampaigns,
    SQLiteAutomations,
    SQLiteCallbacks,
    SQLiteListing,
    SQLiteOperations,
):
    """Store adapter for ``sqlite:///path/to/file.db``."""

    @classmethod
    def from_url(cls, url: str, *, commit_window: float = 0.0, **_options: object) -> SQLiteStore:
        prefix = "sqlite:///"
        if not url.startswith(prefix) or len(url) == len(prefix):
            raise ConfigError(
                f"store.url: {url!r} is not a SQLite URL; write sqlite:///path/to/file.db",
                field="store.url",
            )
        return cls(Path(url[len(prefix) :]), commit_window=commit_window)
