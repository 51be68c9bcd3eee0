"""Time, injected.

Everything that needs the time asks a :class:`Clock`. One read gives both the
monotonic time (for schedules) and the UTC wall time (for the audit record), so a
send's slot and its recorded time come from the same instant.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import msgspec


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
