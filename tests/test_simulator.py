"""The simulator's receipts: kept in one heap and delivered by one timer per tick."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from dispatcher.channels import Receipt, SendRequest
from dispatcher.channels.simulator import Simulator
from dispatcher.clock import FakeClock, TimerHandle
from dispatcher.config import SimulatorConfig
from dispatcher.core.model import TextStatus


class CountingClock(FakeClock):
    """A fake clock that counts the timers armed on it."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = 0

    def call_at(self, mono: float, callback: Callable[[], None]) -> TimerHandle:
        self.armed += 1
        return super().call_at(mono, callback)


def carrier(clock: FakeClock, **options: object) -> tuple[Simulator, list[tuple[float, Receipt]]]:
    """A simulator with no latency (so only receipts arm timers), and what it reports:
    the monotonic time each receipt was delivered, and the receipt."""
    config = SimulatorConfig(latency=timedelta(0), latency_jitter=timedelta(0), **options)  # type: ignore[arg-type]
    simulator = Simulator(config=config, clock=clock)
    got: list[tuple[float, Receipt]] = []
    simulator.on_receipt(lambda receipt: got.append((clock.now().mono, receipt)))
    return simulator, got


def request(i: int) -> SendRequest:
    return SendRequest(
        message_id=f"msg_{i}",
        attempt_id=f"att_{i}",
        sender="+15550100001",
        recipient=f"+1555020{i:04d}",
        body="hi",
        segments=1,
        validity=timedelta(hours=1),
    )


async def test_many_receipts_due_at_once_take_one_timer() -> None:
    clock = CountingClock()
    simulator, got = carrier(clock, receipt_jitter=timedelta(0), reorder_rate=0.0)
    accepted = [await simulator.send(request(i)) for i in range(500)]
    assert clock.armed == 1  # not one per text
    await clock.advance(0.299)
    assert got == []
    await clock.advance(0.001)
    assert len(got) == 500
    assert clock.armed == 1
    assert [r.provider_id for _, r in got] == [a.provider_id for a in accepted]


async def test_receipts_due_in_one_tick_arrive_in_due_order_with_their_times() -> None:
    clock = CountingClock()
    simulator, got = carrier(clock, reorder_rate=0.5)
    start = clock.now()
    for i in range(300):
        await simulator.send(request(i))
    scheduling = clock.armed
    clock.stall(2.0)  # a busy process: every receipt is due by the next tick
    await clock.advance(0)
    assert clock.armed == scheduling  # one timer fired for all of them, none re-armed
    ats = [receipt.at for _, receipt in got]
    assert ats == sorted(ats)  # due order
    assert all(start.wall + timedelta(seconds=0.3) <= at < start.wall + timedelta(seconds=1.15)
               for at in ats)  # fmt: skip
    # Late and repeated receipts are still there: a "sent" after the final one, twice.
    late = [r.status for _, r in got].count(TextStatus.SENT)
    assert late > 0
    assert len(got) == 300 + 2 * late


async def test_a_tick_delivers_late_by_at_most_the_tick_and_keeps_the_due_time() -> None:
    clock = CountingClock()
    simulator, got = carrier(clock, reorder_rate=0.0, receipt_tick=timedelta(milliseconds=10))
    start = clock.now()
    for i in range(1000):
        await simulator.send(request(i))
    await clock.advance(1.1)
    assert len(got) == 1000
    assert clock.armed <= 1.1 / 0.01 + 20  # about one timer per tick, not per receipt
    for delivered, receipt in got:
        due = start.mono + (receipt.at - start.wall).total_seconds()
        assert due - 1e-6 <= delivered <= due + 0.01 + 1e-6
    ats = [receipt.at for _, receipt in got]
    assert ats == sorted(ats)


async def test_the_same_seed_gives_the_same_receipts() -> None:
    runs = []
    for _ in range(2):
        clock = FakeClock()
        simulator, got = carrier(clock)
        for i in range(50):
            await simulator.send(request(i))
        await clock.advance(2)
        runs.append([(delivered, r) for delivered, r in got])
    assert runs[0] == runs[1]
    assert len(runs[0]) > 50  # some receipts late and twice, as configured


async def test_lookups_and_polls_answer_from_the_log_including_sends_logged_since(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    log = tmp_path / "simulator-sends.jsonl"
    config = SimulatorConfig(latency=timedelta(0), latency_jitter=timedelta(0))
    async with Simulator(config=config, clock=clock, log_path=log) as simulator:
        first = await simulator.send(request(1))
        found = await simulator.lookup(request(1))
        assert found is not None
        assert found.provider_id == first.provider_id
        assert await simulator.lookup(request(2)) is None

        with log.open("ab") as fh:
            fh.write(b'{"attempt_id": "att_torn", "provi\n')  # a line cut short
        second = await simulator.send(request(2))
        found = await simulator.lookup(request(2))
        assert found is not None
        assert found.provider_id == second.provider_id
        receipt = await simulator.poll(second.provider_id)
        assert receipt is not None
        assert receipt.status is TextStatus.DELIVERED
        assert await simulator.poll("SM-unknown") is None
        torn = dataclasses.replace(request(3), attempt_id="att_torn")
        assert await simulator.lookup(torn) is None
