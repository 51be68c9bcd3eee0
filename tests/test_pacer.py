"""The deadline scheduler alone (``dispatcher.engine.scheduler``), on a fake clock: keys
due together go out in batches, never more than the room allows, and each key comes
back through ``book``."""

from __future__ import annotations

import asyncio

from dispatcher.clock import FakeClock
from dispatcher.engine.scheduler import BATCH, Pacer


async def test_keys_due_together_go_out_in_batches_in_slot_order() -> None:
    clock = FakeClock()
    batches: list[list[tuple[str, float]]] = []
    pacer = Pacer(clock, batches.append)
    keys = [f"k{i:03d}" for i in range(2 * BATCH + 44)]
    for key in keys:
        pacer.wake(key)
    task = asyncio.create_task(pacer.run())
    await clock.advance(0)
    assert [len(b) for b in batches] == [BATCH, BATCH, 44]
    assert sorted(key for b in batches for key, _ in b) == keys
    pacer.stop()
    await task


async def test_no_more_keys_out_than_the_room_and_more_once_it_is_given_back() -> None:
    clock = FakeClock()
    out: list[str] = []
    room = 3

    def due(batch: list[tuple[str, float]]) -> None:
        out.extend(key for key, _ in batch)

    pacer = Pacer(clock, due, room=lambda: room - len(out))
    for i in range(5):
        pacer.wake(f"k{i}")
    task = asyncio.create_task(pacer.run())
    await clock.advance(0)
    assert out == ["k0", "k1", "k2"]
    await clock.advance(10)
    assert len(out) == 3  # nothing more while the room is used, however long

    first = out.pop(0)
    pacer.book(first, None)  # done with, nothing more to send
    pacer.poke()
    await clock.advance(0)
    assert out == ["k1", "k2", "k3"]
    pacer.stop()
    await task


async def test_a_booked_key_comes_back_at_its_slot_and_an_idle_one_when_woken() -> None:
    clock = FakeClock()
    start = clock.now().mono
    seen: list[tuple[str, float]] = []
    pacer = Pacer(clock, seen.extend, lead=0.05)
    pacer.wake("a")
    pacer.wake("b")
    task = asyncio.create_task(pacer.run())
    await clock.advance(0)
    assert [key for key, _ in seen] == ["a", "b"]

    pacer.book("a", start + 1.0)
    pacer.book("b", None)
    pacer.wake("b")  # woken after it was booked idle: due at once
    await clock.advance(0)
    assert [key for key, _ in seen[2:]] == ["b"]

    await clock.advance(0.94)
    assert [key for key, _ in seen[3:]] == []  # a's slot is 1.0, handed out 50 ms ahead
    await clock.advance(0.02)
    assert seen[3] == ("a", start + 1.0)
    pacer.stop()
    await task
