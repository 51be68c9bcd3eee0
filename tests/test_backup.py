"""``dispatcher backup FILE``: a consistent copy of the SQLite database taken with the
online backup API while the service writes, run as a user runs it (a subprocess next
to ``dispatcher serve``'s service in this event loop)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import stat
from pathlib import Path

from dispatcher.config import Config
from dispatcher.control.client import ControlClient
from tests.test_cli import assert_clean_error, dispatcher, service, submit

__all__ = ["service"]  # the fixture: the service as dispatcher serve runs it

WRITERS = 4
TEXTS = 60  # each writer's, bounded
VERSION = "SELECT MAX(version) FROM schema_migrations"


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


async def test_a_backup_taken_while_the_service_writes_is_whole_and_consistent(
    home: Path, service: Config, tmp_path: Path
) -> None:
    async with ControlClient(service.socket_path) as client:
        before = [(await submit(client, f"+1555010{i:04d}"))["id"] for i in range(5)]

        async def write(n: int) -> None:
            async with ControlClient(service.socket_path) as own:
                for i in range(TEXTS):
                    await submit(own, f"+15552{n:02d}{i:04d}", sender=f"+1555000000{n + 2}")

        writers = [asyncio.create_task(write(n)) for n in range(WRITERS)]
        copy = tmp_path / "copy.db"
        made = (await dispatcher(home, "backup", str(copy), "--json")).json()
        await asyncio.gather(*writers)

    assert made == {"path": str(copy), "bytes": copy.stat().st_size, "pages": made["pages"]}
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert names(tmp_path) == ["copy.db"]  # no partial file left
    assert rows(copy, "PRAGMA integrity_check") == [("ok",)]
    copied = {m for (m,) in rows(copy, "SELECT id FROM messages")}
    assert set(before) <= copied
    assert len(copied) <= 5 + WRITERS * TEXTS
    # One snapshot: every text it holds has its history, every event its text.
    orphans = (
        "SELECT id FROM messages WHERE id NOT IN (SELECT message_id FROM events) UNION ALL "
        "SELECT message_id FROM events WHERE message_id NOT IN (SELECT id FROM messages)"
    )
    assert rows(copy, orphans) == []
    assert rows(copy, VERSION) == rows(service.home / "dispatcher.db", VERSION)

    second = tmp_path / "second.db"
    shown = await dispatcher(home, "backup", str(second))
    assert shown.code == 0, shown.err
    assert shown.out == f"{second}: {second.stat().st_size} bytes, integrity ok\n"


async def test_a_backup_never_overwrites_and_names_what_is_wrong(
    home: Path, service: Config, tmp_path: Path
) -> None:
    taken = tmp_path / "taken.db"
    taken.write_bytes(b"keep me")
    exists = await dispatcher(home, "backup", str(taken))
    assert "exists; give a new file name" in assert_clean_error(exists, 2)
    assert taken.read_bytes() == b"keep me"

    nowhere = await dispatcher(home, "backup", str(tmp_path / "no" / "such" / "copy.db"))
    assert "does not exist" in assert_clean_error(nowhere, 2)
    assert names(tmp_path) == ["taken.db"]
    assert service.store_url.startswith("sqlite:///")


async def test_a_backup_of_a_store_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "dispatcher.toml").write_text('[store]\nurl = "memory://"\n', encoding="utf-8")
    run = await dispatcher(home, "--config", str(home / "dispatcher.toml"), "backup", "x.db")
    assert "is not a SQLite database" in assert_clean_error(run, 2)


async def test_a_backup_without_a_database_says_so(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    run = await dispatcher(home, "backup", str(tmp_path / "copy.db"))
    said = assert_clean_error(run, 1)
    assert "there is no database at" in said
    assert "PostgreSQL database is backed up with pg_dump" in said  # a service on one
    assert not (tmp_path / "copy.db").exists()
