"""The pacing rules, end to end through the service, on a clock that only moves when told.

Each test builds a ``Dispatcher`` over the in-memory store and the simulator, both on a
``FakeClock``, and reads the simulator's send log as the ground truth of what left and
when. No real sleeps, no wall time.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher import testing
from dispatcher.config import Config, PacingConfig, SimulatorConfig
from dispatcher.core.model import DntEntry, Lane, Message, Reason, Source, TextStatus, slot_seconds
from dispatcher.errors import Conflict
from dispatcher.service import TextRequest
from dispatcher.testing import SendRecord, advance_until, running_service

A = "+14155550100"
B = "+14155550101"
C = "+14155550102"
D = "+14155550103"
SENDERS = [A, B, C, D]
SECOND = timedelta(seconds=1)
GUARD = PacingConfig().guard

BODY_BY_SEGMENTS = {1: "hello there", 2: "x" * 200, 3: "y" * 400}


def recipient(number: int, index: int) -> str:
    """A distinct contact per (number, index), so the same-second rule never interferes."""
    return f"+1650555{number}{index:03d}"


Send = SendRecord


class Harness(testing.Harness):
    """The running service, with this module's names for its helpers."""

    submit = testing.Harness.text
    get = testing.Harness.message

    @property
    def start(self) -> datetime:
        return self.started.wall

    def sends(self) -> list[Send]:
        return self.sent_texts()

    def sends_of(self, sender: str) -> list[Send]:
        return [s for s in self.sends() if s.sender == sender]

    def sent_ids(self) -> list[str]:
        return [s.message_id for s in self.sends()]

    def at(self, seconds: float) -> datetime:
        return self.start + timedelta(seconds=seconds)

    async def statuses(self, messages: list[Message]) -> list[TextStatus]:
        return [(await self.get(m.id)).status for m in messages]


def quiet_simulator(
    *,
    receipt_delay: timedelta = timedelta(milliseconds=500),
    reorder_rate: float = 0.0,
    undelivered: list[str] | None = None,
    not_in_service: list[str] | None = None,
) -> SimulatorConfig:
    """No latency and no jitter: what the simulator does is fixed by the test."""
    return SimulatorConfig(
        latency=timedelta(0),
        latency_jitter=timedelta(0),
        receipt_delay=receipt_delay,
        receipt_jitter=timedelta(0),
        reorder_rate=reorder_rate,
        undelivered=undelivered or [],
        not_in_service=not_in_service or [],
    )


@asynccontextmanager
async def running(
    log_dir: Path,
    *,
    pacing: PacingConfig | None = None,
    simulator: SimulatorConfig | None = None,
) -> AsyncIterator[Harness]:
    config = Config(pacing=pacing or PacingConfig())
    async with running_service(
        log_dir, config=config, simulator=simulator or quiet_simulator()
    ) as harness:
        yield Harness.of(harness)


def all_terminal(h: Harness, messages: list[Message]) -> Callable[[], Awaitable[bool]]:
    async def done() -> bool:
        for message in messages:
            if not (await h.get(message.id)).terminal:
                return False
        return True

    return done


def gaps(sends: list[Send]) -> list[float]:
    return [(b.at - a.at).total_seconds() for a, b in pairwise(sends)]


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running(tmp_path) as harness:
        yield harness


# -- spacing -----------------------------------------------------------------------------


async def test_each_number_sends_at_most_once_a_second_first_one_at_once(h: Harness) -> None:
    submitted: dict[str, list[Message]] = {
        sender: [await h.submit(sender, recipient(n, i)) for i in range(4)]
        for n, sender in enumerate(SENDERS[:3])
    }
    await h.clock.advance(0)

    # The first text of every number leaves at once.
    assert sorted(s.sender for s in h.sends()) == sorted(SENDERS[:3])
    assert all(s.at == h.start for s in h.sends())

    everything = [m for ms in submitted.values() for m in ms]
    await advance_until(h.clock, all_terminal(h, everything))
    sends = h.sends()
    assert sorted(s.message_id for s in sends) == sorted(m.id for m in everything)
    for sender, messages in submitted.items():
        mine = h.sends_of(sender)
        assert [s.message_id for s in mine] == [m.id for m in messages]  # FIFO
        assert mine[0].at == h.start
        assert all(gap >= 1.0 for gap in gaps(mine)), gaps(mine)
        # Paced, not throttled to a crawl: one slot plus the guard, no more.
        assert all(gap <= 1.0 + 2 * GUARD.total_seconds() for gap in gaps(mine)), gaps(mine)
        started = [(await h.get(m.id)).send_started_at for m in messages]
        assert started == [s.at for s in mine]
        assert all(b - a >= SECOND for a, b in pairwise(started) if a is not None and b is not None)
        assert await h.statuses(messages) == [TextStatus.DELIVERED] * len(messages)


