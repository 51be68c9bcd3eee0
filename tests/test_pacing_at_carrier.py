"""At least 1.000 s between two sends of one number as the carrier sees them.

The service books a number's next slot from the moment the channel hands the text
over, read by the channel itself, not from the service's earlier read. First on a
fake clock where the process loses the CPU between the two reads, then with the real
service while every core is busy with another process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from dispatcher.channels import Accepted, SendRequest
from dispatcher.channels.simulator import Simulator
from dispatcher.clock import FakeClock
from dispatcher.config import Config, SimulatorConfig
from dispatcher.control.client import ControlClient
from dispatcher.core.model import TextStatus
from dispatcher.service import Dispatcher, TextRequest
from dispatcher.store.memory import MemoryStore
from tests.helpers import Service, gaps_by_number, send_log, wait_for

SENDER = "+14155550100"
QUIET = SimulatorConfig(latency=timedelta(0), latency_jitter=timedelta(0))
STALL = 0.005  # seconds the process is off the CPU between the two reads


class _Preempted(Simulator):
    """Every other send reaches the carrier ``STALL`` after the service read its clock,
    as when the OS takes the CPU from the process between the two."""

    fake: FakeClock | None = None
    count = 0

    async def send(self, request: SendRequest) -> Accepted:
        self.count += 1
        if self.fake is not None and self.count % 2:
            self.fake.stall(STALL)
        return await super().send(request)


async def test_the_next_slot_is_booked_from_the_moment_the_carrier_got_the_text(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    carrier = _Preempted(config=QUIET, log_path=tmp_path / "sim.jsonl", clock=clock)
    carrier.fake = clock
    service = Dispatcher(Config(home=tmp_path), store=MemoryStore(), channel=carrier, clock=clock)
    async with service:
        texts = [
            (await service.submit(TextRequest(
                sender=SENDER, recipient=f"+1650555{i:04d}", body="hi"
            ))).message
            for i in range(6)
        ]  # fmt: skip
        for _ in range(40):
            await clock.advance(0.25)
        statuses = [(await service.message(m.id)).message.status for m in texts]
    assert set(statuses) == {TextStatus.DELIVERED}
    gaps = gaps_by_number(list(carrier.records()))[SENDER]
    assert len(gaps) == 5
    assert min(gaps) >= 1.0, gaps


@contextmanager
def busy_cores(seconds: float) -> Iterator[None]:
    """One process spinning on every core, each ending by itself after ``seconds``."""
    spin = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"
    procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(os.cpu_count() or 1)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


@pytest.mark.acceptance
async def test_no_gap_under_one_second_at_the_carrier_with_every_core_busy(
    tmp_path: Path,
) -> None:
    service = Service(tmp_path / "home")
    await service.start()
    numbers = [f"+1415555{i:04d}" for i in range(20)]
    try:
        with busy_cores(60):
            async with ControlClient(service.socket) as client:
                for n, sender in enumerate(numbers):
                    for i in range(6):
                        await client.call(
                            "submit", **{"from": sender}, to=f"+1650{n:03d}{i:04d}", body="hi"
                        )

            async def all_sent() -> bool:
                return len(send_log(service.home)) >= len(numbers) * 6

            await wait_for(all_sent, within=50, what="every text to reach the carrier")
    finally:
        assert service.stop() == 0
    records = send_log(service.home)
    assert len({r["message_id"] for r in records}) == len(records) == len(numbers) * 6
    gaps = [gap for per in gaps_by_number(records).values() for gap in per]
    assert len(gaps) == len(numbers) * 5
    assert min(gaps) >= 1.0, sorted(gaps)[:5]
