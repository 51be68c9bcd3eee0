"""The public test harness (dispatcher/testing.py): the service on a fake clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from dispatcher import clock, testing
from dispatcher.channels import Accepted, SendRequest
from dispatcher.channels.simulator import Simulator
from dispatcher.config import Config, PacingConfig
from dispatcher.core.model import TextStatus
from dispatcher.service import CallRequest
from dispatcher.store.memory import MemoryStore
from dispatcher.testing import (
    QUIET,
    FakeClock,
    Harness,
    advance_at_polls,
    advance_until,
    build_service,
    running_service,
    wait_for,
)

SENDER = "+14155550100"
TO = "+16505550100"


def test_the_fake_clock_is_the_one_the_product_ships() -> None:
    assert testing.FakeClock is clock.FakeClock
    assert testing.settle is clock.settle


async def test_a_text_is_sent_and_delivered_on_fake_time(tmp_path: Path) -> None:
    async with running_service(tmp_path) as h:
        text = await h.text(SENDER, TO, "Hello")

        async def delivered() -> bool:
            return await h.status_of(text.id) is TextStatus.DELIVERED

        await h.advance_until(delivered)
        assert (await h.message(text.id)).body == "Hello"
        # Receipts come 300 ms after the send (QUIET): delivered within two steps.
        assert h.now() - h.started.wall <= timedelta(seconds=0.5)
    [sent] = h.sent_texts()
    assert (sent.message_id, sent.sender, sent.recipient, sent.segments) == (text.id, SENDER, TO, 1)
    assert (sent.at, sent.mono) == (h.started.wall, h.started.mono)  # sent at once
    assert h.placed_calls() == []
    assert h.home == tmp_path
    assert (tmp_path / "simulator-sends.jsonl").exists()


async def test_calls_are_recorded_as_the_carrier_saw_them(tmp_path: Path) -> None:
    async with running_service(tmp_path) as h:
        request = CallRequest(sender=SENDER, recipient=TO, script=[{"say": "Hi"}])
        call = (await h.service.submit_call(request)).call

        async def ended() -> bool:
            return (await h.service.call(call.id)).call.terminal

        await h.advance_until(ended)
    [placed] = h.placed_calls()
    assert (placed.call_id, placed.sender, placed.recipient) == (call.id, SENDER, TO)
    assert placed.provider_id.startswith("CA")
    assert placed.machine_detection is None
    assert placed.mono == h.started.mono
    assert h.sent_texts() == []


class _Counting(Simulator):
    """A carrier subclass, as a test writes one to misbehave on cue."""

    seen = 0

    async def send(self, request: SendRequest) -> Accepted:
        type(self).seen += 1
        return await super().send(request)


async def test_the_store_clock_config_and_carrier_are_the_ones_given(tmp_path: Path) -> None:
    store = MemoryStore()
    fake = FakeClock(mono=50.0)
    config = Config(pacing=PacingConfig(default_rate=2.0), simulator=QUIET)
    slow = replace(QUIET, receipt_delay=timedelta(seconds=5))
    log = tmp_path / "elsewhere" / "carrier.jsonl"
    log.parent.mkdir()
    async with running_service(
        tmp_path / "home", config=config, simulator=slow, store=store, clock=fake,
        carrier=_Counting, carrier_log=log,
    ) as h:  # fmt: skip
        assert (h.clock, type(h.simulator), h.home) == (fake, _Counting, tmp_path / "home")
        first = await h.text(SENDER, TO)
        second = await h.text(SENDER, "+16505550101")
        assert await store.get(first.id) is not None
        await h.clock.advance(4)
        assert await h.status_of(first.id) is TextStatus.SENT  # the receipt is 5 s away
        await h.clock.advance(1)
        assert await h.status_of(first.id) is TextStatus.DELIVERED
    assert _Counting.seen == 2
    assert (tmp_path / "home").is_dir()
    assert not (tmp_path / "home" / "simulator-sends.jsonl").exists()
    sent = h.sent_texts()
    assert [s.message_id for s in sent] == [first.id, second.id]
    assert sent[0].mono == 50.0
    assert sent[1].mono - sent[0].mono == pytest.approx(0.5, abs=0.01)  # two a second


async def test_a_config_keeps_its_own_simulator(tmp_path: Path) -> None:
    late = replace(QUIET, receipt_delay=timedelta(seconds=3))
    async with running_service(tmp_path, config=Config(simulator=late)) as h:
        text = await h.text(SENDER, TO)
        await h.clock.advance(2.5)
        assert await h.status_of(text.id) is TextStatus.SENT
        await h.clock.advance(0.5)
        assert await h.status_of(text.id) is TextStatus.DELIVERED


class _Named(Harness):
    """A test module's own helpers over the public harness."""

    def senders(self) -> list[str]:
        return [s.sender for s in self.sent_texts()]


async def test_a_subclass_sees_the_same_running_service(tmp_path: Path) -> None:
    async with running_service(tmp_path) as base:
        h = _Named.of(base)
        assert (h.service, h.clock, h.simulator, h.home) == (
            base.service,
            base.clock,
            base.simulator,
            base.home,
        )
        await h.text(SENDER, TO)
        await h.clock.advance(1.5)
        assert h.senders() == [SENDER]
        assert _Named.of(base).started == base.started  # even after time moved


async def test_advance_until_is_bounded_and_checks_every_step() -> None:
    fake = FakeClock()
    start = fake.now().mono
    checks = 0

    async def check() -> None:
        nonlocal checks
        checks += 1

    async def never() -> bool:
        return False

    with pytest.raises(AssertionError, match=r"not done after 2\.5 simulated seconds"):
        await advance_until(fake, never, step=0.5, max_steps=5, check=check)
    assert fake.now().mono - start == 2.5
    assert checks == 5

    async def after_one_second() -> bool:
        return fake.now().mono - start >= 3.5

    await advance_until(fake, after_one_second, step=0.5)
    assert fake.now().mono - start == 3.5


async def test_advance_at_polls_moves_fake_time_at_each_real_poll() -> None:
    fake = FakeClock()
    start = fake.now().mono

    async def a_second_later() -> bool:
        return fake.now().mono - start >= 1.0

    await advance_at_polls(fake, a_second_later, what="a fake second")
    assert fake.now().mono - start == 1.0

    async def never() -> bool:
        return False

    with pytest.raises(AssertionError, match=r"timed out after 0\.2 s waiting for nothing"):
        await wait_for(never, within=0.2, what="nothing")


async def test_build_service_defaults_to_the_in_memory_store(tmp_path: Path) -> None:
    service = build_service(Config(home=tmp_path), channel=Simulator(config=QUIET))
    assert isinstance(service.store, MemoryStore)
    async with service:
        assert service.started.is_set()
