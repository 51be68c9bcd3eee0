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
"""

from __future__ import annotations

import asyncio
import gc

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
