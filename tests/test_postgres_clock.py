"""A worker whose machine's clock jumps, on PostgreSQL: its sends stay paced, its
records and its numbers' slots stay on the database's clock (another worker taking its
numbers over neither waits an hour nor sends early), and the operator is told.

Two services in this process share one database of their own; each is built as
``dispatcher serve`` builds it (``Dispatcher.from_config``), the first on a machine
clock the test steps an hour either way while it sends."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from dispatcher.clock import AnchoredClock, Instant, SystemClock
from dispatcher.config import Config, StoreConfig
from dispatcher.service import Dispatcher, TextRequest
from dispatcher.testing import QUIET
from tests.helpers import gaps_by_number, send_log, wait_for
from tests.peers_postgres import Cluster

NUMBERS = ["+14155550001", "+14155550002"]


class Machine(SystemClock):
    """The real clock, whose wall time the test steps (as an operator's ``date``, a
    resumed virtual machine or a time sync would), its monotonic time going on."""

    def __init__(self) -> None:
        self.off = timedelta(0)

    def now(self) -> Instant:
        now = super().now()
        return Instant(mono=now.mono, wall=now.wall + self.off)


def worker(url: str, home: Path, clock: Machine | None = None) -> Dispatcher:
    config = Config(home=home, store=StoreConfig(url=url), simulator=QUIET)
    return Dispatcher.from_config(config, clock=clock)


async def submit(service: Dispatcher, texts: int) -> list[str]:
    accepted = []
    for i in range(texts):
        request = TextRequest(sender=NUMBERS[i % 2], recipient=f"+1650555{i:04d}", body="hi")
        accepted.append((await service.submit(request)).message.id)
    return accepted


async def test_a_worker_whose_clock_jumps_keeps_pacing_on_the_databases_clock(
    postgres: Cluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    url = await postgres.fresh_database()
    machine = Machine()
    first = worker(url, tmp_path / "first", machine)
    assert isinstance(first.clock, AnchoredClock)

    def sent(home: Path, count: int) -> Callable[[], Awaitable[bool]]:
        async def enough() -> bool:
            return len(send_log(home)) >= count

        return enough

    async with first:
        accepted = await submit(first, 8)
        await wait_for(sent(tmp_path / "first", 2), what="the first sends")
        machine.off = timedelta(hours=1)  # the machine's clock jumps an hour ahead
        await wait_for(sent(tmp_path / "first", 5), what="sends after the jump ahead")
        machine.off = -timedelta(hours=1)  # and then an hour back
        await wait_for(sent(tmp_path / "first", 8), what="sends after the jump back")
    skews = [r.__dict__["seconds"] for r in caplog.records if r.getMessage() == "clock.skew"]
    assert skews, "the operator is told the machine's clock is off the database's"
    assert all(abs(abs(s) - 3600) < 60 for s in skews), skews
    database = await asyncpg.connect(url)
    try:
        # What it recorded and booked is on the database's clock, not an hour off.
        assert (
            await database.fetchval("SELECT max(abs(extract(epoch FROM at - now()))) FROM events")
            < 60
        )
        assert (
            await database.fetchval(
                "SELECT max(abs(extract(epoch FROM next_slot_at - now()))) FROM pacing_keys"
            )
            < 60
        )
    finally:
        await database.close()
    # Another worker, on a clock that is right, takes the numbers over: it sends their
    # next texts at once (no hour's wait), and never within a second of the first's.
    second = worker(url, tmp_path / "second")
    async with second:
        accepted += await submit(second, 4)
        await wait_for(sent(tmp_path / "second", 4), what="the second worker's sends")
    records = send_log(tmp_path / "first") + send_log(tmp_path / "second")
    assert sorted(r["message_id"] for r in records) == sorted(accepted)
    gaps = [gap for per in gaps_by_number(records).values() for gap in per]
    assert len(gaps) == 10
    assert min(gaps) >= 1.0, gaps
