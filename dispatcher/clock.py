"""Time, injected.

Everything that needs the time asks a :class:`Clock`. One read gives both the
monotonic time (for schedules) and the UTC wall time (for the audit record), so a
send's slot and its recorded time come from the same instant.

On a store several workers share, a worker's wall time is the database's
(:class:`AnchoredClock`): the slots it books and the times it records are compared
with other workers', so a machine whose clock is off, or jumps, must not move them.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import msgspec

log = logging.getLogger(__name__)


class Instant(msgspec.Struct, frozen=True, gc=False):
    """One clock read: monotonic seconds and the matching UTC wall time. A struct, built
    in C: a text reads the clock several times on its way (a frozen dataclass sets each
    field through ``object.__setattr__``)."""

    mono: float
    wall: datetime


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> Instant:
        """Read the clock once."""
        ...

    def monotonic(self) -> float:
        """The monotonic time alone (``now().mono``), for a measurement: no wall time
        is read or built."""
        ...

    def call_at(self, mono: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` once the monotonic time reaches ``mono``."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic`` (the event loop's time) and UTC now."""

    def now(self) -> Instant:
        return Instant(mono=time.monotonic(), wall=datetime.now(UTC))

    def monotonic(self) -> float:
        return time.monotonic()

    def call_at(self, mono: float, callback: Callable[[], None]) -> TimerHandle:
        loop = asyncio.get_running_loop()
        # The loop's time is time.monotonic(); both use the same reference.
        return loop.call_at(mono, callback)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class AnchoredClock:
    """A clock whose wall time is another clock's (the database's, on a store several
    workers share), carried forward by this process's monotonic clock.

    The wall time is ``anchor + (monotonic - anchor's monotonic)``: a step of the
    machine's own wall clock (an operator's ``date``, a virtual machine resumed, NTP
    stepping) does not move it. Each reading of the reference clock (:meth:`sync`),
    taken between two monotonic reads, bounds where the reference was; when the
    reading shows this clock outside that bound, it is moved by the least that brings
    it inside (never further: a reading taken over a slow round trip cannot make it
    worse). Until the first reading it is the base clock's wall time.
    """

    TOLERANCE = 0.001  # seconds: readings closer than this change nothing
    SKEW_WARNING = 1.0  # seconds between the machine's clock and this one that are logged

    def __init__(self, base: Clock) -> None:
        self._base = base
        now = base.now()
        self._mono0, self._wall0 = now.mono, now.wall
        self._skew_told = 0.0  # the skew last logged (0: none)

    def now(self) -> Instant:
        mono = self._base.monotonic()
        return Instant(mono=mono, wall=self._wall_at(mono))

    def monotonic(self) -> float:
        return self._base.monotonic()

    def call_at(self, mono: float, callback: Callable[[], None]) -> TimerHandle:
        return self._base.call_at(mono, callback)

    async def sleep(self, seconds: float) -> None:
        await self._base.sleep(seconds)

    def _wall_at(self, mono: float) -> datetime:
        return self._wall0 + timedelta(seconds=mono - self._mono0)

    def sync(self, before: float, reference: datetime, after: float) -> float:
        """Take a reading of the reference clock, made between the monotonic times
        ``before`` and ``after``; returns the seconds this clock moved (0.0: it was
        within the reading's bound)."""
        half = max(0.0, after - before) / 2
        middle = before + half
        error = (reference - self._wall_at(middle)).total_seconds()
        if abs(error) <= half + self.TOLERANCE:
            step = 0.0
        else:
            step = error - half if error > 0 else error + half
            self._wall0 += timedelta(seconds=step)
            if abs(step) >= self.SKEW_WARNING:
                log.warning("clock.stepped", extra={"seconds": round(step, 3)})
        self._tell_skew()
        return step

    def skew(self) -> float:
        """Seconds the base clock's wall time is ahead of this clock's (negative:
        behind)."""
        now = self._base.now()
        return (now.wall - self._wall_at(now.mono)).total_seconds()

    def _tell_skew(self) -> None:
        """Log the machine's clock off this one by a second or more, once, and again
        when it moves by a second or more, or comes back."""
        skew = self.skew()
        if abs(skew) < self.SKEW_WARNING:
            if self._skew_told:
                log.info("clock.skew_ended", extra={"seconds": round(skew, 3)})
                self._skew_told = 0.0
            return
        if not self._skew_told or abs(skew - self._skew_told) >= self.SKEW_WARNING:
            log.warning(
                "clock.skew",
                extra={"seconds": round(skew, 3), "detail": "this machine's clock is off the "
                       "database's; sends are paced and recorded by the database's clock"},
            )  # fmt: skip
            self._skew_told = skew


class _FakeTimer:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A clock that only moves when told to. Public, for tests of code that waits.

    ``advance`` fires every timer that falls due, in order, moving the time to each
    timer's due time first, so a callback sees the time it was scheduled for.
    """

    def __init__(self, start: datetime | None = None, mono: float = 1000.0) -> None:
        self._wall0 = start or datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
        self._mono0 = mono
        self._mono = mono
        self._timers: list[tuple[float, int, _FakeTimer]] = []
        self._counter = itertools.count()

    def now(self) -> Instant:
        return Instant(mono=self._mono, wall=self._wall_at(self._mono))

    def monotonic(self) -> float:
        return self._mono

    def _wall_at(self, mono: float) -> datetime:
        return self._wall0 + timedelta(seconds=mono - self._mono0)

    def call_at(self, mono: float, callback: Callable[[], None]) -> TimerHandle:
        timer = _FakeTimer(callback)
        heapq.heappush(self._timers, (mono, next(self._counter), timer))
        return timer

    async def sleep(self, seconds: float) -> None:
        done = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not done.done():
                done.set_result(None)

        self.call_at(self._mono + max(0.0, seconds), wake)
        await done

    def next_due(self) -> float | None:
        """The monotonic time of the earliest live timer, if any."""
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def stall(self, seconds: float) -> None:
        """Time passes with nothing else running, as when the OS takes the CPU from
        the process between two statements; timers due meanwhile fire at the next
        :meth:`advance`."""
        self._mono += seconds

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing due timers and letting tasks run."""
        target = self._mono + seconds
        while True:
            await settle()
            due = self.next_due()
            if due is None or due > target:
                break
            _, _, timer = heapq.heappop(self._timers)
            self._mono = max(self._mono, due)
            timer.callback()
        self._mono = target
        await settle()


async def settle(rounds: int = 20) -> None:
    """Let every ready task run a few steps (no time passes)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
