"""The deadline scheduler (``dispatcher.engine.scheduler``), on a fake clock: keys due
together go out in batches, never more than the room allows, and each key comes back
through ``book``; and the engine's claim lead, which follows the claims' duration."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from dispatcher.channels import Accepted, HandOff
from dispatcher.clock import FakeClock, Instant
from dispatcher.config import ProviderConfig
from dispatcher.core.model import TextStatus, Transition
from dispatcher.engine.delivery import MAX_LEAD, Delivery
from dispatcher.engine.intake import TextRequest
from dispatcher.engine.ownership import Head, Solo
from dispatcher.engine.queues import BUFFER
from dispatcher.engine.retries import GiveUp, Retries, Retry
from dispatcher.engine.scheduler import BATCH, Pacer
from dispatcher.errors import ProviderError
from dispatcher.store.leasing import Start
from dispatcher.testing import running_service


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


async def test_a_slot_moved_later_is_handed_out_at_the_later_slot_never_before_it() -> None:
    clock = FakeClock()
    start = clock.now().mono
    seen: list[tuple[str, float]] = []
    pacer = Pacer(clock, seen.extend, lead=0.05, window=0.005)
    pacer.wake("a")
    task = asyncio.create_task(pacer.run())
    await clock.advance(0)
    pacer.book("a", start + 1.0)  # the send started: its heap entry is at 1.0
    pacer.restore("a", start + 1.002)  # the hand-off came 2 ms later: still in the window
    await clock.advance(0.951)  # the timer for the entry at 1.0 (50 ms of lead) fired
    assert seen[1:] == [("a", start + 1.002)]  # handed out once, at the later slot
    pacer.book("a", start + 2.0)
    pacer.restore("a", start + 2.5)  # moved past the window: not due with its old entry
    await clock.advance(1.0)
    assert seen[2:] == []
    await clock.advance(0.5)
    assert seen[2:] == [("a", start + 2.5)]
    pacer.stop()
    await task


class SlowClaims:
    """A kind whose every claim takes ``claim_takes`` seconds of the fake clock: each key
    has ``per_key`` items, sent at once."""

    name = "slow"

    def __init__(self, clock: FakeClock, claim_takes: float, per_key: int) -> None:
        self._clock = clock
        self._claim_takes = claim_takes
        self._left: dict[str, int] = {}
        self._per_key = per_key
        self.started_at: list[float] = []

    def item_id(self, item: str) -> str:
        return item

    def may_send(self, key: str) -> bool:
        return True

    async def claim(self, due: Sequence[tuple[str, datetime]]) -> dict[str, str]:
        await self._clock.sleep(self._claim_takes)
        claimed = {}
        for key, _ in due:
            sent = self._left.setdefault(key, 0)
            if sent < self._per_key:
                self._left[key] = sent + 1
                claimed[key] = f"{key}-{sent}"
        return claimed

    async def ready(self, item: str) -> bool:
        return True

    def hold(self, item: str) -> float:
        return 1.0

    def started(self, key: str, at: Instant) -> None:
        self.started_at.append(at.mono)

    async def send(self, item: str, hand_off: HandOff) -> Accepted:
        hand_off(self._clock.now())
        return Accepted(provider_id=item)

    async def taken(self, item: str, accepted: Accepted, *, started: Instant, hold: float) -> None:
        return None

    async def retry(
        self, item: str, exc: ProviderError, decision: Retry, slot_at: datetime
    ) -> None:
        raise AssertionError("no refusals here")

    async def fail(
        self, item: str, exc: ProviderError, decision: GiveUp, slot_at: datetime
    ) -> None:
        raise AssertionError("no refusals here")

    async def lookup(self, item: str) -> Accepted | None:
        return None

    async def received(self, item: str, found: Accepted) -> None:
        return None

    async def not_received(self, item: str, *, running: bool) -> None:
        return None


async def test_the_lead_follows_slow_claims_so_later_sends_start_at_their_slots() -> None:
    clock = FakeClock()
    kind = SlowClaims(clock, claim_takes=0.12, per_key=4)
    delivery = Delivery(kind, clock, retries=Retries(ProviderConfig()), max_in_flight=10,
                        lead=0.05)  # fmt: skip
    start = clock.now().mono
    delivery.pacer.wake("n1")
    task = asyncio.create_task(delivery.pacer.run())
    for _ in range(60):
        await clock.advance(0.1)
    delivery.pacer.stop()
    await task
    # The first claim outlasted the 50 ms lead: its send started 0.12 s late. The lead
    # then became 1.5 times that claim, and every later send started at its slot.
    assert delivery.pacer.lead == pytest.approx(0.18)
    offsets = [round(at - start, 6) for at in kind.started_at]
    assert offsets == [0.12, 1.12, 2.12, 3.12]
    assert delivery.lateness.count == 4
    assert delivery.lateness.counts[0] == 3  # on time (within the first bucket, 1 ms)


async def test_the_lead_stays_at_least_the_configured_one_and_at_most_its_bound() -> None:
    clock = FakeClock()
    fast = Delivery(SlowClaims(clock, claim_takes=0.0, per_key=2), clock,
                    retries=Retries(ProviderConfig()), max_in_flight=10, lead=0.05)  # fmt: skip
    slow = Delivery(SlowClaims(clock, claim_takes=2.0, per_key=2), clock,
                    retries=Retries(ProviderConfig()), max_in_flight=10, lead=0.05)  # fmt: skip
    tasks = []
    for delivery in (fast, slow):
        delivery.pacer.wake("n1")
        tasks.append(asyncio.create_task(delivery.pacer.run()))
    for _ in range(80):
        await clock.advance(0.1)
    for delivery in (fast, slow):
        delivery.pacer.stop()
    await asyncio.gather(*tasks)
    assert fast.pacer.lead == 0.05
    assert slow.pacer.lead == MAX_LEAD


async def test_a_claim_that_reads_a_queue_again_starts_every_claimed_text_through_the_owner(
    home: Path,
) -> None:
    """A number whose buffer runs out on ended heads is read again in the same claim;
    what ended is written first, but the texts already claimed for other numbers wait
    for the owner's start with the rest. They were written with what ended: on a store
    several workers share, such a text went Sending without a lease's start (no epoch),
    and no fenced change could settle it (left Sending for good)."""
    started: list[str] = []

    class Recording(Solo):
        async def start(
            self, steps: Sequence[Transition], heads: Sequence[Head]
        ) -> dict[str, Start]:
            started.extend(s.message_id for s in steps if s.event.status is TextStatus.SENDING)
            return await super().start(steps, heads)

    async with running_service(home) as h:
        h.service.hold()
        desk = h.service.texts
        owner = Recording()
        owner.attach(desk)
        desk.owner = owner
        other, busy = "+15550000001", "+15550000002"
        submitted = await h.service.submit_many(
            [TextRequest(sender=busy, recipient=f"+1555010000{i}", body=f"text {i}")
             for i in range(BUFFER + 1)]
            + [TextRequest(sender=other, recipient="+15550100010", body="first")]
        )  # fmt: skip
        queue = desk.queues[busy]
        await desk._read_heads([busy])
        past = h.clock.now().wall - timedelta(seconds=1)
        # Its buffer's heads expire (as if their validity ended): the claim ends them
        # all, and its buffer runs out with a text still queued behind them.
        expired = [msgspec.structs.replace(m, expires_at=past) for m in queue.buffer]
        assert len(expired) == BUFFER
        queue.buffer.clear()
        queue.buffer.extend(expired)
        now = h.clock.now().wall
        claimed = await desk.claim([(other, now), (busy, now)])
        assert {key: m.id for key, m in claimed.items()} == {
            other: submitted[-1].message.id, busy: submitted[BUFFER].message.id}  # fmt: skip
        assert sorted(started) == sorted(m.id for m in claimed.values())
