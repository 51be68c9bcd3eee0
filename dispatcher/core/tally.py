"""Counts kept on the send path for the monitoring figures: cheap to add to, read when
a scrape asks for them.

Pure: plain lists and dictionaries, no clock, no I/O. The engine and the store add an
observation where it happens (a list index and an addition, a dictionary update);
the HTTP app turns them into Prometheus samples at scrape time
(:mod:`dispatcher.web.operations`), so nothing on the send path builds a sample,
takes a lock or formats a label.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

SEND_LATENESS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Bucket bounds (seconds) of a send's start after its slot."""
PROVIDER_LATENCY: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
"""Bucket bounds (seconds) of the provider's answer after the hand-off."""
STORE_WRITE: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
)  # fmt: skip
"""Bucket bounds (seconds) of one write to the store (a batch's commit in SQLite)."""


class Histogram:
    """Observations counted into fixed buckets, with their sum.

    ``counts[i]`` holds the observations at most ``bounds[i]`` and above the bound
    before it; the last holds those above every bound. :meth:`buckets` gives them as
    Prometheus does: cumulative, ``+Inf`` last.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("histogram bounds must be increasing and not empty")
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def buckets(self) -> Iterator[tuple[float, int]]:
        """``(upper bound, observations at most that)``, the last bound ``inf``."""
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            yield bound, total


class Tally:
    """How many times each key was seen (a status and its reason, a provider's error
    code)."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str | None], int] = {}

    def add(self, first: str, second: str | None = None) -> None:
        counts, key = self.counts, (first, second)
        counts[key] = counts.get(key, 0) + 1

    def items(self) -> list[tuple[tuple[str, str], int]]:
        """Each key with its count, sorted by key (no second part: ``""``)."""
        merged: dict[tuple[str, str], int] = {}
        for (first, second), count in list(self.counts.items()):
            key = (str(first), str(second or ""))
            merged[key] = merged.get(key, 0) + count
        return sorted(merged.items())