async def test_automation_lane_goes_before_bulk_submitted_earlier(h: Harness) -> None:
    bulk = [await h.submit(A, recipient(0, i), lane=Lane.BULK) for i in range(3)]
    await h.clock.advance(0)
    assert h.sent_ids() == [bulk[0].id]  # the number was idle: the first bulk text left

    auto = [await h.submit(A, recipient(1, i), lane=Lane.AUTOMATION) for i in range(2)]
    await advance_until(h.clock, all_terminal(h, bulk + auto))

    assert h.sent_ids() == [bulk[0].id, auto[0].id, auto[1].id, bulk[1].id, bulk[2].id]
    assert all(gap >= 1.0 for gap in gaps(h.sends()))


async def test_lanes_submitted_together_automation_first_fifo_within(h: Harness) -> None:
    lanes = [Lane.BULK, Lane.AUTOMATION, Lane.BULK, Lane.AUTOMATION, Lane.BULK]
    # Together: one batch, queued before the number's first claim.
    requests = [
        TextRequest(sender=A, recipient=recipient(0, i), body="hello there", lane=lane)
        for i, lane in enumerate(lanes)
    ]
    messages = [s.message for s in await h.service.submit_many(requests)]
    await advance_until(h.clock, all_terminal(h, messages))

    expected = [m.id for m in messages if m.lane is Lane.AUTOMATION] + [
        m.id for m in messages if m.lane is Lane.BULK
    ]
    assert h.sent_ids() == expected


async def test_a_three_segment_text_holds_its_number_three_seconds(h: Harness) -> None:
    long_text = "z" * 400
    long = await h.submit(A, recipient(0, 0), long_text)
    after = await h.submit(A, recipient(0, 1))
    other = [await h.submit(B, recipient(1, i)) for i in range(2)]
    assert long.segments == 3
    await advance_until(h.clock, all_terminal(h, [long, after, *other]))

    a_sends = h.sends_of(A)
    assert [s.message_id for s in a_sends] == [long.id, after.id]
    assert a_sends[0].segments == 3
    (gap,) = gaps(a_sends)
    assert 3.0 <= gap <= 3.0 + 2 * GUARD.total_seconds()
    # The other number is not held by it.
    (b_gap,) = gaps(h.sends_of(B))
    assert 1.0 <= b_gap < 1.1


async def test_a_per_number_rate_sets_the_spacing(tmp_path: Path) -> None:
    pacing = PacingConfig(rates={A: 2.0})
    async with running(tmp_path, pacing=pacing) as h:
        fast = [await h.submit(A, recipient(0, i)) for i in range(4)]
        slow = [await h.submit(B, recipient(1, i)) for i in range(2)]
        await advance_until(h.clock, all_terminal(h, fast + slow), step=0.1)

        fast_gaps = gaps(h.sends_of(A))
        assert len(fast_gaps) == 3
        assert all(0.5 <= g < 0.51 for g in fast_gaps), fast_gaps
        assert h.sends_of(A)[-1].at - h.start < 1.6 * SECOND
        (slow_gap,) = gaps(h.sends_of(B))
        assert 1.0 <= slow_gap < 1.01


# -- submission rules ------------------------------------------------------------------------


async def test_same_second_duplicate_is_unsent_and_a_text_a_second_later_is_accepted(
    h: Harness,
) -> None:
    to = "+16505550123"
    first = await h.submit(A, to, "first")
    await h.clock.advance(0.5)
    duplicate = await h.submit(B, to, "second")  # another number: the rule is per contact
    await h.clock.advance(0.5)
    later = await h.submit(A, to, "third")
    await advance_until(h.clock, all_terminal(h, [first, later]))

    assert duplicate.status is TextStatus.UNSENT
    assert duplicate.reason == Reason.RATE_LIMITED
    assert duplicate.duplicate_of == first.id
    stored = await h.get(duplicate.id)
    assert stored.status is TextStatus.UNSENT
    assert stored.reason == Reason.RATE_LIMITED
    assert later.status is TextStatus.QUEUED
    assert later.duplicate_of is None
    assert h.sent_ids() == [first.id, later.id]
    assert (await h.get(later.id)).status is TextStatus.DELIVERED


