"""Process-wide settings for a long-running service, applied by the entry points.

Garbage collection. The service keeps many objects alive (queue heads, recent
recipients, receipts in flight) and creates many short-lived ones per text. Left to
itself, CPython collects whenever allocations pass a threshold, that is in the middle
of whatever code is running, including the few statements between the clock read
that starts a send and the provider call: a pause there brings two sends of one
number closer than the guard at the carrier (seen in the benchmark as a gap of a few
milliseconds under 1.000 s at 1,000 numbers). So :func:`tune` freezes the objects
that exist at start-up and turns automatic collection off, and the service runs
:func:`collect_garbage` as a task of its own: collections then happen between other
tasks' steps, never inside one.

The event loop. :func:`run` runs the service on the standard asyncio loop or on
uvloop (``[performance] loop``). uvloop keeps its time in whole milliseconds (libuv's
loop time, floored) and rounds each delay to the nearest millisecond, so a timer may
fire up to a millisecond and a half before the ``time.monotonic()`` it was set for;
the pacer's slots are ``time.monotonic()`` readings, so its loop here rounds every
delay up instead: a timer never fires before its time, as on the standard loop.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

YOUNG = 50_000  # allocations (net) that make a young-generation collection due
OLDER = 10  # collections of one generation that make the next one due
INTERVAL = 0.05  # seconds between checks


def tune() -> None:
    gc.freeze()
    gc.disable()


async def collect_garbage() -> None:
    """Collect, by generation, whenever it is due; only while automatic collection is
    off (see :func:`tune`). Runs until cancelled."""
    while True:
        await asyncio.sleep(INTERVAL)
        if gc.isenabled():
            continue
        young, older, oldest = gc.get_count()
        if oldest >= OLDER:
            gc.collect(2)
        elif older >= OLDER:
            gc.collect(1)
        elif young >= YOUNG:
            gc.collect(0)


def run(main: Coroutine[Any, Any, T], *, loop: str = "asyncio") -> T:
    """Run ``main`` to its end on a new event loop: ``"asyncio"`` (the standard loop)
    or ``"uvloop"`` (see ``[performance] loop`` and the module's docstring)."""
    if loop == "asyncio":
        return asyncio.run(main)
    if loop == "uvloop":
        with asyncio.Runner(loop_factory=_uvloop()) as runner:
            return runner.run(main)
    main.close()
    raise ValueError(f"unknown event loop {loop!r}; use asyncio or uvloop")


def _uvloop() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop with timers that never fire early; imported only when asked for."""
    import uvloop  # noqa: PLC0415 - an optional loop: loaded only when configured

    class _UvLoop(uvloop.Loop):
        def call_later(
            self, delay: float, callback: Callable[..., object], *args: object, **kw: Any
        ) -> asyncio.TimerHandle:
            return self.call_at(time.monotonic() + delay, callback, *args, **kw)

        def call_at(
            self, when: float, callback: Callable[..., object], *args: object, **kw: Any
        ) -> asyncio.TimerHandle:
            # libuv's loop time (whole ms, floored) never runs ahead of time.monotonic(),
            # so a delay rounded up to whole ms from it never fires before ``when``.
            delay = math.ceil(max(0.0, when - super().time()) * 1000) / 1000
            return super().call_later(delay, callback, *args, **kw)

    return _UvLoop
