"""The deadline scheduler (``dispatcher.engine.scheduler``), on a fake clock: keys due
together go out in batches, never more than the room allows, and each key comes back
through ``book``; and the engine's claim lead, which follows the claims' duration."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.channels import Accepted, HandOff, SendRequest
from dispatcher.channels.simulator import Simulator
from dispatcher.clock import FakeClock, Instant
from dispatcher.config import ProviderConfig
from dispatcher.core.model import Message, TextStatus, Transition
from dispatcher.engine.delivery import MAX_LEAD, OUTCOME_UNKNOWN, Delivery
from dispatcher.engine.intake import TextRequest
from dispatcher.engine.ownership import Head, Leased, Solo
from dispatcher.engine.queues import BUFFER
from dispatcher.engine.retries import GiveUp, Retries, Retry
from dispatcher.engine.scheduler import BATCH, Pacer
from dispatcher.engine.texts import TextDesk
from dispatcher.errors import ProviderError
from dispatcher.store.leasing import KeyLeases, KeyWork, Lease, Start, StartOutcome
from dispatcher.testing import Harness, running_service


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


async def test_a_key_forgotten_while_it_waits_is_idle_until_woken_and_goes_once() -> None:
    """A key whose lease went while it waited on the heap is not handed out at its old
    entry's time (it is not this process's to pace); woken again once it is back, it goes
    at the slot it has then, once: the old entry is never a second hand-out."""
    clock = FakeClock()
    start = clock.now().mono
    seen: list[tuple[str, float]] = []
    pacer = Pacer(clock, seen.extend)
    pacer.wake("a")
    task = asyncio.create_task(pacer.run())
    await clock.advance(0)
    pacer.book("a", start + 1.0)  # waits on the heap for 1.0
    pacer.forget("a")
    await clock.advance(1.5)
    assert seen[1:] == []  # was handed out at 1.0, with nothing to send
    pacer.restore("a", start + 2.0)  # back, the store's next slot read again
    pacer.wake("a")
    await clock.advance(1.0)
    assert seen[1:] == [("a", start + 2.0)]

    pacer.book("a", start + 3.0)
    pacer.forget("a")
    pacer.wake("a")  # back at once: its next slot is kept, its old entry is dead
    await clock.advance(2.0)
    assert seen[2:] == [("a", start + 3.0)]  # once (twice, if the old entry still counted)
    pacer.stop()
    await task


KEYS = ("a", "b", "c", "d")
pacer_ops = st.lists(
    st.one_of(
        st.tuples(st.just("wake"), st.sampled_from(KEYS)),
        st.tuples(st.just("book"), st.sampled_from(KEYS),
                  st.one_of(st.none(), st.floats(0.0, 2.0))),
        # Moved from the key's latest slot: a hand-off a little after its send's start
        # (within a tick's window, or past it), or anywhere, earlier included.
        st.tuples(st.just("restore"), st.sampled_from(KEYS),
                  st.one_of(st.sampled_from([0.001, 0.004, 0.02, 0.2]), st.floats(-1.5, 1.5))),
        st.tuples(st.just("advance"), st.floats(0.0, 1.5)),
        # The key's lease went: idle until woken again, wherever it was.
        st.tuples(st.just("forget"), st.sampled_from(KEYS)),
    ),
    max_size=40,
)  # fmt: skip


class PacerModel:
    """What the pacer promises, checked at each hand-out and after each step: a key is
    out once until booked, never before its latest slot (booked or restored, and kept
    when the key is forgotten), never before it is due, never when it has nothing to
    send (idle, or forgotten since it was woken), and never left waiting past its due
    time."""

    def __init__(self, clock: FakeClock, lead: float, window: float) -> None:
        self.clock, self.lead, self.window = clock, lead, window
        self.busy: set[str] = set()
        self.pending: set[str] = set()  # has something to send: will be handed out
        self.latest: dict[str, float] = {}  # the latest slot booked or restored
        self.due_at: dict[str, float] = {}  # a pending key's slot, as pushed or moved
        self.broken: list[str] = []

    def due(self, batch: list[tuple[str, float]]) -> None:
        """Called by the pacer's task: what breaks a promise is kept for the test."""
        now = self.clock.now().mono
        if len(batch) > 2:
            self.broken.append(f"a batch of {len(batch)}")
        for key, slot in batch:
            if key in self.busy:
                self.broken.append(f"{key} handed out twice")
            if key not in self.pending:
                self.broken.append(f"{key} handed out with nothing to send")
            if slot < self.latest.get(key, slot):
                self.broken.append(f"{key} at {slot}, before its slot {self.latest[key]}")
            if slot > now + self.lead + self.window + 1e-9:
                self.broken.append(f"{key} at {slot}, not due at {now}")
            self.busy.add(key)
            self.pending.discard(key)

    def moved(self, key: str, slot: float) -> None:
        self.latest[key] = max(slot, self.latest.get(key, slot))

    def pushed(self, key: str, slot: float) -> None:
        self.pending.add(key)
        self.due_at[key] = max(slot, self.latest.get(key, slot))

    def booked(self, key: str, slot: float | None) -> None:
        """``key`` came back, with its next slot, or None: nothing more to send (it goes
        again at once if it was woken while out)."""
        self.busy.discard(key)
        if slot is not None:
            self.moved(key, slot)
            self.pushed(key, slot)
        elif key in self.pending:
            self.pushed(key, self.clock.now().mono)

    def none_overdue(self) -> None:
        assert self.broken == []
        now = self.clock.now().mono
        late = [k for k in self.pending - self.busy if self.due_at[k] <= now + self.lead - 1e-9]
        assert late == [], f"{late} due and not handed out"