async def test_a_contact_on_the_do_not_text_list_is_never_sent_to(h: Harness) -> None:
    listed = "+16505550999"
    await h.service.dnt_add(listed, added_by="ops", reason="STOP")
    blocked = await h.submit(A, listed)
    fine = await h.submit(A, recipient(0, 0))
    await advance_until(h.clock, all_terminal(h, [fine]))
    await h.clock.advance(2)

    assert blocked.status is TextStatus.FAILED
    assert blocked.reason == Reason.DO_NOT_TEXT
    stored = await h.get(blocked.id)
    assert stored.status is TextStatus.FAILED
    assert stored.reason == Reason.DO_NOT_TEXT
    assert h.sent_ids() == [fine.id]
    assert listed not in {s.recipient for s in h.sends()}
    # It took no slot: the allowed text left at once.
    assert h.sends()[0].at == h.start


async def test_a_contact_listed_while_queued_fails_before_sending(h: Harness) -> None:
    messages = [await h.submit(A, recipient(0, i)) for i in range(3)]
    await h.clock.advance(0)
    assert h.sent_ids() == [messages[0].id]

    await h.service.dnt_add(recipient(0, 2), added_by="ops", reason="replied STOP")
    await advance_until(h.clock, all_terminal(h, messages))

    listed = await h.get(messages[2].id)
    assert listed.status is TextStatus.FAILED
    assert listed.reason == Reason.DO_NOT_TEXT
    assert listed.send_started_at is None
    history = await h.service.store.history(listed.id)
    assert history[-1].source is Source.SCHEDULER
    assert h.sent_ids() == [messages[0].id, messages[1].id]
    assert recipient(0, 2) not in {s.recipient for s in h.sends()}


# -- expiry ------------------------------------------------------------------------------


async def test_texts_whose_validity_ends_in_the_backlog_expire_unsent(h: Harness) -> None:
    validity = timedelta(seconds=2)
    messages = [await h.submit(A, recipient(0, i), validity=validity) for i in range(4)]
    await h.clock.advance(5)

    assert await h.statuses(messages) == [
        TextStatus.DELIVERED,
        TextStatus.DELIVERED,
        TextStatus.UNSENT,
        TextStatus.UNSENT,
    ]
    assert h.sent_ids() == [messages[0].id, messages[1].id]
    for message in messages[2:]:
        stored = await h.get(message.id)
        assert stored.reason == Reason.EXPIRED
        assert stored.send_started_at is None
        # Marked when its validity ended, by the sweep, not later when a slot came.
        assert stored.updated_at == message.expires_at == h.at(2)


async def test_the_expiry_sweep_marks_a_text_that_never_reaches_the_head(h: Harness) -> None:
    await h.service.pause(A)
    message = await h.submit(A, recipient(0, 0), validity=timedelta(seconds=2))
    await h.clock.advance(1.9)
    assert (await h.get(message.id)).status is TextStatus.QUEUED

    await h.clock.advance(0.1)
    stored = await h.get(message.id)
    assert stored.status is TextStatus.UNSENT
    assert stored.reason == Reason.EXPIRED
    assert stored.updated_at == h.at(2)
    history = await h.service.store.history(message.id)
    assert history[-1].source is Source.SCHEDULER

    await h.service.resume(A)
    await h.clock.advance(3)
    assert h.sends() == []


# -- operator verbs ----------------------------------------------------------------------


async def test_cancel_a_queued_text_and_refuse_to_cancel_a_sent_one(h: Harness) -> None:
    first = await h.submit(A, recipient(0, 0))
    second = await h.submit(A, recipient(0, 1))
    third = await h.submit(A, recipient(0, 2))
    await h.clock.advance(0)

    canceled = await h.service.cancel(second.id)
    assert canceled.status is TextStatus.UNSENT
    assert canceled.reason == Reason.CANCELED
    again = await h.service.cancel(second.id)
    assert again.status is TextStatus.UNSENT
    with pytest.raises(Conflict):
        await h.service.cancel(first.id)

    await advance_until(h.clock, all_terminal(h, [first, third]))
    assert h.sent_ids() == [first.id, third.id]
    stored = await h.get(second.id)
    assert stored.status is TextStatus.UNSENT
    assert stored.reason == Reason.CANCELED
    assert stored.send_started_at is None
    # The cancelled text gave its slot to the next one.
    assert gaps(h.sends()) == [pytest.approx(1.0 + GUARD.total_seconds(), abs=1e-5)]


