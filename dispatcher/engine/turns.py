"""A bound on the send path's work in one turn of the event loop.

The event loop runs, in each turn, every callback that became ready before it began:
a socket's request that arrives while 10,000 numbers are due waits for everything
queued ahead of it. The send path starts its sends through a :class:`TurnBudget`: at
most ``per_turn`` pass in one turn, and the rest wait, first come first served, for
the following turns. The loop polls its sockets between two turns, so a request
waits behind a few sends' worth of work, not behind a whole tick's batch.
"""

from __future__ import annotations

import asyncio
from collections import deque

SENDS_PER_TURN = 8
"""Sends started in one turn of the event loop, at most (each costs the loop about
0.3 ms with its attempt; eight keep a turn's share of them near 2-3 ms)."""


class TurnBudget:
    """At most ``per_turn`` passes in one turn of the running event loop; the others
    wait their turn, in the order they asked."""

    def __init__(self, per_turn: int = SENDS_PER_TURN) -> None:
        if per_turn < 1:
            raise ValueError(f"per_turn must be at least 1, not {per_turn}")
        self._per_turn = per_turn
        self._used = 0  # passes in the current turn
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._turning = False  # a call at the next turn is scheduled

    @property
    def waiting(self) -> int:
        """Passes waiting for a later turn."""
        return len(self._waiting)

    def pass_now(self) -> bool:
        """Pass in this turn if the budget allows and no one waits ahead."""
        if self._waiting or self._used >= self._per_turn:
            return False
        self._used += 1
        self._next_turn_soon()
        return True

    async def wait(self) -> None:
        """Pass in this turn if the budget allows, else in a later one, in order."""
        if self.pass_now():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._next_turn_soon()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter in self._waiting:
                self._waiting.remove(waiter)
            raise

    def _next_turn_soon(self) -> None:
        if not self._turning:
            self._turning = True
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        """A new turn: its budget goes first to those who waited (they run in the turn
        after this one, as any task woken now does)."""
        self._turning = False
        self._used = 0
        while self._waiting and self._used < self._per_turn:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._used += 1
        if self._used:
            self._next_turn_soon()
