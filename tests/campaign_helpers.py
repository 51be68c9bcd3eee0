"""Helpers shared by the campaign tests: contacts files, the service with its campaign
desk on a clock that only moves when told, and the simulator's logs read back as the
ground truth of what was sent (or called), when and from which number."""

from __future__ import annotations

import asyncio
import csv
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from dispatcher import testing
from dispatcher.channels.simulator import Simulator
from dispatcher.clock import FakeClock
from dispatcher.config import CampaignsConfig, Config, SimulatorConfig
from dispatcher.core.campaigns import Campaign, CampaignState, Contact, ContactState
from dispatcher.core.scripts import parse_scripts
from dispatcher.engine.campaigns import CampaignDesk, CampaignSpec, CampaignView
from dispatcher.store.memory import MemoryStore
from dispatcher.testing import running_service

T = TypeVar("T")

POOL = ("+14155550100", "+14155550101")
CARRIER = SimulatorConfig(
    # No latency, no jitter, no reordering: what the simulator does is fixed by the test.
    latency=timedelta(0),
    latency_jitter=timedelta(0),
    receipt_delay=timedelta(milliseconds=300),
    receipt_jitter=timedelta(0),
    reorder_rate=0.0,
    ring=timedelta(milliseconds=300),
)
SCRIPTS = {"reminder": [{"say": "This is a reminder of your appointment tomorrow."}]}
ALL_STATES = tuple(ContactState)
WAITING = (ContactState.PENDING, ContactState.QUEUED)


def ny(index: int) -> str:
    """A contact in New York (area code 212)."""
    return f"+1212555{index:04d}"


def la(index: int) -> str:
    """A contact in Los Angeles (area code 415)."""
    return f"+1415666{index:04d}"


def write_contacts(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> Path:
    """A contacts file: the header line, then one line per row (CSV-quoted as needed)."""
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


@dataclass(frozen=True, slots=True)
class Sent:
    """One line of the simulator's send log (or call log)."""

    item_id: str
    sender: str
    recipient: str
    at: datetime
    mono: float


@dataclass
class Harness(testing.Harness):
    """The running service, with this module's helpers for campaigns."""

    created: list[str] = field(default_factory=list)

    @property
    def desk(self) -> CampaignDesk:
        return self.service.campaigns

    def sends(self) -> list[Sent]:
        return [Sent(item_id=s.message_id, sender=s.sender, recipient=s.recipient, at=s.at,
                     mono=s.mono) for s in self.sent_texts()]  # fmt: skip

    def calls(self) -> list[Sent]:
        return [Sent(item_id=c.call_id, sender=c.sender, recipient=c.recipient, at=c.at,
                     mono=c.mono) for c in self.placed_calls()]  # fmt: skip

    def contacts_file(self, rows: Iterable[Sequence[str]], header: Sequence[str] = ("phone",
                      "name"), name: str = "contacts.csv") -> Path:  # fmt: skip
        return write_contacts(self.home / name, header, rows)

    async def create(self, contacts: Path, **options: Any) -> Campaign:
        """A campaign from ``contacts`` (defaults: a text to ``{name}`` from the pool),
        its import finished."""
        spec = CampaignSpec(
            name=options.pop("name", "spring"),
            contacts=contacts,
            template=options.pop("template", "Hi {name}, our spring sale starts today."),
            senders=options.pop("senders", POOL),
            **options,
        )
        campaign = await self.desk.create(spec)
        self.created.append(campaign.id)
        await self.imported(campaign.id)
        return campaign

    async def imported(self, campaign_id: str, *, within: float = 30.0) -> CampaignView:
        """Wait (in real time: the import reads the file in threads) for the import."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            view = await self.desk.view(campaign_id)
            if view.progress is None or view.progress.done:
                return view
            if loop.time() > deadline:
                raise AssertionError(f"the import of {campaign_id} did not end in {within} s")
            await asyncio.sleep(0.01)

    async def view(self, campaign_id: str) -> CampaignView:
        return await self.desk.view(campaign_id)

    async def state(self, campaign_id: str) -> CampaignState:
        return (await self.desk.get(campaign_id)).state

    async def contacts(self, campaign_id: str) -> list[Contact]:
        return await self.service.store.contacts_in(campaign_id, ALL_STATES, 1_000_000)

    async def during(self, work: Awaitable[T], *, step: float = 0.05, max_steps: int = 400) -> T:
        """Run an operator verb while the clock moves: withdrawing a queued text waits
        for its number's lock, which the pacer holds until the slot it is waiting for."""
        task = asyncio.ensure_future(work)
        for _ in range(max_steps):
            if task.done():
                return task.result()
            await self.clock.advance(step)
        task.cancel()
        raise AssertionError(f"{work} did not end in {step * max_steps} simulated seconds")

    async def advance_until(
        self,
        done: Callable[[], Awaitable[bool]],
        *,
        step: float = 0.25,
        max_steps: int = 2000,
        check: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Advance ``step`` seconds at a time until ``done()`` holds (bounded); ``check``
        runs at every step."""
        await super().advance_until(done, step=step, max_steps=max_steps, check=check)

    async def until_state(
        self, campaign_id: str, *states: CampaignState, step: float = 0.25, max_steps: int = 2000
    ) -> None:
        async def reached() -> bool:
            return await self.state(campaign_id) in states

        await self.advance_until(reached, step=step, max_steps=max_steps)

    async def until_sent(self, n: int, *, step: float = 0.25, max_steps: int = 2000) -> None:
        async def enough() -> bool:
            return len(self.sends()) >= n

        await self.advance_until(enough, step=step, max_steps=max_steps)


def campaigns_config(**overrides: Any) -> CampaignsConfig:
    return replace(CampaignsConfig(), **overrides)


@asynccontextmanager
async def running(
    home: Path,
    *,
    start: datetime | None = None,
    campaigns: CampaignsConfig | None = None,
    store: MemoryStore | None = None,
    simulator: SimulatorConfig = CARRIER,
    channel: type[Simulator] = Simulator,
) -> AsyncIterator[Harness]:
    """The service over the in-memory store and the simulator, on a fake clock that
    starts at ``start`` (default 2026-01-05 15:00 UTC: 10:00 in New York, 07:00 in
    Los Angeles)."""
    config = Config(
        campaigns=campaigns or CampaignsConfig(),
        scripts=parse_scripts(SCRIPTS, where="test"),
    )
    async with running_service(
        home, config=config, simulator=simulator, store=store, clock=FakeClock(start),
        carrier=channel,
    ) as harness:  # fmt: skip
        yield Harness.of(harness)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def per_recipient(sent: Sequence[Sent]) -> Counter[str]:
    return Counter(s.recipient for s in sent)


def min_gap_by_sender(sent: Sequence[Sent]) -> dict[str, float]:
    """The smallest interval between two sends (or calls) of each number, in seconds on
    the simulator's monotonic clock."""
    times: dict[str, list[float]] = {}
    for s in sent:
        times.setdefault(s.sender, []).append(s.mono)
    gaps: dict[str, float] = {}
    for sender, monos in times.items():
        monos.sort()
        gaps[sender] = min((b - a for a, b in itertools.pairwise(monos)), default=float("inf"))
    return gaps
