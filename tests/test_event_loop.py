"""The event loop the service runs on: ``[performance] loop``, asyncio or uvloop.

The option is read like every key (file, environment, a clear error naming it);
:func:`dispatcher.runtime.run` runs a coroutine on the loop named; on uvloop no timer
fires before the ``time.monotonic()`` it was set for (uvloop's own timers may, by up
to a millisecond and a half); and the service sends texts on uvloop, on the fake
clock, on the real one, and as ``dispatcher serve``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from datetime import timedelta
from pathlib import Path

import pytest
import uvloop

from dispatcher import runtime
from dispatcher.config import PerformanceConfig, load_config
from dispatcher.control.client import ControlClient
from dispatcher.core.model import TextStatus
from dispatcher.errors import ConfigError
from dispatcher.service import Dispatcher, TextRequest
from dispatcher.testing import QUIET, running_service, wait_for
from tests.helpers import Service, send_log

SENDER = "+14155550100"
RECIPIENT = "+16505550101"

# -- the option ----------------------------------------------------------------------


def test_the_default_loop_is_asyncio() -> None:
    assert load_config(None, env={}).performance == PerformanceConfig(loop="asyncio")


def test_the_loop_is_read_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "dispatcher.toml"
    path.write_text('[performance]\nloop = "uvloop"\n', encoding="utf-8")
    assert load_config(path, env={}).performance.loop == "uvloop"


def test_the_environment_sets_the_loop_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "dispatcher.toml"
    path.write_text('[performance]\nloop = "uvloop"\n', encoding="utf-8")
    env = {"DISPATCHER_PERFORMANCE_LOOP": "asyncio"}
    assert load_config(path, env=env).performance.loop == "asyncio"
    env = {"DISPATCHER_PERFORMANCE_LOOP": "uvloop"}
    assert load_config(None, env=env).performance.loop == "uvloop"


def test_an_unknown_loop_in_the_file_is_an_error_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "dispatcher.toml"
    path.write_text('[performance]\nloop = "trio"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"performance\.loop: 'trio' is not an event loop; "
                       "use asyncio or uvloop") as info:  # fmt: skip
        load_config(path, env={})
    assert info.value.field == "performance.loop"
    assert str(path) in str(info.value)


def test_an_unknown_loop_in_the_environment_is_an_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"performance\.loop: 'fast'") as info:
        load_config(None, env={"DISPATCHER_PERFORMANCE_LOOP": "fast"})
    assert info.value.field == "performance.loop"


def test_a_loop_that_is_not_a_string_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "dispatcher.toml"
    path.write_text("[performance]\nloop = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"performance\.loop must be a string"):
        load_config(path, env={})


# -- runtime.run -----------------------------------------------------------------------


async def _loop_name() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


def test_run_runs_on_the_loop_named() -> None:
    assert runtime.run(_loop_name(), loop="asyncio").startswith("asyncio")
    assert runtime.run(_loop_name()).startswith("asyncio")
    assert runtime.run(_loop_name(), loop="uvloop") == runtime.__name__


def test_the_uvloop_loop_is_uvloop() -> None:
    async def is_uvloop() -> bool:
        return isinstance(asyncio.get_running_loop(), uvloop.Loop)

    assert runtime.run(is_uvloop(), loop="uvloop")


def test_run_refuses_an_unknown_loop() -> None:
    with pytest.raises(ValueError, match="unknown event loop 'trio'"):
        runtime.run(_loop_name(), loop="trio")


def test_no_timer_fires_before_its_time_on_uvloop() -> None:
    """call_at, call_later and sleep, at random sub-millisecond offsets: each wakes at
    or after the ``time.monotonic()`` it was set for (uvloop's own loop: up to 1.5 ms
    before)."""
    rng = random.Random(5)

    async def earliest() -> float:
        loop = asyncio.get_running_loop()
        early = 0.0
        for _ in range(300):
            when = time.monotonic() + rng.uniform(0.0, 0.003)
            fired = loop.create_future()
            loop.call_at(when, fired.set_result, None)
            await fired
            early = max(early, when - time.monotonic())
            delay = rng.uniform(0.0, 0.003)
            fired = loop.create_future()
            set_at = time.monotonic()
            loop.call_later(delay, fired.set_result, None)
            await fired
            early = max(early, set_at + delay - time.monotonic())
            set_at = time.monotonic()
            await asyncio.sleep(delay)
            early = max(early, set_at + delay - time.monotonic())
        return early

    assert runtime.run(earliest(), loop="uvloop") <= 0.0


# -- the service on uvloop --------------------------------------------------------------


def test_the_service_sends_on_uvloop_on_the_fake_clock(tmp_path: Path) -> None:
    async def send() -> tuple[TextStatus, int]:
        async with running_service(tmp_path) as h:
            text = await h.service.submit(
                TextRequest(sender=SENDER, recipient=RECIPIENT, body="on uvloop")
            )
            await h.clock.advance(5)
            status = (await h.service.message(text.message.id)).message.status
            return status, len(list(h.simulator.records()))

    assert runtime.run(send(), loop="uvloop") == (TextStatus.DELIVERED, 1)


def test_the_service_sends_on_uvloop_on_the_real_clock_with_sqlite(tmp_path: Path) -> None:
    config = dataclasses.replace(
        load_config(None, env={}, home=tmp_path),
        simulator=dataclasses.replace(QUIET, receipt_delay=timedelta(milliseconds=10)),
    )

    async def send() -> list[TextStatus]:
        async with Dispatcher.from_config(config) as service:
            ids = [
                (await service.submit(TextRequest(
                    sender=SENDER, recipient=f"+1650555{i:04d}", body="on uvloop"
                ))).message.id
                for i in range(2)
            ]  # fmt: skip

            async def delivered() -> bool:
                statuses = [(await service.message(i)).message.status for i in ids]
                return all(s is TextStatus.DELIVERED for s in statuses)

            await wait_for(delivered, within=30, what="both texts to be delivered")
            return [(await service.message(i)).message.status for i in ids]

    assert runtime.run(send(), loop="uvloop") == [TextStatus.DELIVERED] * 2
    records = send_log(tmp_path)
    assert len(records) == 2
    gap = float(records[1]["mono"]) - float(records[0]["mono"])
    assert gap >= 1.0, gap


def _mapped(pid: int) -> str:
    """The files process ``pid`` has mapped (its shared libraries among them)."""
    return Path(f"/proc/{pid}/maps").read_text(encoding="utf-8")


async def test_dispatcher_serve_runs_on_uvloop_when_configured(tmp_path: Path) -> None:
    service = Service(tmp_path / "home", env={"DISPATCHER_PERFORMANCE_LOOP": "uvloop"})
    await service.start()
    try:
        assert service.process is not None
        assert "uvloop/loop." in _mapped(service.process.pid)  # it loaded uvloop
        async with ControlClient(service.socket) as client:
            await client.call("submit", **{"from": SENDER}, to=RECIPIENT, body="on uvloop")

        async def sent() -> bool:
            return len(send_log(service.home)) == 1

        await wait_for(sent, within=30, what="the text to reach the carrier")
    finally:
        assert service.stop() == 0
    assert [r["to"] for r in send_log(service.home)] == [RECIPIENT]
