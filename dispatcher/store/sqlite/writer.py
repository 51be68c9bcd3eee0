"""The service's end of the SQLite writer process (``writer_process.py``).

The group commit (``connection.py``) hands each sealed batch to :class:`WriterProcess`,
which ships it down the writer's stdin and awaits its answer on stdout. The event
loop only turns rows into bytes (:mod:`marshal`, well under a microsecond a row);
SQLite runs in the writer, on an interpreter lock of its own.

A writer that dies (killed, crashed) fails the batch it had with
:class:`StoreUnavailable`: the batch may or may not have committed, as when a
process crashes, and the service settles what is in doubt as after a crash. The
next batch starts a new writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import marshal
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dispatcher.errors import StoreError, StoreUnavailable
from dispatcher.store.sqlite import writer_process
from dispatcher.store.sqlite.writer_process import HEADER, Answer

PROGRAM = Path(writer_process.__file__)
CLOSE_TIMEOUT = 10.0
"""Seconds the writer has to close the database (a last checkpoint) before it is killed."""

Statements = Sequence[tuple[str, list[tuple[Any, ...]]]]


def command(path: Path) -> list[str]:
    """The writer's command line, on the service's own interpreter: isolated (``-I``: no
    environment variables, no user site) and without ``site`` (``-S``: no installed
    packages, not even this one, on its path; the standard library is all it needs)."""
    return [sys.executable, "-I", "-S", str(PROGRAM), str(path)]


def encode(statements: Statements) -> bytes:
    """One request frame. Rows are plain values; a value of a subclass (an enum of
    ``str`` or ``int``) or one SQLite adapts (a date) is written as SQLite would bind
    it in the service."""
    try:
        payload = marshal.dumps(list(statements))
    except ValueError:
        try:
            payload = marshal.dumps([(sql, [tuple(map(_plain, row)) for row in rows])
                                     for sql, rows in statements])  # fmt: skip
        except ValueError as exc:
            raise StoreError(f"a row holds a value the store cannot write: {exc}") from exc
    return HEADER.pack(len(payload)) + payload


_PLAIN = frozenset({type(None), bool, int, float, str, bytes})


def _plain(value: Any) -> Any:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    try:
        return sqlite3.adapt(value, sqlite3.PrepareProtocol)
    except sqlite3.ProgrammingError:
        return value  # refused by marshal, as SQLite would refuse to bind it


def error(path: Path, answer: tuple[bool, str, str]) -> StoreError:
    """The error every writer of a refused batch hears. A database that refuses a
    write it should take (a full disk, an I/O error, locked, read-only, damaged) is
    :class:`StoreUnavailable`: the service pauses and retries. A write the data itself
    refuses (a broken constraint) is a plain :class:`StoreError`."""
    fault, kind, message = answer
    error = (StoreUnavailable if fault else StoreError)(f"writing to {path} failed: {message}")
    cause = getattr(sqlite3, kind, None)
    if isinstance(cause, type) and issubclass(cause, sqlite3.Error):
        error.__cause__ = cause(message)
    return error


class WriterProcess:
    """One writer process and the pipes to it. One batch at a time: :meth:`run` is
    awaited before the next call."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        """The running writer's process id (``None`` before the first batch or after
        it died)."""
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        """Start a writer and wait until it has opened the database."""
        try:
            process = await asyncio.create_subprocess_exec(
                *command(self._path),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise StoreUnavailable(f"cannot start the writer of {self._path}: {exc}") from exc
        self._process = process
        try:
            answer = await self._answer()
        except asyncio.CancelledError:
            self._abandon()
            raise
        if answer is not None:
            await self.close()
            raise error(self._path, answer)

    async def run(self, statements: Statements) -> None:
        """Commit ``statements`` as one transaction, in a writer started if none runs;
        raises :class:`StoreError` (or :class:`StoreUnavailable`) if it was not."""
        frame = encode(statements)
        if self._process is None or self._process.returncode is not None:
            await self._reap()
            await self.start()
        process = self._process
        assert process is not None
        assert process.stdin is not None
        try:
            try:
                process.stdin.write(frame)
                await process.stdin.drain()
            except ConnectionError as exc:  # a closed pipe: the writer is gone
                raise await self._lost() from exc
            answer = await self._answer()
        except asyncio.CancelledError:
            # Its answer would be taken for the next batch's: this writer ends with the
            # batch it has (the end of its input), and the next batch starts another.
            self._abandon()
            raise
        if answer is not None:
            raise error(self._path, answer)

    async def _answer(self) -> Answer:
        process = self._process
        assert process is not None
        assert process.stdout is not None
        try:
            header = await process.stdout.readexactly(HEADER.size)
            (size,) = HEADER.unpack(header)
            payload = await process.stdout.readexactly(size)
            answer: Answer = marshal.loads(payload)  # noqa: S302 - from our own writer
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise await self._lost() from exc
        return answer

    async def _lost(self) -> StoreUnavailable:
        """The writer died: the batch it had may or may not have committed."""
        code = await self._reap()
        return StoreUnavailable(
            f"writing to {self._path} failed: the writer process exited ({_exit(code)})"
            " before answering"
        )

    def _abandon(self) -> None:
        """Close this writer's input and forget it (the event loop reaps it)."""
        process, self._process = self._process, None
        if process is not None and process.stdin is not None:
            process.stdin.close()

    async def _reap(self) -> int | None:
        """Forget the writer, waiting for its end (it is gone or going)."""
        process, self._process = self._process, None
        if process is None:
            return None
        if process.stdin is not None:
            process.stdin.close()
        return await process.wait()

    async def close(self) -> None:
        """End of input: the writer closes the database and exits. Killed if it has
        not within :data:`CLOSE_TIMEOUT`; reaped either way."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), CLOSE_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def _exit(code: int | None) -> str:
    if code is None:
        return "unknown status"
    return f"signal {-code}" if code < 0 else f"status {code}"
