"""The SQLite store's writer: a program of its own, fed batches of writes on stdin.

The service runs it as ``python -I -S writer_process.py DATABASE`` (see ``writer.py``)
so that SQLite's work, and the interpreter lock it takes, is off the process that
paces. It imports nothing of the package and only a few modules of the standard
library (not even ``typing`` or ``pickle``), so it starts in a few tens of
milliseconds.

The protocol, one frame each way per batch. A frame is an 8-byte little-endian
length and that many bytes of :mod:`marshal` (built in, about twice as fast as
pickle both ways for rows of plain values; the service is the only sender).

- Once the database is open (WAL, ``synchronous=NORMAL``, a busy timeout, a 64 MiB
  page cache), the writer answers once: ready, or why it could not open it.
- Each request is a batch: a list of ``(sql, rows)``. The writer runs it in one
  ``BEGIN IMMEDIATE ... COMMIT``, one ``executemany`` per statement, in order, and
  answers ``None`` once it has committed, or ``(fault, error type, message)`` once it
  has rolled the whole batch back. ``fault`` is :func:`is_fault`.
- At the end of its input (the service closed the pipe, or died) the writer finishes
  nothing more than the batch it was running, closes the database and exits: it never
  outlives its service. It ignores the signals a terminal or a service manager sends
  the whole group (SIGINT, SIGTERM, SIGHUP): the service's own shutdown ends it.
"""

from __future__ import annotations

import marshal
import signal
import sqlite3
import struct
import sys

TYPE_CHECKING = False  # ``typing`` is not imported at run time: it slows the start-up
if TYPE_CHECKING:
    from typing import BinaryIO

HEADER = struct.Struct("<Q")
"""The length of the marshalled payload that follows."""

BUSY_TIMEOUT_MS = 5000
CACHE_KIB = 65536
"""The writer's page cache, at most (SQLite's default is 2 MiB). A large import
inserts all over its indexes (a million contacts' phones); with 64 MiB their pages
stay cached from one batch to the next: the writer's CPU per contact imported fell by
a fifth to a quarter (docs/performance.md), for up to 64 MiB more resident memory."""

Answer = tuple[bool, str, str] | None
"""``None``: committed (or, first, ready). Else ``(fault, error type, message)``."""


def is_fault(failure: BaseException) -> bool:
    """Whether ``failure`` is the database refusing a write it should take (a full disk,
    an I/O error, locked, read-only, damaged), not the data being refused (a broken
    constraint, a misuse of the driver)."""
    return isinstance(failure, sqlite3.DatabaseError) and not isinstance(
        failure, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError
    )


def _failed(failure: BaseException) -> Answer:
    return (is_fault(failure), type(failure).__name__, str(failure))


def read_frame(source: BinaryIO) -> bytes | None:
    """The next frame's payload; ``None`` at the end of the input (a frame cut short by
    it, too: a batch that did not arrive whole is not run)."""
    header = source.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    payload = source.read(size)
    return payload if len(payload) == size else None


def write_frame(sink: BinaryIO, answer: Answer) -> None:
    payload = marshal.dumps(answer)
    sink.write(HEADER.pack(len(payload)) + payload)
    sink.flush()


def connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")  # first: the service may be migrating
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")  # negative: KiB, not pages
    return db


def run(db: sqlite3.Connection, payload: bytes) -> Answer:
    """Run one batch in one transaction: all of it, or (rolled back) none of it."""
    try:
        statements: list[tuple[str, list[tuple[object, ...]]]]
        statements = marshal.loads(payload)  # noqa: S302 - its only sender is the service
    except Exception as exc:  # a batch that cannot be read is refused, like bad data
        return (False, type(exc).__name__, f"unreadable batch: {exc}")
    try:
        db.execute("BEGIN IMMEDIATE")
        for sql, rows in statements:
            db.executemany(sql, rows)
        db.execute("COMMIT")
    except Exception as exc:  # the service hears of every failure
        if db.in_transaction:
            try:  # noqa: SIM105 - contextlib would slow the start-up
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the batch's error is the one to report
        return _failed(exc)
    return None


def serve(path: str, source: BinaryIO, sink: BinaryIO) -> int:
    try:
        db = connect(path)
    except sqlite3.Error as exc:
        write_frame(sink, _failed(exc))
        return 1
    try:
        write_frame(sink, None)
        while (payload := read_frame(source)) is not None:
            write_frame(sink, run(db, payload))
    except BrokenPipeError:  # the service is gone: nobody to answer
        pass
    finally:
        db.close()
    return 0


def main(argv: list[str]) -> int:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    if len(argv) != 2:
        print("usage: writer_process.py DATABASE", file=sys.stderr)
        return 2
    return serve(argv[1], sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
