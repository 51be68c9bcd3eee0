"""Sends started in the last minute, per pacing key and in all, counted per second.

Keeping each send's time (a deque of floats per number) cost about 2 KB per busy
number and made ``status`` add up every number's deque: at 10,000 numbers, 600,000
floats held and summed on every call. Counting per whole second keeps 60 counters
per key and one set for the total, so ``status`` reads 60 numbers whatever the load.
A count is exact to the second: a send is in "the last minute" while fewer than 60
whole seconds have passed since the second it started in.
"""

from __future__ import annotations

from array import array

WINDOW = 60  # seconds


class _Seconds:
    """Counts for the last :data:`WINDOW` seconds, in a ring indexed by second."""

    __slots__ = ("counts", "last")

    def __init__(self) -> None:
        self.counts = array("I", bytes(4 * WINDOW))
        self.last = -WINDOW  # the latest second counted

    def add(self, second: int) -> None:
        if second > self.last:
            for s in range(max(self.last + 1, second - WINDOW + 1), second + 1):
                self.counts[s % WINDOW] = 0
            self.last = second
        if second > self.last - WINDOW:  # not older than the ring
            self.counts[second % WINDOW] += 1

    def since(self, now: int) -> int:
        """Sends in the seconds ``now - WINDOW + 1`` to ``now``."""
        first = max(self.last - WINDOW + 1, now - WINDOW + 1)
        return sum(self.counts[s % WINDOW] for s in range(first, self.last + 1))


class RecentSends:
    """How many sends started in the last minute, per key and in all."""

    def __init__(self) -> None:
        self._keys: dict[str, _Seconds] = {}
        self._all = _Seconds()

    def add(self, key: str, mono: float) -> None:
        second = int(mono)
        if (seconds := self._keys.get(key)) is None:
            seconds = self._keys[key] = _Seconds()
        seconds.add(second)
        self._all.add(second)

    def of(self, key: str, mono: float) -> int:
        seconds = self._keys.get(key)
        return seconds.since(int(mono)) if seconds is not None else 0

    def total(self, mono: float) -> int:
        return self._all.since(int(mono))