async def _run_pacer_ops(ops: list[tuple[object, ...]], lead: float, window: float) -> None:
    clock = FakeClock()
    model = PacerModel(clock, lead, window)
    pacer = Pacer(clock, model.due, lead=lead, window=window, batch=2)
    task = asyncio.create_task(pacer.run())
    for op in ops:
        now = clock.now().mono
        match op:
            case ("wake", str(key)):
                if key not in model.pending:
                    model.pushed(key, now)
                pacer.wake(key)
            case ("book", str(key), slot) if key in model.busy:
                booked = now + slot if isinstance(slot, float) else None
                model.booked(key, booked)
                pacer.book(key, booked)
            case ("restore", str(key), float(delta)):
                at = model.latest.get(key, now) + delta
                model.moved(key, at)
                if key in model.pending and key not in model.busy:
                    model.due_at[key] = max(model.due_at[key], at)
                pacer.restore(key, at)
            case ("advance", float(seconds)):
                await clock.advance(seconds)
                model.none_overdue()
            case ("forget", str(key)):
                model.pending.discard(key)
                pacer.forget(key)
        await clock.advance(0)
        assert model.broken == []
    for _ in range(3):  # every key comes back with nothing more: each pending one goes
        for key in sorted(model.busy):
            model.booked(key, None)
            pacer.book(key, None)
        await clock.advance(5.0)
        model.none_overdue()
    assert model.pending <= model.busy
    pacer.stop()
    await task


@settings(max_examples=200, deadline=None)
@given(ops=pacer_ops, lead=st.sampled_from([0.0, 0.05, 0.25]),
       window=st.sampled_from([0.0, 0.005]))  # fmt: skip
def test_random_wakes_bookings_and_moves_keep_the_pacers_promises(
    ops: list[tuple[object, ...]], lead: float, window: float
) -> None:
    asyncio.run(_run_pacer_ops(ops, lead, window))


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


def _paced_by(h: Harness, owner: Solo) -> TextDesk:
    """The held service's texts desk, its numbers paced by ``owner`` (a test's own)."""
    h.service.hold()
    desk = h.service.texts
    owner.attach(desk)
    desk.owner = owner
    return desk


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
        desk = _paced_by(h, Recording())
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


