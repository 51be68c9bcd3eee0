"""A copy of the service's database taken while it runs (``dispatcher backup FILE``).

SQLite only: a PostgreSQL store is refused, pointing to ``pg_dump``. Not a verb of a
running service: SQLite's online backup API reads the database file
from any process, so the copy is taken by the command itself, with the service up or
down, and never waits for the service's event loop.
"""

from __future__ import annotations

from pathlib import Path

from dispatcher.config import Config
from dispatcher.errors import ConfigError
from dispatcher.store.postgres.url import SCHEMES, parse_url
from dispatcher.store.sqlite.backup import Backup, backup

SQLITE = "sqlite:///"


def backup_database(config: Config, target: Path) -> Backup:
    """Copy the configured SQLite database to ``target``, a new file (see
    :func:`dispatcher.store.sqlite.backup.backup`)."""
    url = config.store_url
    if url.split(":", 1)[0] in SCHEMES:
        shown = parse_url(url).shown
        raise ConfigError(
            f"store.url: {shown} is a PostgreSQL database; dispatcher backup copies the "
            "embedded SQLite store only. Back PostgreSQL up with its own tools: "
            "pg_dump --format=custom --file=FILE (docs/scale-out.md)",
            field="store.url",
        )
    if not url.startswith(SQLITE):
        raise ConfigError(f"store.url: {url!r} is not a SQLite database; dispatcher backup "
                          "copies the embedded SQLite store only", field="store.url")  # fmt: skip
    return backup(Path(url[len(SQLITE) :]), target)


__all__ = ["Backup", "backup_database"]
