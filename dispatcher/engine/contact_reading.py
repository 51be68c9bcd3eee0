"""A contacts file read as contacts, chunk by chunk, in file order, off the event loop.

One thread of the service reads the file's records (the ``csv`` module) and makes
the contacts; what each record says (its number in E.164, its time zones, its pool
number, its text's segments: most of the work) is found by worker processes when the
file is large, a few chunks ahead, so every core works on the import. A small file's
records are read in the thread alone. Either way
:func:`dispatcher.core.contacts.read_records` reads them and the chunks come back in
file order; a worker answers with a few short strings a record, and the contacts are
made from the records the thread kept meanwhile.

Workers are started (``spawn``: the service has threads) for one import and stopped
at its end; they import the package, not the service's entry point (``python -m
dispatcher`` is a package's ``__main__``, which spawned processes skip; a script that
runs the service guards its entry as usual). If they cannot start or one dies, the
rest of the file is read in the thread: nothing is lost, only the speed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from dispatcher.core.campaigns import Contact, Record
from dispatcher.core.contacts import ContactRules, Reading, Rejected, contact_of, read_records

log = logging.getLogger(__name__)

Read = list[tuple[Contact, int] | Rejected]

POOL_BYTES = 4 << 20
"""A file at least this large (about 100,000 rows) is read by worker processes."""
MAX_WORKERS = 4

_rules: ContactRules | None = None  # in a worker: the import's rules
_frozen = False  # in a worker: what its first chunk loaded is out of the collector's way


def workers_for(size: int) -> int:
    """How many worker processes read a file of ``size`` bytes (0: none, a thread)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if size < POOL_BYTES or (cores or 1) < 2:
        return 0
    return min(MAX_WORKERS, cores or 1)


async def read_chunks(
    rules: ContactRules, records: Iterator[Record], first: Record | None, size: int, *,
    workers: int = 0,
) -> AsyncGenerator[Read, None]:  # fmt: skip
    """The file's records (``first``, then ``records``) as contacts or rejects, ``size``
    records at a time, in order; read by ``workers`` processes (0: in the thread)."""
    pipeline = _Pipeline(rules, records, first, size, workers)
    try:
        while (read := await asyncio.to_thread(pipeline.step)) is not None:
            yield read
    finally:
        await asyncio.to_thread(pipeline.close)


class _Pipeline:
    """The thread's side: records read, handed to the workers a few chunks ahead, and
    the contacts made from their answers, one chunk a :meth:`step`."""

    def __init__(self, rules: ContactRules, records: Iterator[Record], first: Record | None,
                 size: int, workers: int) -> None:  # fmt: skip
        self._rules = rules
        self._records = records
        self._carried = [first] if first is not None else []
        self._size = size
        self._ahead = 2 * workers  # chunks with the workers
        self._flight: deque[tuple[list[Record], Future[list[Reading]] | None]] = deque()
        self._ended = False
        self._pool = _start(rules, workers) if workers else None

    def step(self) -> Read | None:
        """The next chunk as contacts and rejects (None at the end of the file)."""
        while not self._ended and len(self._flight) <= self._ahead:
            chunk = self._take()
            if not chunk:
                self._ended = True
                break
            self._flight.append((chunk, self._submit(chunk)))
        if not self._flight:
            return None
        chunk, reading = self._flight.popleft()
        readings = self._readings(chunk, reading)
        return [contact_of(self._rules, record, answer)
                for record, answer in zip(chunk, readings, strict=True)]  # fmt: skip

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _take(self) -> list[Record]:
        taken, self._carried = self._carried, []
        for record in self._records:
            taken.append(record)
            if len(taken) >= self._size:
                break
        return taken

    def _submit(self, chunk: list[Record]) -> Future[list[Reading]] | None:
        if self._pool is None:
            return None  # read in this thread when its turn comes
        try:
            return self._pool.submit(_read_in_worker, chunk)
        except (BrokenProcessPool, RuntimeError):
            self._lost(chunk)
            return None

    def _readings(
        self, chunk: list[Record], reading: Future[list[Reading]] | None
    ) -> list[Reading]:
        if reading is not None:
            try:
                return reading.result()
            except (BrokenProcessPool, CancelledError):  # a worker died: read it here
                self._lost(chunk)
        return read_records(self._rules, chunk)

    def _lost(self, chunk: list[Record]) -> None:
        if self._pool is not None:
            log.warning("campaign.import_workers_lost", extra={"line": chunk[0][0]})
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _start(rules: ContactRules, workers: int) -> ProcessPoolExecutor | None:
    try:
        return ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_begin, initargs=(rules,),
        )  # fmt: skip
    except OSError:
        log.exception("campaign.import_workers_failed")
        return None


def _begin(rules: ContactRules) -> None:
    """In a worker, once: the import's rules, and the modules it imported kept out of
    the garbage collector's passes (``gc.freeze``)."""
    global _rules  # noqa: PLW0603 - one import per worker process
    _rules = rules
    gc.freeze()


def _read_in_worker(chunk: list[Record]) -> list[Reading]:
    """A chunk's readings. After the first, what it loaded (the number metadata of the
    regions it met) is frozen too: each chunk makes thousands of containers, and every
    collection they set off would otherwise walk those long-lived tables again."""
    global _frozen  # noqa: PLW0603 - one import per worker process
    assert _rules is not None, "the worker was started without the import's rules"
    readings = read_records(_rules, chunk)
    if not _frozen:
        _frozen = True
        gc.freeze()
    return readings