async def test_pause_stops_a_number_and_resume_continues_it(h: Harness) -> None:
    on_a = [await h.submit(A, recipient(0, i)) for i in range(3)]
    on_b = [await h.submit(B, recipient(1, i)) for i in range(3)]
    await h.clock.advance(0)

    view = await h.service.pause(A)
    assert view.paused is True
    paused_at = h.clock.now().wall
    await h.clock.advance(5)

    assert [s.message_id for s in h.sends_of(A)] == [on_a[0].id]
    assert [s.message_id for s in h.sends_of(B)] == [m.id for m in on_b]
    assert await h.statuses(on_a[1:]) == [TextStatus.QUEUED, TextStatus.QUEUED]
    status = {n.number: n for n in (await h.service.status()).numbers}
    assert status[A].paused is True
    assert status[A].depth == 2

    view = await h.service.resume(A)
    assert view.paused is False
    resumed_at = h.clock.now().wall
    await advance_until(h.clock, all_terminal(h, on_a))

    a_sends = h.sends_of(A)
    assert [s.message_id for s in a_sends] == [m.id for m in on_a]
    assert not [s for s in a_sends if paused_at < s.at < resumed_at]
    assert a_sends[1].at == resumed_at  # its slot had long passed: it goes at once
    assert all(g >= 1.0 for g in gaps(a_sends))


async def test_an_idempotency_key_returns_the_same_text_and_never_sends_twice(
    h: Harness,
) -> None:
    request = TextRequest(
        sender=A, recipient=recipient(0, 0), body="order 42", idempotency_key="o42"
    )
    first = await h.service.submit(request)
    retry = await h.service.submit(request)
    assert first.created is True
    assert retry.created is False
    assert retry.message.id == first.message.id

    await advance_until(h.clock, all_terminal(h, [first.message]))
    late_retry = await h.service.submit(request)
    assert late_retry.created is False
    assert late_retry.message.id == first.message.id
    assert late_retry.message.status is TextStatus.DELIVERED

    different = TextRequest(
        sender=A, recipient=recipient(0, 0), body="order 43", idempotency_key="o42"
    )
    with pytest.raises(Conflict):
        await h.service.submit(different)
    await h.clock.advance(3)

    assert h.sent_ids() == [first.message.id]
    assert len(await h.service.find(recipient(0, 0))) == 1


# -- receipts and carrier outcomes ----------------------------------------------------------


async def test_reordered_receipts_end_in_the_right_status(tmp_path: Path) -> None:
    sim = quiet_simulator(reorder_rate=1.0)
    async with running(tmp_path, simulator=sim) as h:
        messages = [await h.submit(A, recipient(0, i)) for i in range(2)]
        await advance_until(h.clock, all_terminal(h, messages))
        await h.clock.advance(2)  # the late and repeated receipts arrive

        for message in messages:
            stored = await h.get(message.id)
            assert stored.status is TextStatus.DELIVERED
            receipts = [
                e for e in await h.service.store.history(message.id) if e.source is Source.RECEIPT
            ]
            assert [(e.status, e.applied) for e in receipts] == [
                (TextStatus.DELIVERED, True),
                (TextStatus.SENT, False),
                (TextStatus.DELIVERED, False),
            ]
            assert stored.updated_at == receipts[0].at
        assert len(h.sends()) == 2


async def test_carrier_rules_end_in_undelivered_and_not_in_service(tmp_path: Path) -> None:
    sim = quiet_simulator(undelivered=["+1555999*"], not_in_service=["+15558880001"])
    async with running(tmp_path, simulator=sim) as h:
        undelivered = await h.submit(A, "+15559990001")
        gone = await h.submit(B, "+15558880001")
        fine = await h.submit(C, "+15557770001")
        await advance_until(h.clock, all_terminal(h, [undelivered, gone, fine]))

        stored = await h.get(undelivered.id)
        assert stored.status is TextStatus.UNDELIVERED
        assert stored.provider_code == "30005"
        assert stored.reason == Reason.CARRIER_UNDELIVERED
        assert stored.provider_id is not None

        failed = await h.get(gone.id)
        assert failed.status is TextStatus.FAILED
        assert failed.reason == Reason.NOT_IN_SERVICE
        assert failed.provider_code == "21614"

        assert (await h.get(fine.id)).status is TextStatus.DELIVERED


