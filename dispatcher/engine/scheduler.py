"""The deadline scheduler: a heap of per-key next-send times and one timer.

Between due times it costs nothing: no task or poll per message, only one timer for
the earliest due key. When it fires, the keys due within the next ``window``
seconds (plus the claim's ``lead``) are handed out **together**, up to :data:`BATCH`
at a time, in one call of the ``due`` callback, so the engine claims them in one
store write and reads their queue heads in one query. A handed-out key comes back
with :meth:`Pacer.book`: its next slot (the moment its send started, plus its hold),
or None when it had nothing to send.

A key is in exactly one of three places: idle (nothing to send), on the heap
(waiting for its slot) or handed out. A wake-up for a handed-out key is remembered,
so no submission is ever missed. A key taken off the heap before its time (forgotten:
its lease went) leaves its entry there, dead, skipped when it comes to the top: a key
has at most one live entry, so it is never handed out twice.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
from collections.abc import Callable

from dispatcher.clock import Clock, TimerHandle

BATCH = 128
"""Keys handed out in one batch, at most. When more are due (a first wave, a saturated
service) the loop runs what else is waiting between batches, so one tick never holds
it for long, and the first batch's sends start while the next is being claimed."""


class _Left(enum.Enum):
    NONE = "none"  # nothing more is due yet
    NO_ROOM = "no room"  # more are due, but max_in_flight keys are out
    MORE = "more"  # more are due: hand out another batch


Due = Callable[[list[tuple[str, float]]], None]
"""``due(batch)``: the keys due now, each with its slot (monotonic), in the order their
slots were due (a slot moved a little later since keeps its place).
Called synchronously from the timer; every key in it must come back through
:meth:`Pacer.book` exactly once."""