class _Held:
    """One lease, on +15550000001 under epoch 2, trusted until ``lapsed``."""

    def __init__(self) -> None:
        self.lease = Lease("+15550000001", 2, trusted_until=float("inf"), next_slot_at=None)
        self.lapsed = False

    def lease_of(self, key: str) -> Lease | None:
        return self.lease if key == self.lease.key else None

    def trusted(self, lease: Lease) -> bool:
        return not self.lapsed


def _leased(held: _Held) -> Leased:
    return Leased(cast(KeyLeases, held), address=None, faulted=lambda: False,
                  store_fault=lambda _: None)  # fmt: skip


def test_a_send_leaves_only_under_the_lease_it_was_started_under() -> None:
    """The provider is called for a text only while its number's lease is trusted and
    is the one the text was started under: a number lost and taken again (a new epoch)
    does not carry a start of the earlier lease, which the new owner may have settled."""
    owner = _leased(_Held())
    owner.started("m-now", 2)
    owner.started("m-before", 1)  # started under the number's earlier lease
    assert owner.may_call("+15550000001", "m-now")
    assert not owner.may_call("+15550000001", "m-before")
    assert not owner.may_call("+15550000001", "m-unknown")
    assert not owner.may_call("+15550000002", "m-now")  # not held


async def _three_texts(h: Harness, number: str, recipients: str) -> list[str]:
    """Three texts submitted on ``number`` (to ``recipients`` and a digit), in order."""
    submitted = await h.service.submit_many(
        [TextRequest(sender=number, recipient=f"{recipients}{i}", body=f"text {i}")
         for i in range(3)]
    )  # fmt: skip
    return [s.message.id for s in submitted]


def _hold_put_back(desk: TextDesk, text: str) -> tuple[asyncio.Event, asyncio.Event]:
    """The write that puts ``text`` back to Queued, held (as on a busy store): the first
    event is set when the write comes, the second, set by the test, lets it go on."""
    held, written = asyncio.Event(), asyncio.Event()
    store = desk._store
    record = store.record

    async def slow_put_back(
        transitions: Sequence[Transition],
        next_slots: Mapping[str, datetime] | None = None,
        *,
        ahead: bool = False,
    ) -> None:
        if any(t.message_id == text and t.event.status is TextStatus.QUEUED
               for t in transitions):  # fmt: skip
            held.set()
            await written.wait()
        await record(transitions, next_slots, ahead=ahead)

    store.record = slow_put_back  # type: ignore[method-assign]
    return held, written


async def test_a_text_put_back_before_its_provider_call_still_leaves_before_the_next_one(
    home: Path,
) -> None:
    """The lease of a number is not trusted right before a text's provider call: the text
    goes back to the queue. Its write took a while (a busy store), and the number's next
    slot came meanwhile: the claim of that slot took the next text out of the buffer,
    where the first was not back yet, and sent it first. The claim now waits for the
    text to be back in its place."""
    first: list[str] = []
    put_back: list[asyncio.Event] = []

    class UntrustedOnce(Solo):
        def may_call(self, key: str, message_id: str) -> bool:
            # The first text's lease may have lapsed: not sent, put back (once).
            return message_id not in first or put_back[0].is_set()

    async with running_service(home) as h:
        desk = _paced_by(h, UntrustedOnce())
        texts = await _three_texts(h, "+15550000005", "+1555010003")
        first.append(texts[0])
        held, written = _hold_put_back(desk, texts[0])
        put_back.append(held)
        h.service.release()

        async def is_held() -> bool:
            return held.is_set()

        await h.advance_until(is_held)
        await h.clock.advance(2.0)  # the number's next slot comes while the write is held
        written.set()

        async def all_sent() -> bool:
            return len(h.sent_texts()) == len(texts)

        await h.advance_until(all_sent)
        assert [r.message_id for r in h.sent_texts()] == texts


