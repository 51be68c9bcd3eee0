"""A store that refuses writes (a full disk) pauses the service; it never kills it.

The service runs on a real SQLite file on a small tmpfs of its own, with the
simulator, on a fake clock. A filler file takes every free byte of that disk, as
another program would; deleting it is the operator freeing space. The carrier's
log (the judge of what left, and when) lives elsewhere: the carrier's disk is not
ours. Mounting needs root, as CI and the developers' machines have.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from dispatcher import testing
from dispatcher.channels import Accepted, SendRequest
from dispatcher.channels.simulator import Simulator
from dispatcher.config import SimulatorConfig
from dispatcher.control.client import ControlClient
from dispatcher.core.model import Message, TextStatus
from dispatcher.engine.health import REMIND_EVERY
from dispatcher.errors import StoreUnavailable
from dispatcher.store.sqlite import SQLiteStore
from dispatcher.testing import running_service
from tests.helpers import (
    Service,
    cli,
    free_port,
    gaps_by_number,
    send_log,
    wait_for,
)


@contextlib.contextmanager
def small_disk(path: Path, size: str = "8m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` for the test's duration."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.fail(f"these tests mount a small tmpfs, which needs root: {mounted.stderr}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk`` with a filler file; returns its path."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return filler


SENDER = "+14155550100"
OTHER = "+14155550101"
CARRIER = SimulatorConfig(
    latency=timedelta(0),
    latency_jitter=timedelta(0),
    receipt_delay=timedelta(seconds=2),
    receipt_jitter=timedelta(0),
)


class Harness(testing.Harness):
    """The running service, its home on a small disk."""

    @property
    def disk(self) -> Path:
        return self.home

    async def fill_disk(self) -> None:
        """From now on every write that needs more room fails: the disk is full."""
        fill(self.disk)

    async def free_disk(self) -> None:
        (self.disk / "filler").unlink()

    async def probed_again(self) -> None:
        """Let one more probe of the store be refused (a fake second, and the real time
        its write takes)."""
        fault = (await self.service.status()).store_fault
        assert fault is not None
        await self.clock.advance(1.0)

        async def probed() -> bool:
            now = (await self.service.status()).store_fault
            assert now is not None
            return now.probes > fault.probes

        await wait_for(probed, what="a probe of the store")

    async def submit(self, to: str, sender: str = SENDER) -> Message:
        return await self.text(sender, to, "x" * 150)

    async def until(self, done: Callable[[], Awaitable[bool]], what: str) -> None:
        await self.advance_at_polls(done, what=what)

    def sends(self) -> Counter[str]:
        return Counter(str(r["message_id"]) for r in self.simulator.records())


@asynccontextmanager
async def running(home: Path, carrier: type[Simulator] = Simulator) -> AsyncIterator[Harness]:
    with small_disk(home / "disk") as disk:
        async with running_service(
            disk, simulator=CARRIER, store=SQLiteStore(disk / "dispatcher.db"),
            carrier=carrier, carrier_log=home / "carrier.jsonl",
        ) as harness:  # fmt: skip
            yield Harness.of(harness)


def all_in(
    h: Harness, messages: list[Message], status: TextStatus
) -> Callable[[], Awaitable[bool]]:
    async def done() -> bool:
        return all([await h.status_of(m) is status for m in messages])

    return done


async def test_a_receipt_refused_by_a_full_disk_pauses_the_service_and_is_applied_later(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as h:
        texts = [await h.submit(f"+1650555010{i}", sender) for i, sender in
                 enumerate([SENDER, OTHER])]  # fmt: skip
        await h.until(all_in(h, texts, TextStatus.SENT), "both texts Sent")
        await h.fill_disk()
        # The receipts come due now: their writes are refused.
        await h.until(lambda: _faulted(h), "the service to notice the full disk")
        await h.clock.advance(10)
        status = await h.service.status()
        assert status.store_fault is not None
        assert "full" in status.store_fault.error
        with pytest.raises(StoreUnavailable, match="refuses writes"):
            await h.submit("+16505550199")
        assert [await h.status_of(m) for m in texts] == [TextStatus.SENT, TextStatus.SENT]

        await h.free_disk()
        await h.until(all_in(h, texts, TextStatus.DELIVERED), "the receipts to be applied")
        assert (await h.service.status()).store_fault is None
        late = await h.submit("+16505550199")
        await h.until(all_in(h, [late], TextStatus.DELIVERED), "a text after the fault")
    assert h.sends() == Counter({m.id: 1 for m in [*texts, late]})


async def _faulted(h: Harness) -> bool:
    return (await h.service.status()).store_fault is not None


async def test_sending_pauses_on_a_full_disk_says_why_and_resumes_by_itself(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running(tmp_path) as h:
        texts = [await h.submit(f"+165055502{i:02d}") for i in range(8)]
        await h.until(lambda: _sent_count(h, 2), "two sends")
        await h.fill_disk()
        await h.until(lambda: _faulted(h), "the service to notice the full disk")
        stalled = sum(h.sends().values())
        for _ in range(int(3 * REMIND_EVERY) + 5):  # three minutes of a full disk
            await h.probed_again()
        assert sum(h.sends().values()) == stalled  # nothing sent while nothing is kept
        errors = [r for r in caplog.records if r.name == "dispatcher.engine.health"]
        assert [r.getMessage() for r in errors].count("store.unavailable") == 1
        assert 2 <= len(errors) <= 4  # then a reminder at most once a minute
        assert not [r for r in caplog.records if r.exc_info]  # no traceback at all

        await h.free_disk()
        await h.until(all_in(h, texts, TextStatus.DELIVERED), "every text to be delivered")
        assert "store.recovered" in [r.getMessage() for r in caplog.records]
    assert h.sends() == Counter({m.id: 1 for m in texts})  # none lost, none twice
    assert min(gaps_by_number(list(h.simulator.records()))[SENDER]) >= 1.0


class _FillsTheDiskOnSend(Simulator):
    """A carrier that takes the text while the disk fills: the service cannot record
    that it was sent."""

    harness: Harness | None = None
    fill_on: str | None = None  # message id

    async def send(self, request: SendRequest) -> Accepted:
        accepted = await super().send(request)
        if self.harness is not None and request.message_id == self.fill_on:
            await self.harness.fill_disk()
        return accepted


async def test_a_send_whose_record_was_refused_is_reconciled_not_resent(tmp_path: Path) -> None:
    async with running(tmp_path, _FillsTheDiskOnSend) as h:
        assert isinstance(h.simulator, _FillsTheDiskOnSend)
        h.simulator.harness = h
        first = await h.submit("+16505550301")
        h.simulator.fill_on = first.id
        await h.until(lambda: _faulted(h), "the refused record of the send")
        assert await h.status_of(first) is TextStatus.SENDING
        await h.free_disk()
        await h.until(all_in(h, [first], TextStatus.DELIVERED), "the send to be settled")
        history = (await h.service.message(first.id)).history
    assert h.sends() == Counter({first.id: 1})
    assert [e.status for e in history if e.applied][:4] == [
        TextStatus.PENDING, TextStatus.QUEUED, TextStatus.SENDING, TextStatus.SENT,
    ]  # fmt: skip


async def _sent_count(h: Harness, count: int) -> bool:
    return sum(h.sends().values()) >= count


@pytest.mark.acceptance
async def test_dispatcher_serve_on_a_full_disk_stays_up_refuses_work_and_resumes(
    tmp_path: Path,
) -> None:
    numbers = [f"+1415555{i:04d}" for i in range(5)]
    with small_disk(tmp_path / "home", size="16m") as home:
        listen = f"127.0.0.1:{free_port()}"
        service = Service(home, env={"DISPATCHER_HTTP_LISTEN": listen, "DISPATCHER_API_TOKEN": "t"})
        service.log = tmp_path / "serve.log"  # the service's own output is not on that disk
        await service.start()
        accepted: list[str] = []
        try:
            async with ControlClient(service.socket) as client:

                async def submit(i: int) -> None:
                    sender = numbers[i % len(numbers)]
                    answer = await client.call("submit", **{"from": sender},
                                               to=f"+1650555{i:04d}", body=f"text {i}")  # fmt: skip
                    accepted.append(answer["id"])

                for i in range(15):
                    await submit(i)
                fill(home)
                refusal = await _first_refusal(submit, range(15, 2015))
                assert isinstance(refusal, StoreUnavailable), refusal
                assert "refuses writes" in str(refusal)

                async def paused() -> bool:
                    return (await client.call("status"))["store"] is not None

                await wait_for(paused, what="status to say why sending paused")
                refused = cli(home, "send", "--from", numbers[0], "--to", "+16505559999",
                              "--body", "hi", check=False)  # fmt: skip
                assert refused.returncode == 3, refused.stderr
                assert "refuses writes" in refused.stderr
                async with aiohttp.ClientSession() as http:
                    post = await http.post(
                        f"http://{listen}/v1/messages",
                        json={"from": numbers[0], "to": "+16505559998", "body": "hi"},
                        headers={"Authorization": "Bearer t"},
                    )
                    answer = await post.json()
                assert post.status == 503
                assert post.headers["Retry-After"] == "5"
                assert answer["error"]["code"] == "store_unavailable"
                assert service.process is not None
                assert service.process.poll() is None  # up all along

                (home / "filler").unlink()

                async def resumed() -> bool:
                    return (await client.call("status"))["store"] is None

                await wait_for(resumed, what="the service to take work again")
                await submit(9999)

                async def settled() -> bool:
                    counts: dict[str, int] = (await client.call("status"))["counts"]
                    return counts.get("Delivered", 0) == len(accepted)

                await wait_for(settled, what="every accepted text to be delivered")
        finally:
            assert service.stop() == 0
        records = send_log(home)
    assert sorted(r["message_id"] for r in records) == sorted(accepted)  # once each
    gaps = [gap for per in gaps_by_number(records).values() for gap in per]
    assert min(gaps) >= 1.0
    assert "Traceback" not in service.log.read_text()


async def _first_refusal(
    submit: Callable[[int], Awaitable[None]], tries: range
) -> Exception | None:
    """Submit until one is refused (bounded by ``tries``); that refusal."""
    for i in tries:
        try:
            await submit(i)
        except Exception as exc:
            return exc
    return None
