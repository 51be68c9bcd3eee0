"""The deadline scheduler: a heap of per-number next-send times and one timer.

Between due times it costs nothing: no task or poll per message, only one timer
for the earliest due number. A due number goes to a bounded pool of workers; the
worker claims the number's head message and, the moment its send starts, books
the number's next slot with :meth:`Pacer.book`, which puts it back on the heap.

A number is in exactly one of three places: idle (nothing to send), on the heap
(waiting for its slot) or with a worker. A wake-up for a number that is with a
worker is remembered, so no submission is ever missed.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Awaitable, Callable

from dispatcher.clock import Clock, TimerHandle
from dispatcher.errors import StoreUnavailable

log = logging.getLogger(__name__)

ERROR_BACKOFF = 1.0
"""Seconds before a number whose dispatch failed unexpectedly is tried again."""

Book = Callable[[float | None], None]
"""Called once per dispatch: the number's next slot (monotonic), or None when idle."""

Dispatch = Callable[[str, float, Book], Awaitable[None]]
"""``dispatch(number, slot, book)``: prepare the number's next send and start it no
earlier than ``slot`` (monotonic)."""


class Pacer:
    """Decides when each sending number may send next."""

    def __init__(
        self,
        clock: Clock,
        dispatch: Dispatch,
        *,
        workers: int,
        lead: float = 0.0,
        store_fault: Callable[[StoreUnavailable], None] | None = None,
    ) -> None:
        self._clock = clock
        self._store_fault = store_fault  # told of a refused write instead of the log
        self._lead = lead  # a number is handed out this long before its slot
        self._dispatch = dispatch
        self._workers = workers
        self._heap: list[tuple[float, str]] = []
        self._next_slot: dict[str, float] = {}
        self._on_heap: set[str] = set()
        self._busy: set[str] = set()
        self._woken_while_busy: set[str] = set()
        self._ready: asyncio.Queue[tuple[str, float] | None] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._timer: TimerHandle | None = None
        self._timer_at: float | None = None
        self._stopping = False

    # -- what the service tells the pacer --------------------------------------------
    def restore(self, number: str, next_slot: float) -> None:
        """Move a number's next slot later (at start-up, from the store; or to back off).
        A number already waiting on the heap waits until the later slot."""
        self._next_slot[number] = max(next_slot, self._next_slot.get(number, next_slot))

    def wake(self, number: str) -> None:
        """``number`` may have something to send: schedule it at its next slot."""
        if number in self._busy:
            self._woken_while_busy.add(number)
        elif number not in self._on_heap:
            self._push(number, max(self._next_slot.get(number, 0.0), self._clock.now().mono))

    def next_slot(self, number: str) -> float | None:
        return self._next_slot.get(number)

    def stop(self) -> None:
        """Stop handing out numbers; workers finish the dispatch they are in."""
        self._stopping = True
        self._wake.set()

    # -- running ---------------------------------------------------------------------
    async def run(self) -> None:
        """Run the timer loop and the workers until :meth:`stop`."""
        async with asyncio.TaskGroup() as group:
            for i in range(self._workers):
                group.create_task(self._worker(), name=f"pacer-worker-{i}")
            try:
                await self._timer_loop()
            finally:
                for _ in range(self._workers):
                    self._ready.put_nowait(None)

    async def _timer_loop(self) -> None:
        while not self._stopping:
            now = self._clock.now().mono
            while self._heap and self._heap[0][0] - self._lead <= now:
                slot, number = heapq.heappop(self._heap)
                if slot < (later := self._next_slot.get(number, slot)):
                    heapq.heappush(self._heap, (later, number))  # pushed back (restore)
                    continue
                self._on_heap.discard(number)
                self._busy.add(number)
                self._ready.put_nowait((number, slot))
            self._arm()
            await self._wake.wait()
            self._wake.clear()
        if self._timer is not None:
            self._timer.cancel()

    def _arm(self) -> None:
        due = self._heap[0][0] - self._lead if self._heap else None
        if due == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, due
        if due is not None:
            self._timer = self._clock.call_at(due, self._wake.set)

    def _push(self, number: str, slot: float) -> None:
        heapq.heappush(self._heap, (slot, number))
        self._on_heap.add(number)
        if self._timer_at is None or slot - self._lead < self._timer_at:
            self._wake.set()

    async def _worker(self) -> None:
        while (item := await self._ready.get()) is not None:
            number, slot = item
            booked = False

            def book(next_slot: float | None, number: str = number) -> None:
                nonlocal booked
                if not booked:
                    booked = True
                    self._release(number, next_slot)

            try:
                await self._dispatch(number, slot, book)
            except Exception as exc:
                if isinstance(exc, StoreUnavailable) and self._store_fault is not None:
                    self._store_fault(exc)  # the service pauses: no traceback per number
                else:
                    log.exception("dispatch.error", extra={"sender": number})
                # The number is not lost: it is tried again after a pause.
                book(self._clock.now().mono + ERROR_BACKOFF)
            finally:
                book(None)

    def _release(self, number: str, slot: float | None) -> None:
        self._busy.discard(number)
        if slot is not None:
            self._next_slot[number] = slot
            self._woken_while_busy.discard(number)
            self._push(number, slot)
        elif number in self._woken_while_busy:
            self._woken_while_busy.discard(number)
            self._push(number, max(self._next_slot.get(number, 0.0), self._clock.now().mono))