class Pacer:
    """Decides when each pacing key (a sending number, a voice account) may send next."""

    def __init__(
        self,
        clock: Clock,
        due: Due,
        *,
        lead: float = 0.0,
        window: float = 0.0,
        room: Callable[[], int] | None = None,
        batch: int = BATCH,
    ) -> None:
        self._clock = clock
        self._due = due
        self._lead = lead  # a key is handed out this long before its slot
        self._window = window  # keys due this close together go out in one batch
        self._room = room  # how many more keys may be handed out now (None: no bound)
        self._batch = batch  # keys handed out at once, at most
        self._heap: list[tuple[float, str]] = []
        self._next_slot: dict[str, float] = {}
        self._on_heap: dict[str, float] = {}  # each waiting key: the slot of its live entry
        self._busy: set[str] = set()
        self._woken_while_busy: set[str] = set()
        self._wake = asyncio.Event()
        self._timer: TimerHandle | None = None
        self._timer_at: float | None = None
        self._stopping = False

    # -- what the engine tells the pacer ---------------------------------------------
    def restore(self, key: str, next_slot: float) -> None:
        """Move a key's next slot later (at start-up, from the store; to back off; when
        the channel reports the moment it handed a send over). A key already waiting on
        the heap waits until the later slot."""
        self._next_slot[key] = max(next_slot, self._next_slot.get(key, next_slot))

    def wake(self, key: str) -> None:
        """``key`` may have something to send: schedule it at its next slot."""
        if key in self._busy:
            self._woken_while_busy.add(key)
        elif key not in self._on_heap:
            self._push(key, max(self._next_slot.get(key, 0.0), self._clock.now().mono))

    def book(self, key: str, slot: float | None) -> None:
        """A handed-out key comes back: its next slot (monotonic), or None when it had
        nothing to send (it stays idle until woken, unless it was woken meanwhile)."""
        if key not in self._busy:
            return  # already booked
        self._busy.discard(key)
        if slot is not None:
            self._next_slot[key] = max(slot, self._next_slot.get(key, slot))
            self._woken_while_busy.discard(key)
            self._push(key, self._next_slot[key])
        elif key in self._woken_while_busy:
            self._woken_while_busy.discard(key)
            self._push(key, max(self._next_slot.get(key, 0.0), self._clock.now().mono))

    def forget(self, key: str) -> None:
        """``key`` is no longer this process's to pace (its lease went): it is idle until
        woken again (a wait on the heap ends, a wake-up while it was out is dropped), so
        when it comes back it waits for the slot it is given then, not for an entry left
        from before. Its next slot is kept: the store's is read again if it comes back
        and only moves it later, and this process's own (a hand-off it saw) may not have
        reached the store yet. A key forgotten while handed out comes back as usual."""
        self._on_heap.pop(key, None)
        self._woken_while_busy.discard(key)

    def next_slot(self, key: str) -> float | None:
        return self._next_slot.get(key)

    @property
    def lead(self) -> float:
        """Seconds before its slot a key is handed out (time for its claim)."""
        return self._lead

    @lead.setter
    def lead(self, seconds: float) -> None:
        earlier = seconds > self._lead
        self._lead = seconds
        if earlier:
            self._wake.set()  # the timer armed for the old lead would fire too late

    def poke(self) -> None:
        """Look at the heap again (room to hand out keys came back)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop handing out keys; sends already handed out finish."""
        self._stopping = True
        self._wake.set()

    # -- running ---------------------------------------------------------------------
    async def run(self) -> None:
        """Run the timer loop until :meth:`stop`."""
        while not self._stopping:
            match self._hand_out():
                case _Left.NONE:
                    self._arm()
                case _Left.NO_ROOM:
                    self._disarm()  # :meth:`poke` says when there is room again
                case _Left.MORE:
                    # A full batch went out and more are due: let the loop run what
                    # is waiting (a socket's request, the sends just started) first.
                    await asyncio.sleep(0)
                    continue
            await self._wake.wait()
            self._wake.clear()
        if self._timer is not None:
            self._timer.cancel()

    def _hand_out(self) -> _Left:
        """Hand out the keys due, at most one batch; say what is left due."""
        heap, next_slot, on_heap = self._heap, self._next_slot, self._on_heap
        horizon = self._clock.now().mono + self._lead + self._window
        room = self._room() if self._room is not None else len(heap)
        size = min(room, self._batch)
        batch: list[tuple[str, float]] = []
        while (top := self._top()) is not None and top[0] <= horizon and len(batch) < size:
            slot, key = heapq.heappop(heap)
            if slot < (later := next_slot.get(key, slot)):
                # Its slot moved later (restore): a send's hand-off moves each slot a
                # little after the heap entry its start pushed.
                if later > horizon:
                    heapq.heappush(heap, (later, key))  # pushed back: not due yet
                    on_heap[key] = later
                    continue
                slot = later  # still due in this batch: no second trip through the heap
            del on_heap[key]
            self._busy.add(key)
            batch.append((key, slot))
        if batch:
            self._due(batch)
        if (top := self._top()) is None or top[0] > horizon:
            return _Left.NONE
        return _Left.NO_ROOM if len(batch) == room else _Left.MORE

    def _top(self) -> tuple[float, str] | None:
        """The earliest live entry of the heap, the dead ones above it dropped."""
        heap, on_heap = self._heap, self._on_heap
        while heap:
            slot, key = top = heap[0]
            if on_heap.get(key) == slot:
                return top
            heapq.heappop(heap)  # its key was forgotten (or handed out by an equal entry)
        return None

    def _arm(self) -> None:
        due = top[0] - self._lead if (top := self._top()) is not None else None
        if due == self._timer_at:
            return
        self._disarm()
        self._timer_at = due
        if due is not None:
            self._timer = self._clock.call_at(due, self._wake.set)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None

    def _push(self, key: str, slot: float) -> None:
        heapq.heappush(self._heap, (slot, key))
        self._on_heap[key] = slot
        if self._timer_at is None or slot - self._lead < self._timer_at:
            self._wake.set()
