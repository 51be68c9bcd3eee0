"""The clock a worker keeps on a store several workers share (:class:`AnchoredClock`):
the database's time carried forward by the process's monotonic clock, so a step of the
machine's own wall clock moves nothing, and a reading of the database's clock moves it
only by what the reading proves."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from dispatcher.clock import AnchoredClock, FakeClock, Instant


class Machine(FakeClock):
    """A fake clock whose wall time an operator (or a resumed virtual machine) can step,
    its monotonic time going on as it was."""

    def __init__(self) -> None:
        super().__init__()
        self.off = timedelta(0)

    def now(self) -> Instant:
        now = super().now()
        return Instant(mono=now.mono, wall=now.wall + self.off)


DATABASE = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)  # the machine's clock at the start


def test_until_its_first_reading_it_is_the_machines_clock() -> None:
    machine = Machine()
    clock = AnchoredClock(machine)
    assert clock.now() == machine.now()
    assert clock.monotonic() == machine.monotonic()
    assert clock.skew() == 0.0


async def test_a_step_of_the_machines_clock_moves_nothing() -> None:
    machine = Machine()
    clock = AnchoredClock(machine)
    await machine.advance(2.5)
    machine.off = timedelta(hours=1)
    assert clock.now().wall == DATABASE + timedelta(seconds=2.5)
    assert clock.skew() == 3600.0
    machine.off = -timedelta(minutes=30)
    await machine.advance(1)
    assert clock.now().wall == DATABASE + timedelta(seconds=3.5)
    assert clock.skew() == -1800.0


def test_a_reading_within_its_round_trip_changes_nothing() -> None:
    clock = AnchoredClock(FakeClock())
    before = clock.now()
    # Read 40 ms into a 100 ms round trip: 10 ms from its middle, within the bound.
    assert clock.sync(before.mono, before.wall + timedelta(milliseconds=40), before.mono + 0.1) == 0
    assert clock.now() == before


def test_a_reading_off_by_more_than_its_round_trip_moves_it_by_what_it_proves() -> None:
    """Ten seconds off, read over a 200 ms round trip: the database was at least 9.9 s
    ahead, so the clock moves by 9.9 s, not by 10: a slow reading never moves it past
    where the database may be."""
    clock = AnchoredClock(FakeClock())
    at = clock.now()
    middle = at.wall + timedelta(seconds=0.1)
    step = clock.sync(at.mono, middle + timedelta(seconds=10), at.mono + 0.2)
    assert step == pytest.approx(9.9)
    assert clock.now().wall == at.wall + timedelta(seconds=9.9)
    behind = clock.sync(at.mono, clock.now().wall - timedelta(seconds=5), at.mono)
    assert behind == pytest.approx(-5.0)
    assert clock.now().wall == at.wall + timedelta(seconds=4.9)


def test_the_machines_clock_off_the_databases_is_logged_once_and_when_it_moves(
    caplog: pytest.LogCaptureFixture,
) -> None:
    machine = Machine()
    clock = AnchoredClock(machine)
    caplog.set_level(logging.INFO, logger="dispatcher.clock")

    def said() -> list[tuple[str, float]]:
        return [(r.getMessage(), r.__dict__["seconds"]) for r in caplog.records
                if r.getMessage().startswith("clock.skew")]  # fmt: skip

    at = machine.now()
    clock.sync(at.mono, at.wall, at.mono)
    assert said() == []
    machine.off = timedelta(seconds=90)  # the machine's clock jumps ahead
    clock.sync(at.mono, at.wall, at.mono)
    clock.sync(at.mono, at.wall, at.mono)  # said once
    machine.off = timedelta(seconds=90.5)  # a little more: not again
    clock.sync(at.mono, at.wall, at.mono)
    machine.off = -timedelta(seconds=30)  # back past the database's
    clock.sync(at.mono, at.wall, at.mono)
    machine.off = timedelta(0)  # set right
    clock.sync(at.mono, at.wall, at.mono)
    assert said() == [("clock.skew", 90.0), ("clock.skew", -30.0), ("clock.skew_ended", 0.0)]
    warned = [r for r in caplog.records if r.getMessage() == "clock.skew"]
    assert all(r.levelno == logging.WARNING for r in warned)
    assert "database's clock" in warned[0].__dict__["detail"]