class RetryAsked(Simulator):
    """The simulated carrier, asking at once to retry (a 429) each text of ``refusing``
    the first time it is given, and noting when."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.refusing: set[str] = set()
        self.refused_at: list[float] = []

    async def send(self, request: SendRequest) -> Accepted:
        if request.message_id in self.refusing:
            self.refusing.discard(request.message_id)
            self.refused_at.append(self._clock.now().mono)
            raise ProviderError("too many requests", provider_code="429", retryable=True)
        return await super().send(request)


@pytest.mark.parametrize("write_takes", [1.5, 3.0])
async def test_a_text_the_carrier_asks_to_retry_still_leaves_before_the_next_one(
    home: Path, write_takes: float
) -> None:
    """The carrier asks to retry a number's first text: it goes back to the head of its
    queue, and the number waits the backoff (2 s). The write that puts it back took a
    while (a busy store), and the number's next slot (1 s after the first's start) came
    meanwhile: its claim took the next text out of the buffer, where the first was not
    back yet, and sent it first. The number now waits its backoff from the refusal on,
    and a claim that comes while the text goes back (the write outlasting the backoff
    too, 3 s) waits for it to be back in its place."""
    backoff = ProviderConfig().retry_backoff.total_seconds()
    async with running_service(home, carrier=RetryAsked) as h:
        carrier = cast(RetryAsked, h.simulator)
        h.service.hold()
        texts = await _three_texts(h, "+15550000008", "+1555010005")
        carrier.refusing.add(texts[0])
        held, written = _hold_put_back(h.service.texts, texts[0])
        h.service.release()

        async def is_held() -> bool:
            return held.is_set()

        await h.advance_until(is_held)
        await h.clock.advance(write_takes)
        written.set()

        async def all_sent() -> bool:
            return len(h.sent_texts()) == len(texts)

        await h.advance_until(all_sent)
        sends = h.sent_texts()
        assert [r.message_id for r in sends] == texts
        assert sends[0].mono - carrier.refused_at[0] >= backoff
        assert all(b.mono - a.mono >= 1.0 for a, b in pairwise(sends))


async def test_a_start_refused_while_the_last_sent_is_written_goes_once_it_is(
    home: Path,
) -> None:
    """On a store several workers share, a number's start is refused (busy) while its
    previous text is still Sending there: its Sent is handed over soon, and the write
    may lag behind on a busy database. The number is woken when that write ends and its
    next text starts then; it waited for the leases' next turn (none here: never)."""
    written = asyncio.Event()
    refused: list[float] = []
    texts: list[str] = []

    class Shared(Solo):
        @property
        def shared(self) -> bool:
            return True

        async def start(
            self, steps: Sequence[Transition], heads: Sequence[Head]
        ) -> dict[str, Start]:
            if written.is_set() or all(h.step.message_id != texts[1] for h in heads):
                return await super().start(steps, heads)
            # The database still has the first text Sending: nothing written, refused.
            refused.append(h.clock.now().mono)
            return {head.key: Start(StartOutcome.BUSY, None, None, None, trusted=False)
                    for head in heads}  # fmt: skip

    async with running_service(home) as h:
        desk = _paced_by(h, Shared())
        texts += await _three_texts(h, "+15550000006", "+1555010004")
        store = desk._store
        record_soon = store.record_soon

        def slow_sent(
            transitions: Sequence[Transition], next_slots: Mapping[str, datetime] | None = None
        ) -> asyncio.Future[None]:
            done = record_soon(transitions, next_slots)
            if all(t.message_id != texts[0] for t in transitions):
                return done

            async def later() -> None:  # the first text's Sent, written late
                await asyncio.wait([done])
                await written.wait()

            return asyncio.ensure_future(later())

        store.record_soon = slow_sent  # type: ignore[method-assign]
        h.service.release()

        async def refused_once() -> bool:
            return bool(refused)

        await h.advance_until(refused_once, step=0.05)
        await h.clock.advance(0.5)  # the write lags on
        assert len(h.sent_texts()) == 1
        written.set()  # it ends: the number goes at once, not at a later turn

        async def all_sent() -> bool:
            return len(h.sent_texts()) == len(texts)

        await h.advance_until(all_sent, step=0.05, max_steps=100)
        sends = h.sent_texts()
        assert [r.message_id for r in sends] == texts
        assert sends[1].mono - refused[0] < 0.5 + 0.2  # once written, not a turn later
        assert sends[2].mono - sends[1].mono >= 1.0


