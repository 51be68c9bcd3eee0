"""Sends of the last minute, counted per second (``dispatcher.engine.recent``)."""

from __future__ import annotations

from dispatcher.engine.recent import WINDOW, RecentSends

A = "+14155550100"
B = "+14155550101"


def test_counts_per_key_and_in_all_within_the_last_minute() -> None:
    recent = RecentSends()
    for t in (100.2, 100.9, 101.5, 130.0):
        recent.add(A, t)
    recent.add(B, 101.0)
    assert recent.of(A, 130.5) == 4
    assert recent.of(B, 130.5) == 1
    assert recent.total(130.5) == 5
    # The sends of second 100 leave the window once 60 whole seconds have passed.
    assert recent.of(A, 159.9) == 4
    assert recent.of(A, 160.0) == 2
    assert recent.total(161.0) == 1
    assert recent.of(A, 130.0 + WINDOW) == 0
    assert recent.of("+14155550199", 130.0) == 0


def test_a_key_idle_for_longer_than_the_ring_starts_from_zero() -> None:
    recent = RecentSends()
    recent.add(A, 10.0)
    recent.add(A, 10.0 + 3 * WINDOW)  # its old second's slot in the ring is reused
    assert recent.of(A, 10.0 + 3 * WINDOW) == 1
    assert recent.total(10.0 + 3 * WINDOW) == 1


def test_memory_is_bounded_by_the_window_not_the_sends() -> None:
    recent = RecentSends()
    for i in range(10 * WINDOW * 5):
        recent.add(A, i / 5)  # five a second for ten minutes
    assert recent.of(A, (10 * WINDOW * 5 - 1) / 5) == WINDOW * 5
