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


class _Rings:
    """Counts for the last :data:`WINDOW` seconds of many keys, each in a ring indexed
    by second: one array of counts (``WINDOW`` a key, one key after the other) and one
    of each key's latest second counted. One object and two buffers for every key, not
    a ring object and an array each (about 410 bytes a key, 4 MiB at 10,000 numbers:
    now 128 bytes a key with counts of two bytes). A count stops at the largest its
    type holds (65,535 sends of one number in one second for the numbers' counts)."""

    __slots__ = ("counts", "last", "top")

    def __init__(self, typecode: str) -> None:
        self.counts = array(typecode)
        self.last = array("q")  # each key's latest second counted
        self.top = (1 << (8 * self.counts.itemsize)) - 1

    def new(self) -> int:
        """A ring for one more key, all zero: its row."""
        self.counts.frombytes(bytes(self.counts.itemsize * WINDOW))
        self.last.append(-WINDOW)
        return len(self.last) - 1

    def add(self, row: int, second: int) -> None:
        counts, base, last = self.counts, row * WINDOW, self.last[row]
        if second > last:
            for s in range(max(last + 1, second - WINDOW + 1), second + 1):
                counts[base + s % WINDOW] = 0
            self.last[row] = last = second
        if second > last - WINDOW:  # not older than the ring
            i = base + second % WINDOW
            if counts[i] < self.top:
                counts[i] += 1

    def since(self, row: int, now: int) -> int:
        """The key's sends in the seconds ``now - WINDOW + 1`` to ``now``."""
        counts, base, last = self.counts, row * WINDOW, self.last[row]
        first = max(last - WINDOW + 1, now - WINDOW + 1)
        return sum(counts[base + s % WINDOW] for s in range(first, last + 1))


class RecentSends:
    """How many sends started in the last minute, per key and in all."""

    def __init__(self) -> None:
        self._rows: dict[str, int] = {}  # each key's row in ``_keys``
        self._keys = _Rings("H")
        self._all = _Rings("I")
        self._all.new()

    def add(self, key: str, mono: float) -> None:
        second = int(mono)
        if (row := self._rows.get(key)) is None:
            row = self._rows[key] = self._keys.new()
        self._keys.add(row, second)
        self._all.add(0, second)

    def of(self, key: str, mono: float) -> int:
        row = self._rows.get(key)
        return self._keys.since(row, int(mono)) if row is not None else 0

    def total(self, mono: float) -> int:
        return self._all.since(0, int(mono))