async def test_a_claim_whose_read_finds_no_head_for_a_counted_queue_ends_without_reading_again(
    home: Path,
) -> None:
    """A number counted with texts queued (the store's count, on a store several workers
    share) whose read finds none to send: the claim leaves it, after one read, instead of
    reading its queue again and again (which held the claim, and the number, for good)."""
    async with running_service(home) as h:
        h.service.hold()
        desk = h.service.texts
        number = "+15550000003"
        desk.queues.set_depth(number, 3)
        assert desk.queues.needs_read(number)
        store = desk._store
        reads: list[list[str]] = []
        read = store.heads

        async def counted(keys: Sequence[str], limit: int) -> dict[str, list[Message]]:
            reads.append(list(keys))
            return await read(keys, limit)

        store.heads = counted  # type: ignore[method-assign,assignment]
        now = h.clock.now().wall
        claimed = await asyncio.wait_for(desk.claim([(number, now)]), timeout=10)
        assert claimed == {}
        assert reads == [[number]]


async def _one_text(h: Harness, number: str, recipient: str) -> str:
    """One text submitted on ``number``: its id."""
    [submitted] = await h.service.submit_many(
        [TextRequest(sender=number, recipient=recipient, body="mine")]
    )
    return submitted.message.id


def _sending(number: str, text: str) -> KeyWork:
    """``number`` as the leases' turn reads it: ``text`` Sending (epoch 1), nothing queued."""
    return KeyWork(number, queued=0, sending=[(text, 1)], next_slot_at=None, paused=False)


def _reads_of(desk: TextDesk) -> list[str]:
    """The ids of the texts ``desk`` reads one by one from its store from now on."""
    store = desk._store
    get = store.get
    read: list[str] = []

    async def counted_get(message_id: str) -> Message | None:
        read.append(message_id)
        return await get(message_id)

    store.get = counted_get  # type: ignore[method-assign]
    return read


async def test_a_text_whose_sent_is_being_written_is_not_read_again_by_the_turn(
    home: Path,
) -> None:
    """The leases' turn finds a number's text Sending in the store while this worker is
    writing its Sent (handed over soon): it is this worker's own, and the turn reads
    nothing more of it. It was read again, one round trip a text, one after the other:
    on a busy worker, most of its numbers, and a turn of tens of seconds."""
    async with running_service(home) as h:
        desk = _paced_by(h, Solo())
        number = "+15550000007"
        text = await _one_text(h, number, "+15550100021")
        read = _reads_of(desk)
        desk._writing.add(text)  # its move out of Sending is being written
        await desk.work([_sending(number, text)])
        assert read == []
        desk._writing.discard(text)  # written: a text still Sending then is read
        await desk.work([_sending(number, text)])
        assert read == [text]


async def test_a_text_whose_sent_was_written_since_the_turns_read_is_not_read_again(
    home: Path,
) -> None:
    """The leases' turn reads its numbers while a text is Sending; its Sent is written
    before the turn looks at it (the read's answer came after the write): it is this
    worker's own, not left Sending, and nothing more of it is read. It was read again,
    one round trip a text: on a worker sending 1,000 a second from 2,000 numbers, most
    of them, and workers that joined it were given no number in a whole run."""
    async with running_service(home) as h:
        desk = _paced_by(h, Solo())
        number = "+15550000008"
        text = await _one_text(h, number, "+15550100022")
        read = _reads_of(desk)
        desk.reading_work()  # the turn's read begins
        desk._writing.add(text)  # its Sent handed over, being written
        desk._wrote([text])  # written, before the turn looks at the text
        await desk.work([_sending(number, text)])
        assert read == []
        await desk.work([_sending(number, text)])  # a read begun before nothing: read
        assert read == [text]


