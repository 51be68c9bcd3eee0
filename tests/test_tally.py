"""The send path's monitoring counts: histogram buckets as Prometheus reads them, and
tallies by key."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.core.tally import SEND_LATENESS, Histogram, Tally


def test_a_histogram_counts_each_value_at_most_its_bucket_bound() -> None:
    h = Histogram((0.1, 1.0))
    for value in (0.0, 0.1, 0.5, 1.0, 3.0):
        h.observe(value)
    assert list(h.buckets()) == [(0.1, 2), (1.0, 4), (math.inf, 5)]
    assert h.count == 5
    assert h.sum == pytest.approx(4.6)


@given(st.lists(st.floats(min_value=0, max_value=100), max_size=50))
def test_cumulative_buckets_end_with_every_observation(values: list[float]) -> None:
    h = Histogram(SEND_LATENESS)
    for value in values:
        h.observe(value)
    buckets = list(h.buckets())
    assert [count for _, count in buckets] == sorted(count for _, count in buckets)
    assert buckets[-1] == (math.inf, len(values))
    for bound, count in buckets:
        assert count == sum(1 for v in values if v <= bound)


@pytest.mark.parametrize("bounds", [(), (1.0, 0.5), (1.0, 1.0)])
def test_bounds_must_increase(bounds: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="increasing"):
        Histogram(bounds)


def test_a_tally_counts_keys_and_reads_them_sorted() -> None:
    t = Tally()
    for status, reason in (("Failed", "dnt"), ("Sent", None), ("Failed", "dnt")):
        t.add(status, reason)
    assert t.items() == [(("Failed", "dnt"), 2), (("Sent", ""), 1)]
