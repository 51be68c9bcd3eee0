"""Helpers for tests of code built on the dispatcher: the service, running on a fake clock.

The service runs over the in-memory store and the simulated carrier on a
:class:`FakeClock`, which moves only when the test advances it: an hour of pacing
takes milliseconds and gives the same result on every run. ::

    from dispatcher.core.model import TextStatus
    from dispatcher.testing import running_service

    async def test_a_text_is_delivered(tmp_path):
        async with running_service(tmp_path) as h:
            text = await h.text("+14155550100", "+16505550100", "Hello")

            async def delivered() -> bool:
                return await h.status_of(text.id) is TextStatus.DELIVERED

            await h.advance_until(delivered)
        assert [s.recipient for s in h.sent_texts()] == ["+16505550100"]

More in ``docs/testing.md``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Self

from dispatcher.channels import Channel
from dispatcher.channels.simulator import Simulator
from dispatcher.clock import Clock, FakeClock, Instant, settle
from dispatcher.config import Config, SimulatorConfig
from dispatcher.core.model import Lane, Message, TextStatus
from dispatcher.service import Dispatcher, TextRequest
from dispatcher.store import Store
from dispatcher.store.memory import MemoryStore

__all__ = [
    "QUIET",
    "CallRecord",
    "FakeClock",
    "Harness",
    "SendRecord",
    "advance_at_polls",
    "advance_until",
    "build_service",
    "running_service",
    "settle",
    "wait_for",
]

Done = Callable[[], Awaitable[bool]]

QUIET = SimulatorConfig(
    latency=timedelta(0),
    latency_jitter=timedelta(0),
    receipt_jitter=timedelta(0),
    reorder_rate=0.0,
)
"""A carrier whose timing is fixed: no latency, no jitter, receipts in order 300 ms
after each send, calls answered by a person after 300 ms of ringing."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SendRecord:
    """One text the simulator received (a line of its send log)."""

    message_id: str
    attempt_id: str
    provider_id: str
    sender: str
    recipient: str
    segments: int
    at: datetime  # UTC, on the service's clock
    mono: float  # the same moment on the monotonic clock, on which intervals are measured


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecord:
    """One call the simulator was asked to place (a line of its call log)."""

    call_id: str
    attempt_id: str
    provider_id: str
    sender: str
    recipient: str
    machine_detection: str | None
    at: datetime
    mono: float


async def advance_until(
    clock: FakeClock,
    done: Done,
    *,
    step: float = 0.25,
    max_steps: int = 400,
    check: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Advance ``clock`` ``step`` seconds at a time until ``done()`` holds; fail after
    ``max_steps`` steps. ``check`` (an assertion, say) runs before every step."""
    for _ in range(max_steps):
        if check is not None:
            await check()
        if await done():
            return
        await clock.advance(step)
    raise AssertionError(f"not done after {step * max_steps} simulated seconds")


async def wait_for(predicate: Done, *, within: float = 60.0, what: str = "") -> None:
    """Poll ``predicate`` in real time until it holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what or predicate}")
        await asyncio.sleep(0.05)


async def advance_at_polls(
    clock: FakeClock, done: Done, *, within: float = 60.0, what: str = "", step: float = 0.25
) -> None:
    """Advance ``clock`` one ``step`` at each real-time poll until ``done()`` holds; fail
    after ``within`` real seconds. For stores whose writes take real time (SQLite),
    which a burst of fake seconds would outrun."""

    async def advanced() -> bool:
        if await done():
            return True
        await clock.advance(step)
        return False

    await wait_for(advanced, within=within, what=what)