async def test_status_shows_depth_and_next_slot_per_number(h: Harness) -> None:
    for i in range(3):
        await h.submit(A, recipient(0, i))
    await h.submit(B, recipient(1, 0))
    await h.clock.advance(0)

    view = await h.service.status()
    numbers = {n.number: n for n in view.numbers}
    assert set(numbers) == {A, B}
    assert numbers[A].depth == 2
    assert numbers[B].depth == 0
    for number in (A, B):
        slot = numbers[number].next_slot_at
        assert slot is not None
        assert h.at(1) <= slot <= h.at(1) + 2 * GUARD
        assert numbers[number].paused is False
        assert numbers[number].rate == 1.0
    assert view.counts[TextStatus.QUEUED] == 2
    assert view.at == h.start

    await h.clock.advance(1.5)
    numbers = {n.number: n for n in (await h.service.status()).numbers}
    assert numbers[A].depth == 1
    slot = numbers[A].next_slot_at
    assert slot is not None
    assert h.at(2) <= slot <= h.at(2) + 3 * GUARD


# -- property: spacing and FIFO for random workloads -------------------------------------


@dataclass(frozen=True, slots=True)
class Text:
    lane: Lane
    segments: int
    delay: float  # simulated seconds to wait before submitting it


texts = st.builds(
    Text,
    lane=st.sampled_from(list(Lane)),
    segments=st.integers(min_value=1, max_value=3),
    delay=st.sampled_from([0.0, 0.0, 0.0, 0.4, 1.3]),
)
workloads = st.lists(st.lists(texts, min_size=1, max_size=6), min_size=1, max_size=4).flatmap(
    lambda per_number: st.permutations(
        [(n, i, text) for n, items in enumerate(per_number) for i, text in enumerate(items)]
    )
)


async def _run_workload(log_dir: Path, workload: list[tuple[int, int, Text]]) -> None:
    async with running(log_dir) as h:
        submitted: list[Message] = []
        for n, i, text in workload:
            if text.delay:
                await h.clock.advance(text.delay)
            message = await h.submit(
                SENDERS[n], recipient(n, i), BODY_BY_SEGMENTS[text.segments], lane=text.lane
            )
            assert message.segments == text.segments
            assert message.status is TextStatus.QUEUED
            submitted.append(message)
        await advance_until(h.clock, all_terminal(h, submitted), step=1.0, max_steps=200)

        sends = h.sends()
        assert sorted(s.message_id for s in sends) == sorted(m.id for m in submitted)
        by_sender: dict[str, list[Send]] = defaultdict(list)
        for send in sends:
            by_sender[send.sender].append(send)
        for sender, mine in by_sender.items():
            rate = h.service.config.pacing.rate_of(sender)
            for previous, current in pairwise(mine):
                needed = slot_seconds(previous.segments, rate) * 1.0
                assert (current.at - previous.at).total_seconds() >= needed
        lane_of = {m.id: m.lane for m in submitted}
        for lane in Lane:
            for sender, mine in by_sender.items():
                submitted_order = [m.id for m in submitted if m.sender == sender and m.lane is lane]
                sent_order = [s.message_id for s in mine if lane_of[s.message_id] is lane]
                assert sent_order == submitted_order


@settings(max_examples=30, deadline=None)
@given(workload=workloads)
def test_random_workloads_keep_spacing_and_fifo_within_lanes(
    workload: list[tuple[int, int, Text]],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(_run_workload(Path(folder), workload))


async def test_a_contact_listed_elsewhere_fails_when_its_text_is_read_from_the_queue(
    h: Harness,
) -> None:
    # Deeper in the queue than the head kept in memory: the entry made straight in the
    # store (as another process sharing it would) is seen when the head is read again.
    texts = [await h.submit(A, recipient(0, i), lane=Lane.BULK) for i in range(12)]
    target = texts[-1]
    entry = DntEntry(number=target.recipient, added_at=h.at(0), added_by="another process")
    await h.service.store.dnt_add(entry)
    await advance_until(h.clock, all_terminal(h, texts), max_steps=200)
    ended = await h.get(target.id)
    assert (ended.status, ended.reason) == (TextStatus.FAILED, Reason.DO_NOT_TEXT)
    assert target.id not in h.sent_ids()
    assert len(h.sends_of(A)) == len(texts) - 1
