"""A consistent copy of the SQLite database while the service writes to it, with
SQLite's online backup API (``dispatcher backup FILE``).

The copy is taken in one step: one read transaction over the whole database, so it is
the database as one commit left it; in WAL mode the service's writer is not held up
meanwhile. It is written next to its destination under a hidden name (0600), checked
with ``PRAGMA integrity_check``, flushed to disk and only then renamed to the name
asked for: a copy that stopped half-way never carries that name.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from dispatcher import private
from dispatcher.errors import InvalidInput, StoreError

BUSY_TIMEOUT_MS = 5000
"""How long the copy waits for a lock the service holds (as the service's own reads)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Backup:
    """A copy made (SQLite's integrity check passed on it): where, and its size."""

    path: Path
    size: int  # bytes
    pages: int


def backup(source: Path, target: Path) -> Backup:
    """Copy the database at ``source`` to ``target`` (a new file). Blocking: run it in a
    thread (or a process of its own). Raises :class:`InvalidInput` naming ``FILE`` when
    ``target`` exists or its folder does not, :class:`StoreError` when the database
    cannot be read or the copy fails its check; nothing is left under ``target`` then."""
    target = target.absolute()
    if target.exists() or target.is_symlink():
        raise InvalidInput(f"FILE: {target} exists; give a new file name (a backup never "
                           "overwrites)", field="FILE")  # fmt: skip
    if not target.parent.is_dir():
        raise InvalidInput(f"FILE: the folder {target.parent} does not exist", field="FILE")
    if not source.is_file():
        raise StoreError(f"there is no database at {source} to back up (a service whose "
                         "store.url, or DISPATCHER_STORE_URL, names a PostgreSQL database is "
                         "backed up with pg_dump: give this command the same store.url, or "
                         "see docs/scale-out.md)")  # fmt: skip
    partial = target.with_name(f".{target.name}.partial")
    try:
        os.close(private.create(partial, os.O_WRONLY | os.O_TRUNC))
        pages = _copy(source, partial)
        _flush(partial)
        os.replace(partial, target)
        _flush(target.parent)
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise StoreError(f"backing up {source} failed: {exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return Backup(path=target, size=target.stat().st_size, pages=pages)


def _copy(source: Path, partial: Path) -> int:
    """Copy every page, check the copy; its pages."""
    with contextlib.closing(sqlite3.connect(source)) as src:
        src.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        src.execute("PRAGMA query_only=ON")
        with contextlib.closing(sqlite3.connect(partial)) as dst:
            src.backup(dst)  # every page in one step: one consistent snapshot
            pages = int(dst.execute("PRAGMA page_count").fetchone()[0])
            integrity = str(dst.execute("PRAGMA integrity_check").fetchone()[0])
    if integrity != "ok":
        raise StoreError(f"the copy of {source} failed its integrity check: {integrity}")
    return pages


def _flush(path: Path) -> None:
    """The file (or folder entry) on disk before anyone is told it is there."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
