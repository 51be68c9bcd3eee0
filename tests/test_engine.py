"""The delivery engine's shared pieces: the event bus, bounded retries, parked reports."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from dispatcher.config import ProviderConfig
from dispatcher.core.calls import CALL_TABLE, CallStatus
from dispatcher.core.model import TEXT_TABLE, TextStatus
from dispatcher.core.transitions import TransitionTable, Verdict
from dispatcher.engine.bus import Bus
from dispatcher.engine.events import Outcome
from dispatcher.engine.keys import KeyLocks
from dispatcher.engine.parking import Parked
from dispatcher.engine.retries import GiveUp, Retries, Retry
from dispatcher.errors import ProviderError
from dispatcher.service import TextRequest
from dispatcher.testing import running_service

SENDER = "+14155550100"


@dataclass(frozen=True)
class Seen:
    what: str


@dataclass(frozen=True)
class Other:
    what: str


def test_the_bus_hands_each_event_to_the_subscribers_of_its_type_in_order() -> None:
    bus = Bus()
    got: list[str] = []
    assert not bus.wanted(Seen)
    bus.subscribe(Seen, lambda e: got.append(f"first {e.what}"))
    bus.subscribe(Seen, lambda e: got.append(f"second {e.what}"))
    bus.subscribe(Other, lambda e: got.append(f"other {e.what}"))
    bus.publish(Seen("a"))
    bus.publish(Other("b"))
    assert got == ["first a", "second a", "other b"]
    assert bus.wanted(Seen)


def test_a_failing_subscriber_never_reaches_the_publisher(caplog: pytest.LogCaptureFixture) -> None:
    bus = Bus()
    got: list[Seen] = []

    def broken(_event: Seen) -> None:
        raise RuntimeError("boom")

    bus.subscribe(Seen, broken)
    bus.subscribe(Seen, got.append)
    bus.publish(Seen("a"))  # does not raise
    assert got == [Seen("a")]
    assert "bus.handler_failed" in caplog.text


def test_retries_back_off_doubling_then_give_up_with_the_count() -> None:
    retries = Retries(ProviderConfig(max_retries=3, retry_backoff=timedelta(seconds=2)))
    busy = ProviderError("slow down", provider_code="429", retryable=True)
    decisions = [retries.refused("m1", busy) for _ in range(4)]
    assert [d.backoff for d in decisions if isinstance(d, Retry)] == [
        timedelta(seconds=2), timedelta(seconds=4), timedelta(seconds=8),
    ]  # fmt: skip
    last = decisions[-1]
    assert isinstance(last, GiveUp)
    assert last.tries == 4
    assert last.detail.startswith("gave up after 4 tries")
    retries.taken("m1")
    assert isinstance(retries.refused("m1", busy), Retry)  # counted afresh


def test_a_final_refusal_gives_up_at_once_with_the_providers_reason() -> None:
    retries = Retries(ProviderConfig())
    final = ProviderError("no", provider_code="21211", permanent_reason="not_in_service")
    decision = retries.refused("m1", final)
    assert decision == GiveUp(tries=1, reason="not_in_service", detail="no")


def test_parked_reports_are_bounded_dropping_the_oldest() -> None:
    parked: Parked[str] = Parked(limit=2)
    parked.park("p1", "a")
    parked.park("p1", "b")
    parked.park("p2", "c")
    parked.park("p3", "d")  # p1 is the oldest: dropped
    assert len(parked) == 2
    assert parked.release("p1") == []
    assert parked.release("p2") == ["c"]
    assert parked.release("p2") == []  # released once
    assert parked.release("p3") == ["d"]


@pytest.mark.parametrize(
    ("table", "current", "new", "verdict"),
    [
        (TEXT_TABLE, TextStatus.SENT, TextStatus.DELIVERED, Verdict.APPLY),
        (TEXT_TABLE, TextStatus.DELIVERED, TextStatus.SENT, Verdict.STALE),
        (TEXT_TABLE, TextStatus.SENT, TextStatus.SENT, Verdict.DUPLICATE),
        (CALL_TABLE, CallStatus.RINGING, CallStatus.ANSWERED, Verdict.APPLY),
        (CALL_TABLE, CallStatus.COMPLETED, CallStatus.RINGING, Verdict.STALE),
    ],
)
def test_one_judge_for_every_table(
    table: TransitionTable[TextStatus] | TransitionTable[CallStatus],
    current: TextStatus | CallStatus,
    new: TextStatus | CallStatus,
    verdict: Verdict,
) -> None:
    assert table.judge(current, new) is verdict  # type: ignore[arg-type]
    for state in table.terminal:
        assert state not in table.moves  # terminal states are never left


async def test_a_campaigns_texts_publish_each_change_of_status(tmp_path: Path) -> None:
    async with running_service(tmp_path) as h:
        seen: list[Outcome] = []
        h.service.bus.subscribe(Outcome, seen.append)
        sent = await h.service.submit(TextRequest(
            sender=SENDER, recipient="+16505550100", body="hi", campaign_id="cmp_1",
        ))  # fmt: skip
        later = await h.service.submit(TextRequest(
            sender=SENDER, recipient="+16505550101", body="hi", campaign_id="cmp_1",
        ))  # fmt: skip
        await h.service.cancel(later.message.id)
        alone = await h.text(SENDER, "+16505550102")  # in no campaign: not published

        async def delivered() -> bool:
            return await h.status_of(sent.message) is TextStatus.DELIVERED

        await h.advance_until(delivered)
    assert [o.status for o in seen if o.item_id == sent.message.id] == [
        TextStatus.SENT, TextStatus.DELIVERED,
    ]  # fmt: skip
    assert [(o.status, o.reason) for o in seen if o.item_id == later.message.id] == [
        (TextStatus.UNSENT, "canceled"),
    ]
    assert {o.campaign_id for o in seen} == {"cmp_1"}
    assert alone.id not in {o.item_id for o in seen}


# -- the locks of the pacing keys -----------------------------------------------------------


async def test_holders_of_different_keys_never_wait_for_each_other() -> None:
    locks = KeyLocks()
    # Many keys held at once (as the claims of many ticks are): none waits for another,
    # whatever their hashes (striped locks made keys sharing a stripe wait).
    async with contextlib.AsyncExitStack() as held:
        for n in range(2_000):
            entered = asyncio.ensure_future(held.enter_async_context(locks.holding([f"k{n}"])))
            await asyncio.sleep(0)
            assert entered.done(), f"k{n} waited for a lock held for other keys"
        second = asyncio.ensure_future(locks.holding(["k7", "k2000"]).__aenter__())
        await asyncio.sleep(0)
        assert not second.done()  # k7 is held
    await second


async def test_every_lock_waits_for_each_holder_and_holds_new_keys_off() -> None:
    locks = KeyLocks()
    order: list[str] = []
    released = asyncio.Event()

    async def hold(key: str) -> None:
        async with locks.holding([key]):
            order.append(f"{key} in")
            await released.wait()
            order.append(f"{key} out")

    async def every() -> None:
        async with locks.every():
            order.append("every in")
            await asyncio.sleep(0)
            order.append("every out")

    first = asyncio.ensure_future(hold("a"))
    await asyncio.sleep(0)
    all_of_them = asyncio.ensure_future(every())
    await asyncio.sleep(0)
    new = asyncio.ensure_future(hold("b"))  # first locked while every() waits
    await asyncio.sleep(0)
    assert order == ["a in"]
    released.set()
    await asyncio.gather(first, all_of_them, new)
    assert order == ["a in", "a out", "every in", "every out", "b in", "b out"]


async def free(locks: KeyLocks, *keys: str) -> bool:
    """Whether ``keys`` can be taken at once (then they are let go again)."""
    held = locks.holding(keys)
    taking = asyncio.ensure_future(held.__aenter__())
    await asyncio.sleep(0)
    if not taking.done():
        taking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await taking
        return False
    await held.__aexit__(None, None, None)
    return True


async def test_a_holder_cancelled_or_failing_lets_go_of_every_lock_it_took() -> None:
    locks = KeyLocks()
    released = asyncio.Event()

    async def hold(*keys: str) -> None:
        async with locks.holding(keys):
            await released.wait()

    b_held = asyncio.ensure_future(hold("b"))
    await asyncio.sleep(0)
    # Takes a (first in order), then waits for b: cancelled there, it gives a back.
    waiting = asyncio.ensure_future(hold("b", "a", "a"))  # a key twice is one lock
    await asyncio.sleep(0)
    assert not await free(locks, "a")
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    released.set()
    await b_held
    released.clear()
    assert await free(locks, "a", "b")

    async def fail_holding() -> None:
        async with locks.holding(key for key in ("c", "a")):  # any iterable of keys
            assert not await free(locks, "a")
            assert not await free(locks, "c")
            assert await free(locks, "b")
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await fail_holding()
    assert await free(locks, "a", "b", "c")