@dataclass(slots=True)
class Harness:
    """A running service, its fake clock and its simulated carrier, with the helpers
    most tests need. A test module may subclass it to add its own (see :meth:`of`)."""

    service: Dispatcher
    clock: FakeClock
    simulator: Simulator
    home: Path
    started: Instant = field(init=False)  # the clock once the service had started

    def __post_init__(self) -> None:
        self.started = self.clock.now()

    @classmethod
    def of(cls, harness: Harness) -> Self:
        """The same running service, seen through a subclass with more helpers."""
        view = cls(
            service=harness.service,
            clock=harness.clock,
            simulator=harness.simulator,
            home=harness.home,
        )
        view.started = harness.started
        return view

    def now(self) -> datetime:
        """The fake clock's UTC time."""
        return self.clock.now().wall

    async def text(
        self,
        sender: str,
        to: str,
        body: str = "hello there",
        *,
        lane: Lane = Lane.AUTOMATION,
        key: str | None = None,
        validity: timedelta | None = None,
    ) -> Message:
        """Submit a text, as a front would; returns the message as accepted."""
        request = TextRequest(
            sender=sender,
            recipient=to,
            body=body,
            lane=lane,
            idempotency_key=key,
            validity=validity,
        )
        return (await self.service.submit(request)).message

    async def message(self, message_id: str) -> Message:
        return (await self.service.message(message_id)).message

    async def status_of(self, message: Message | str) -> TextStatus:
        """The status of ``message`` (or of the message with this id) as stored now."""
        message_id = message if isinstance(message, str) else message.id
        return (await self.message(message_id)).status

    def sent_texts(self) -> list[SendRecord]:
        """Every text the carrier received, in order."""
        return [
            SendRecord(
                message_id=str(r["message_id"]),
                attempt_id=str(r["attempt_id"]),
                provider_id=str(r["provider_id"]),
                segments=int(r["segments"]),
                **_common(r),
            )
            for r in self.simulator.records()
        ]

    def placed_calls(self) -> list[CallRecord]:
        """Every call the carrier was asked to place, in order."""
        return [
            CallRecord(
                call_id=str(r["call_id"]),
                attempt_id=str(r["attempt_id"]),
                provider_id=str(r["provider_id"]),
                machine_detection=_text_or_none(r.get("machine_detection")),
                **_common(r),
            )
            for r in self.simulator.records(calls=True)
        ]

    async def advance_until(
        self,
        done: Done,
        *,
        step: float = 0.25,
        max_steps: int = 400,
        check: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Advance the fake clock until ``done()`` holds (bounded; see :func:`advance_until`)."""
        await advance_until(self.clock, done, step=step, max_steps=max_steps, check=check)

    async def advance_at_polls(self, done: Done, *, within: float = 60.0, what: str = "") -> None:
        """Advance the fake clock at real-time polls (see :func:`advance_at_polls`)."""
        await advance_at_polls(self.clock, done, within=within, what=what)


def _common(record: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "sender": str(record["from"]),
        "recipient": str(record["to"]),
        "at": datetime.fromisoformat(str(record["at"])),
        "mono": float(record["mono"]),
    }


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def build_service(
    config: Config, *, channel: Channel, store: Store | None = None, clock: Clock | None = None
) -> Dispatcher:
    """The service on ``channel`` over ``store`` (default: a new in-memory store), on
    ``clock`` (default: the real one); not yet open: open it with ``async with``."""
    return Dispatcher(
        config, store=MemoryStore() if store is None else store, channel=channel, clock=clock
    )


@asynccontextmanager
async def running_service(
    home: Path,
    *,
    config: Config | None = None,
    simulator: SimulatorConfig | None = None,
    store: Store | None = None,
    clock: FakeClock | None = None,
    carrier: type[Simulator] = Simulator,
    carrier_log: Path | None = None,
) -> AsyncIterator[Harness]:
    """The service, open, with ``home`` as its home folder, over ``store`` (default: a
    new in-memory store) and the simulated carrier, on ``clock`` (default: a new fake
    clock, at 2026-01-05 15:00 UTC); closed (drained) when the block ends.

    ``config`` sets everything else (default: the defaults); ``simulator`` the carrier
    (default: the config's ``simulator`` section, or :data:`QUIET` when no config is
    given). ``carrier`` is the simulator's class (a subclass can misbehave on cue);
    it logs to ``carrier_log`` (default: ``simulator-sends.jsonl`` in ``home``).
    """
    clock = FakeClock() if clock is None else clock
    base = Config(simulator=QUIET) if config is None else config
    config = dataclasses.replace(
        base, home=home, simulator=base.simulator if simulator is None else simulator
    )
    channel = carrier(
        config=config.simulator, log_path=carrier_log or config.simulator_log, clock=clock
    )
    async with build_service(config, channel=channel, store=store, clock=clock) as service:
        yield Harness(service=service, clock=clock, simulator=channel, home=home)
