"""A contacts file read by worker processes gives the same contacts and rejects, in
the same order, as one read in the service's thread; a worker lost is no row lost."""

from __future__ import annotations

import gc
import multiprocessing
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from dispatcher.core.campaigns import CsvReader, parse_template
from dispatcher.core.contacts import ContactRules, Rejected
from dispatcher.engine import contact_reading
from dispatcher.engine.contact_reading import Read, _Pipeline, read_chunks
from tests.test_campaigns import write_big_file

POOL = ("+14155550100", "+14155550101", "+14155550102")


def rules_for(reader: CsvReader) -> ContactRules:
    return ContactRules(
        campaign_id="cmp_a", senders=POOL, header=tuple(reader.header),
        phone_column="phone", tz_column="tz", region="US", default_zone="America/New_York",
        template=parse_template("Hi {name}, our {city} store has 20% off today."),
        link_base="http://127.0.0.1:8080/v/",
    )  # fmt: skip


async def read_all(path: Path, workers: int) -> Read:
    reader = CsvReader(path)
    records = reader.records()
    first = next(records)
    read: Read = []
    async for chunk in read_chunks(rules_for(reader), records, first, 700, workers=workers):
        assert 0 < len(chunk) <= 700
        read += chunk
    return read


async def test_workers_read_the_same_contacts_and_rejects_as_the_thread(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    big = write_big_file(path, 20_000)

    serial = await read_all(path, workers=0)
    parallel = await read_all(path, workers=2)

    assert parallel == serial
    rejected = {item.line: item.reason for item in serial if isinstance(item, Rejected)}
    assert set(rejected) == set(big.rejected)
    assert all(why in rejected[line] for line, why in big.rejected.items())
    lines = [item.line if isinstance(item, Rejected) else item[0].line for item in serial]
    assert lines == sorted(lines)
    assert len(lines) == 20_000


class DeadPool:
    """An executor whose workers have died."""

    submitted = 0

    def submit(self, *_args: Any) -> Future[Any]:
        self.submitted += 1
        future: Future[Any] = Future()
        future.set_exception(BrokenProcessPool("a worker died"))
        return future

    def shutdown(self, **_options: Any) -> None:
        pass


def test_chunks_whose_worker_died_are_read_in_the_thread(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    write_big_file(path, 3_000)

    def read(pool: DeadPool | None) -> Read:
        reader = CsvReader(path)
        records = reader.records()
        first = next(records)  # the header is read with it
        pipeline = _Pipeline(rules_for(reader), records, first, 400, workers=0)
        if pool is not None:  # a stand-in for workers that died
            pipeline._pool = pool  # type: ignore[assignment]
            pipeline._ahead = 2
        read: Read = []
        while (chunk := pipeline.step()) is not None:
            read += chunk
        pipeline.close()
        return read

    pool = DeadPool()
    assert read(pool) == read(None)
    assert pool.submitted >= 1  # handed to the workers, then read in the thread


def test_large_files_are_read_by_workers_small_ones_in_the_thread() -> None:
    assert contact_reading.workers_for(1_000) == 0
    assert contact_reading.workers_for(contact_reading.POOL_BYTES) in (0, 2, 3, 4)


async def test_workers_freeze_their_own_objects_and_end_with_their_import(
    tmp_path: Path,
) -> None:
    # gc.freeze runs in the import's worker processes only: the service's collector,
    # which runs for as long as the service does, keeps every object it had; and the
    # workers of one import end with it, so nothing frozen outlives the import.
    path = tmp_path / "contacts.csv"
    write_big_file(path, 3_000)
    frozen, children = gc.get_freeze_count(), set(multiprocessing.active_children())
    for _ in range(2):  # two imports, one after the other, in the same process
        assert len(await read_all(path, workers=2)) == 3_000
        assert gc.get_freeze_count() == frozen
        assert set(multiprocessing.active_children()) == children

    reader = CsvReader(path)
    records = reader.records()
    chunk = [next(records) for _ in range(50)]
    pool = contact_reading._start(rules_for(reader), 1)
    assert pool is not None
    try:
        started = pool.submit(gc.get_freeze_count).result()
        pool.submit(contact_reading._read_in_worker, chunk).result()
        after_first = pool.submit(gc.get_freeze_count).result()
    finally:
        pool.shutdown()
    assert 0 < started < after_first  # at its start, and what its first chunk loaded