async def test_a_text_its_own_claim_is_starting_is_not_settled_as_left_by_another_worker(
    home: Path,
) -> None:
    """The leases' turn can read a number while this worker's claim is starting a text on
    it: the start is committed (the text is Sending in the store) and its answer has not
    arrived, so the engine does not count it in flight yet. The turn leaves it to the
    claim; it used to reconcile it as a send of unknown outcome left by another worker."""
    committed, answer = asyncio.Event(), asyncio.Event()

    class Slow(Solo):
        async def start(
            self, steps: Sequence[Transition], heads: Sequence[Head]
        ) -> dict[str, Start]:
            refused = await super().start(steps, heads)
            committed.set()
            await answer.wait()
            return refused

    async with running_service(home) as h:
        desk = _paced_by(h, Slow())
        number = "+15550000004"
        text = await _one_text(h, number, "+15550100020")
        claim = asyncio.create_task(desk.claim([(number, h.clock.now().wall)]))
        await asyncio.wait_for(committed.wait(), timeout=10)
        stored = await desk._store.get(text)
        assert stored is not None
        assert stored.status is TextStatus.SENDING
        assert not desk.engine.in_flight.get(number)
        await desk.work([_sending(number, text)])
        assert OUTCOME_UNKNOWN not in {first for first, _ in desk.engine.provider_errors.counts}
        answer.set()
        claimed = await asyncio.wait_for(claim, timeout=10)
        assert [m.id for m in claimed.values()] == [text]
        after = await desk._store.get(text)
        assert after is not None
        assert after.status is TextStatus.SENDING  # still its claim's, to be sent


def test_a_text_found_sending_is_settled_only_under_a_trusted_lease_not_older_than_its_start() -> (
    None
):
    """A worker settles a text it finds Sending (and not in flight here) only while its
    number's lease is trusted, and only a text started under that lease's epoch or an
    earlier one (or under none). A worker back from a stall still lists the number it
    held; its new owner's text, Sending under a newer epoch with its provider call
    under way, was settled as left behind, queued again and sent twice."""
    held = _Held()
    owner = _leased(held)
    assert owner.may_settle("+15550000001", 1)  # a previous owner's start
    assert owner.may_settle("+15550000001", 2)  # this lease's own, unfinished
    assert owner.may_settle("+15550000001", None)  # started under no lease
    assert not owner.may_settle("+15550000001", 3)  # a newer owner's start
    assert not owner.may_settle("+15550000002", 1)  # not held
    held.lapsed = True
    assert not owner.may_settle("+15550000001", 1)


async def test_the_leases_turn_leaves_a_text_its_owner_may_not_settle(home: Path) -> None:
    """The desk asks its owner before settling a text it finds Sending: one it may not
    settle (another worker's start under a newer lease) is neither counted as an
    unknown outcome nor asked about nor queued again."""

    class Stale(Solo):
        def may_settle(self, key: str, epoch: int | None) -> bool:
            return False

    async with running_service(home) as h:
        desk = _paced_by(h, Stale())
        number = "+15550000005"
        [submitted] = await h.service.submit_many(
            [TextRequest(sender=number, recipient="+15550100030", body="theirs")]
        )
        text = submitted.message.id
        claimed = await desk.claim([(number, h.clock.now().wall)])
        assert [m.id for m in claimed.values()] == [text]
        await desk.work([KeyWork(number, queued=0, sending=[(text, 3)], next_slot_at=None,
                                 paused=False)])  # fmt: skip
        assert OUTCOME_UNKNOWN not in {first for first, _ in desk.engine.provider_errors.counts}
        stored = await desk._store.get(text)
        assert stored is not None
        assert stored.status is TextStatus.SENDING
