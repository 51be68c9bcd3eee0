"""The send path's bound on work per turn of the event loop (``engine/turns.py``):
at most so many passes in one turn, the rest in the following turns in the order they
asked; the engine starting a tick's sends through it, none lost or out of order; and a
batch of receipts merged over several turns, written once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar, cast

import pytest

from dispatcher.channels import Channel, Receipt
from dispatcher.clock import FakeClock, Instant
from dispatcher.config import ProviderConfig
from dispatcher.core.model import Lane, Message, TextStatus, Transition
from dispatcher.engine.delivery import Delivery
from dispatcher.engine.receipts import Receipts
from dispatcher.engine.retries import Retries
from dispatcher.engine.turns import SENDS_PER_TURN, TurnBudget
from dispatcher.store import Store
from tests.test_pacer import SlowClaims

T = TypeVar("T")
NOW = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


class CountingLoop(asyncio.SelectorEventLoop):
    """An event loop that counts its turns (each poll of its sockets, then the
    callbacks ready)."""

    turn = 0

    def _run_once(self) -> None:
        self.turn += 1
        super()._run_once()  # type: ignore[misc]


def run_counted(main: Callable[[CountingLoop], Awaitable[T]]) -> T:
    loop = CountingLoop()
    try:
        return loop.run_until_complete(main(loop))
    finally:
        loop.close()


def test_at_most_per_turn_pass_in_one_turn_the_rest_later_in_order() -> None:
    async def main(loop: CountingLoop) -> list[tuple[int, int]]:
        budget = TurnBudget(per_turn=3)
        passed: list[tuple[int, int]] = []  # (who, the turn it passed in)

        async def one(who: int) -> None:
            await budget.wait()
            passed.append((who, loop.turn))

        await asyncio.gather(*(one(i) for i in range(20)))
        assert budget.waiting == 0
        return passed

    passed = run_counted(main)
    assert [who for who, _ in passed] == list(range(20))  # first come, first served
    per_turn = Counter(turn for _, turn in passed)
    assert max(per_turn.values()) == 3
    assert len(per_turn) == 7  # 20 passes, 3 a turn


def test_a_pass_that_is_given_up_does_not_hold_the_others() -> None:
    async def main(loop: CountingLoop) -> list[int]:
        budget = TurnBudget(per_turn=1)
        passed: list[int] = []

        async def one(who: int) -> None:
            await budget.wait()
            passed.append(who)

        tasks = [asyncio.create_task(one(i)) for i in range(5)]
        await asyncio.sleep(0)  # each has asked (the first passed at once)
        tasks[2].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert budget.waiting == 0
        return passed

    assert run_counted(main) == [0, 1, 3, 4]


def test_a_budget_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="per_turn must be at least 1, not 0"):
        TurnBudget(per_turn=0)


class Counted(SlowClaims):
    """Each send's start recorded with the loop's turn."""

    def __init__(self, clock: FakeClock, loop: CountingLoop) -> None:
        super().__init__(clock, claim_takes=0.0, per_key=2)
        self.loop = loop
        self.turns: list[tuple[str, int]] = []

    def started(self, key: str, at: Instant) -> None:
        super().started(key, at)
        self.turns.append((key, self.loop.turn))


def test_a_tick_of_many_keys_starts_its_sends_over_several_turns_none_lost() -> None:
    keys = [f"n{i:03d}" for i in range(5 * SENDS_PER_TURN + 3)]

    async def main(loop: CountingLoop) -> tuple[Counted, list[float]]:
        clock = FakeClock()
        kind = Counted(clock, loop)
        delivery = Delivery(kind, clock, retries=Retries(ProviderConfig()),
                            max_in_flight=1000, lead=0.05)  # fmt: skip
        for key in keys:
            delivery.pacer.wake(key)
        task = asyncio.create_task(delivery.pacer.run())
        for _ in range(300):  # bounded: each step lets the loop run a few turns
            if len(kind.turns) == 2 * len(keys):
                break
            await clock.advance(0.01)
        delivery.pacer.stop()
        await task
        return kind, list(kind.started_at)

    kind, started_at = run_counted(main)
    assert len(kind.turns) == 2 * len(keys)  # every key sent both its items
    per_turn = Counter(turn for _, turn in kind.turns)
    assert max(per_turn.values()) <= SENDS_PER_TURN
    assert len(per_turn) >= 2 * len(keys) // SENDS_PER_TURN
    first = [key for key, _ in kind.turns[: len(keys)]]
    assert first == keys  # the tick's keys in slot order (then name), each once
    # Each key's second send is a full slot (1 s) after its first.
    by_key: dict[str, list[float]] = {}
    for (key, _), at in zip(kind.turns, started_at, strict=True):
        by_key.setdefault(key, []).append(at)
    assert all(b - a >= 1.0 for a, b in by_key.values())


class Desk:
    """Where the receipts' transitions go: each outcome with the loop's turn."""

    def __init__(self, loop: CountingLoop) -> None:
        self.loop = loop
        self.turns: list[int] = []
        self.writes: list[int] = []  # transitions per write

    async def record(
        self, steps: Sequence[Transition], next_slots: Mapping[str, datetime] | None = None
    ) -> None:
        self.writes.append(len(steps))

    def outcome(self, message: Message) -> None:
        self.turns.append(self.loop.turn)


class NoChannel:
    def settled(self, provider_id: str) -> None:
        return None


def test_a_batch_of_receipts_is_merged_over_several_turns_and_written_once() -> None:
    count = 200

    async def main(loop: CountingLoop) -> Desk:
        desk = Desk(loop)
        receipts = Receipts(desk, channel=cast(Channel, NoChannel()), store=cast(Store, None),
                            store_fault=lambda exc: None, faulted=lambda: False)  # fmt: skip
        for i in range(count):
            sent = Message(
                id=f"m{i}", sender="+15550000001", recipient=f"+1555010{i:04d}", body="hi",
                segments=1, lane=Lane.BULK, status=TextStatus.SENT, accepted_at=NOW,
                expires_at=NOW + timedelta(hours=1), updated_at=NOW, provider_id=f"p{i}",
            )  # fmt: skip
            receipts.awaiting(sent)
            receipts.report(Receipt(provider_id=f"p{i}", status=TextStatus.DELIVERED, at=NOW))
        receipts.stop()
        await receipts.run()
        return desk

    desk = run_counted(main)
    assert desk.writes == [count]  # one write for the whole batch
    per_turn = Counter(desk.turns)
    assert sum(per_turn.values()) == count
    assert max(per_turn.values()) <= 64
