"""``dispatcher top``: the frame as a pure function of the service's answers, one frame
(``--once``) and the live view against a real service, in a real pseudo-terminal
(quit keys, Ctrl-C, the terminal's modes restored, a service that goes away), and the
``status`` fields it shows (sends in the last minute, the last errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import os
import re
import signal
import struct
import sys
import termios
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from dispatcher.cli.top import NO_CAMPAIGNS, UNREACHABLE, render
from dispatcher.config import Config
from dispatcher.control.client import ControlClient
from dispatcher.control.protocol import status_json
from dispatcher.store.sqlite import SQLiteStore
from dispatcher.testing import FakeClock, advance_until, running_service
from tests.helpers import DEADLINE, Service, wait_for
from tests.test_cli import (
    OTHER_SENDER,
    SENDER,
    assert_clean_error,
    child_env,
    client,
    dispatcher,
    service,
    submit,
)
from tests.test_scheduler import SENDERS, Harness, all_terminal, quiet_simulator, running

__all__ = ["client", "service"]  # fixtures, shared with the command line's tests

AT = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
SOCKET = "/run/dispatcher/dispatcher.sock"


def iso(seconds: float) -> str:
    return (AT + timedelta(seconds=seconds)).isoformat(timespec="microseconds")


def local(seconds: float) -> str:
    return (AT + timedelta(seconds=seconds)).astimezone().strftime("%H:%M:%S")


def status_answer(**changes: Any) -> dict[str, Any]:
    """A ``status`` answer as the service gives it."""
    answer: dict[str, Any] = {
        "at": iso(0),
        "counts": {"Delivered": 40, "Queued": 9, "Undelivered": 1},
        "in_flight": 1,
        "sent_last_minute": 42,
        "numbers": [
            {
                "number": "+15550000001",
                "depth": 7,
                "next_slot_at": iso(0.4),
                "in_flight": 1,
                "paused": False,
                "rate": 1.0,
                "sent_last_minute": 12,
            },
            {
                "number": "+15550000002",
                "depth": 2,
                "next_slot_at": iso(180),
                "in_flight": 0,
                "paused": True,
                "rate": 1.0,
                "sent_last_minute": 0,
            },
        ],
        "numbers_total": 5,
        "calls": {
            "account": "simulator",
            "counts": {"Completed": 3},
            "queued": 2,
            "in_flight": 1,
            "next_slot_at": iso(0.5),
            "calls_per_second": 1.0,
        },
        "emails": {
            "relay": "simulator://",
            "counts": {"Delivered": 4, "Sent": 2},
            "queued": 3,
            "in_flight": 0,
            "next_slot_at": iso(0.1),
            "per_second": 10.0,
        },
        "recent_errors": [
            {
                "id": "msg_0123456789abcdef0123",
                "number": "+15550000001",
                "to": "+15559990001",
                "status": "Undelivered",
                "reason": "carrier_undelivered",
                "code": "30005",
                "at": iso(-5),
            },
        ],
    }
    return {**answer, **changes}


def frame(status: dict[str, Any] | None, **options: Any) -> str:
    """The frame's text as a 120-column terminal shows it."""
    console = Console(record=True, width=120, file=io.StringIO())
    options.setdefault("socket", SOCKET)
    options.setdefault("refreshed", AT)
    console.print(render(status, **options))
    return console.export_text()


def row(text: str, starts: str) -> list[str]:
    """The words of the line that starts (after spaces) with ``starts``."""
    return next(line.split() for line in text.splitlines() if line.strip().startswith(starts))


# -- the frame ------------------------------------------------------------------------


def test_the_frame_shows_queues_sends_campaigns_and_errors() -> None:
    campaigns = [
        {"id": "cmp_1", "name": "spring", "state": "running", "total": 40, "done": 12,
         "queued": 5, "pending": 23},
        {"id": "cmp_3", "name": "autumn", "state": "paused", "total": 0, "done": 0},
        {"id": "cmp_2", "name": "winter", "state": "finished", "total": 10, "done": 10,
         "queued": 0, "pending": 0},
    ]  # fmt: skip
    text = frame(status_answer(), campaigns=campaigns)

    assert "Delivered 40  Queued 9  Undelivered 1" in text
    assert "in flight 1" in text
    assert "sent in the last minute 42" in text
    assert "queued 2   in flight 1   next slot in 0.5 s" in text  # calls
    assert row(text, "email") == ["email", "Delivered", "4", "Sent", "2", "queued", "3", "in",
                                  "flight", "0", "next", "slot", "in", "0.1", "s"]  # fmt: skip
    assert "deepest queues (2 of 5 numbers)" in text
    # number, depth, next slot, sent in the last minute, in flight, paused
    assert row(text, "+15550000001") == ["+15550000001", "7", "in", "0.4", "s", "12", "1"]
    assert row(text, "+15550000002") == ["+15550000002", "2", local(180), "0", "0", "paused"]
    spring = row(text, "spring (cmp_1)")
    assert spring[2] == "running"
    assert spring[-4:] == ["12/40", "30%", "5", "23"]
    assert row(text, "autumn (cmp_3)")[2:] == ["paused", "0/0", "-", "-", "-"]
    assert "winter" not in text  # finished
    error = ["msg_0123456789abcdef0123", "+15550000001", "Undelivered", "carrier_undelivered",
             "30005"]  # fmt: skip
    assert row(text, local(-5)) == [local(-5), *error]
    assert text.rstrip().splitlines()[-1] == (
        f"service {SOCKET}  ·  refreshed {AT.astimezone():%H:%M:%S}  ·  q to quit"
    )


def test_the_frame_says_why_sending_is_paused_when_the_store_refuses_writes() -> None:
    store = {"since": iso(-30), "error": "database or disk is full", "probes": 29}
    text = frame(status_answer(store=store))
    assert "sending paused: the store refuses writes since" in text
    assert "(database or disk is full)" in text
    assert "sending paused" not in frame(status_answer(store=None))


def test_the_frame_degrades_gracefully() -> None:
    older = status_answer(numbers=[], recent_errors=[], calls=None, emails=None)
    del older["sent_last_minute"]
    text = frame(older, interactive=False)
    assert NO_CAMPAIGNS in text  # None: a service without the campaigns command
    assert "sent in the last minute -" in text
    assert "no sending numbers yet" in text
    assert "no recent errors" in text
    assert "calls" not in text
    assert "email" not in text
    assert "q to quit" not in text

    assert NO_CAMPAIGNS in frame(status_answer(), campaigns=[])
    assert "no running campaigns" in frame(
        status_answer(), campaigns=[{"id": "cmp_2", "state": "draft", "total": 3, "done": 0}]
    )
    assert "campaigns: not allowed [yet]" in frame(status_answer(), campaigns="not allowed [yet]")

    gone = frame(None, refreshed=None)
    assert UNREACHABLE in gone
    assert "refreshed never" in gone
    assert "deepest queues" not in gone
    assert "the service answered: internal error; retrying" in frame(None, problem="internal error")


def test_the_frame_shows_as_many_rows_as_asked() -> None:
    numbers = [
        {"number": f"+1555000{i:04d}", "depth": 10 - i, "next_slot_at": None, "in_flight": 0,
         "paused": False, "sent_last_minute": 0}
        for i in range(6)
    ]  # fmt: skip
    text = frame(status_answer(numbers=numbers, numbers_total=6), numbers=3, errors=0)
    assert "deepest queues (3 of 6 numbers)" in text
    assert row(text, "+15550000002")[1:3] == ["8", "-"]
    assert "+15550000003" not in text
    assert "no recent errors" in text


# -- one frame, against the service ---------------------------------------------------


async def test_once_prints_one_frame_of_the_running_service(
    home: Path, client: ControlClient
) -> None:
    await client.call("pause", number=OTHER_SENDER)
    for to in ("+15550100001", "+15550100002"):
        await submit(client, to, sender=OTHER_SENDER)
    await client.call("dnt_add", number="+15550100003")
    refused = await submit(client, "+15550100003")
    sent = await submit(client, "+15550100004")

    async def left() -> bool:
        status = (await client.call("message", id=sent["id"]))["status"]
        return status not in {"Queued", "Sending"}

    await wait_for(left, within=10, what="the text to leave")
    status = await client.call("status")
    assert status["sent_last_minute"] == 1
    assert {n["number"]: n["sent_last_minute"] for n in status["numbers"]} == {
        SENDER: 1, OTHER_SENDER: 0
    }  # fmt: skip
    assert [(e["id"], e["status"], e["reason"]) for e in status["recent_errors"]] == [
        (refused["id"], "Failed", "do_not_text")
    ]

    run = await dispatcher(home, "top", "--once")
    assert run.code == 0, run.err
    assert "sent in the last minute 1" in run.out
    assert row(run.out, OTHER_SENDER)[1:] == ["2", "-", "0", "0", "paused"]
    assert row(run.out, SENDER)[-2:] == ["1", "0"]  # sent in the last minute, in flight
    assert refused["id"] in run.out
    assert "do_not_text" in run.out
    assert "campaigns" in run.out  # "no campaigns", or the service's campaigns
    assert f"service {home / 'dispatcher.sock'}" in run.out
    assert "q to quit" not in run.out


async def test_at_the_end_of_its_input_top_prints_its_last_frame_and_exits(
    home: Path, service: Config
) -> None:
    run = await dispatcher(home, "top", "--interval", "0.1")  # stdin is /dev/null
    assert run.code == 0, run.err
    assert "deepest queues" in run.out or "no sending numbers yet" in run.out
    assert "q to quit" in run.out


async def test_q_and_enter_quit_when_stdin_is_not_a_terminal(home: Path, service: Config) -> None:
    process = await asyncio.create_subprocess_exec(
        *top_command(home, "--interval", "0.1"), env=child_env(), cwd=home,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdin is not None
    process.stdin.write(b"x\nq\n")  # and the input stays open
    await process.stdin.drain()
    out, err = await asyncio.wait_for(process.communicate(), DEADLINE)
    assert process.returncode == 0, err
    assert b"q to quit" in out


async def test_without_a_service_top_exits_3(home: Path) -> None:
    for args in (["top"], ["top", "--once"]):
        err = assert_clean_error(await dispatcher(home, *args), 3)
        assert "not running" in err
        assert "dispatcher serve" in err


async def test_a_bad_interval_exits_2(home: Path) -> None:
    err = assert_clean_error(await dispatcher(home, "top", "--interval", "0"), 2)
    assert "--interval" in err


# -- live, in a terminal --------------------------------------------------------------

ANSI = re.compile(rb"\x1b(\[[0-9;?]*[A-Za-z]|[()][A-Z0-9]|[=>78])")


def top_command(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "dispatcher", "--home", str(home), "top", *args]


class Terminal:
    """``dispatcher top`` on a pseudo-terminal (120 x 40), as a user runs it."""

    def __init__(
        self, master: int, slave: int, process: asyncio.subprocess.Process, cooked: list[Any]
    ) -> None:
        self.master, self.slave, self.process = master, slave, process
        self.cooked = cooked  # the modes before top: echo, whole lines
        self.output = bytearray()

    def read(self) -> None:
        with contextlib.suppress(OSError):  # EIO once nothing holds the terminal
            self.output += os.read(self.master, 1 << 16)

    def text(self, since: int = 0) -> str:
        return ANSI.sub(b"", bytes(self.output[since:])).decode(errors="replace")

    async def shows(self, words: str, *, since: int = 0) -> None:
        async def shown() -> bool:
            return words in self.text(since)

        await wait_for(shown, within=30, what=f"the terminal to show {words!r}")

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    async def exits(self) -> int:
        """The exit code, polled within a deadline."""

        async def ended() -> bool:
            return self.process.returncode is not None

        await wait_for(ended, within=15, what="top to exit")
        assert self.process.returncode is not None
        return self.process.returncode

    def modes(self) -> int:
        return int(termios.tcgetattr(self.slave)[3])  # the local flags

    def restored(self) -> bool:
        return bool(termios.tcgetattr(self.slave) == self.cooked)

    async def stderr(self) -> str:
        assert self.process.stderr is not None
        return (await self.process.stderr.read()).decode()


@contextlib.asynccontextmanager
async def terminal(home: Path, *args: str) -> AsyncIterator[Terminal]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {k: v for k, v in child_env().items() if k not in {"COLUMNS", "LINES", "NO_COLOR"}}
    cooked = termios.tcgetattr(slave)
    process = await asyncio.create_subprocess_exec(
        *top_command(home, *args), env={**env, "TERM": "xterm-256color"}, cwd=home,
        stdin=slave, stdout=slave, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    term = Terminal(master, slave, process, cooked)
    loop = asyncio.get_running_loop()
    loop.add_reader(master, term.read)
    try:
        yield term
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        loop.remove_reader(master)
        os.close(master)
        os.close(slave)


ECHO_AND_LINES = termios.ECHO | termios.ICANON


async def test_q_quits_and_restores_the_terminal(home: Path, service: Config) -> None:
    async with terminal(home) as term:
        await term.shows("q to quit")
        assert term.modes() & ECHO_AND_LINES == 0  # cbreak: single keys, no echo
        assert "sent in the last minute" in term.text()
        term.type(b"q")
        assert await term.exits() == 0
        assert term.modes() & ECHO_AND_LINES == ECHO_AND_LINES
        assert term.restored()
        assert "Traceback" not in await term.stderr()


async def test_ctrl_c_exits_0_and_restores_the_terminal(home: Path, service: Config) -> None:
    async with terminal(home) as term:
        await term.shows("q to quit")
        term.process.send_signal(signal.SIGINT)
        assert await term.exits() == 0
        assert term.modes() & ECHO_AND_LINES == ECHO_AND_LINES
        assert term.restored()
        assert "Traceback" not in await term.stderr()


async def test_a_service_that_stops_is_shown_as_retrying_until_it_is_back(home: Path) -> None:
    running_service = Service(home)
    await running_service.start()
    try:
        async with terminal(home, "--interval", "0.2") as term:
            await term.shows("q to quit")
            await asyncio.to_thread(running_service.stop)
            await term.shows(UNREACHABLE)
            assert term.process.returncode is None
            mark = len(term.output)
            await running_service.start()
            await term.shows("sent in the last minute", since=mark)
            term.type(b"q")
            assert await term.exits() == 0
            assert term.restored()
            assert "Traceback" not in await term.stderr()
    finally:
        await asyncio.to_thread(running_service.stop)


# -- status: sends in the last minute, the last errors ---------------------------------


async def test_status_counts_sends_of_the_last_minute_and_keeps_the_last_errors(
    tmp_path: Path,
) -> None:
    sim = quiet_simulator(undelivered=["+1555999*"], not_in_service=["+15558880001"])
    async with running(tmp_path, simulator=sim) as h:
        undelivered = await h.submit(SENDERS[0], "+15559990001")
        fine = await h.submit(SENDERS[0], "+15557770001")
        gone = await h.submit(SENDERS[1], "+15558880001")
        await advance_until(h.clock, all_terminal(h, [undelivered, fine, gone]))

        view = await h.service.status()
        assert view.sent_last_minute == 3
        assert {n.number: n.sent_last_minute for n in view.numbers} == {
            SENDERS[0]: 2, SENDERS[1]: 1
        }  # fmt: skip
        answer = status_json(view)
        assert answer["sent_last_minute"] == 3
        assert [n["sent_last_minute"] for n in answer["numbers"]] == [2, 1]
        errors = {e["id"]: e for e in answer["recent_errors"]}
        stored = await h.get(undelivered.id)
        assert errors[undelivered.id] == {
            "id": undelivered.id, "number": SENDERS[0], "to": "+15559990001",
            "status": "Undelivered", "reason": "carrier_undelivered", "code": "30005",
            "at": stored.updated_at.isoformat(timespec="microseconds"),
        }  # fmt: skip
        assert (errors[gone.id]["status"], errors[gone.id]["reason"]) == (
            "Failed",
            "not_in_service",
        )
        assert fine.id not in errors

        await h.clock.advance(60)
        later = await h.service.status()
        assert later.sent_last_minute == 0
        assert [n.sent_last_minute for n in later.numbers] == [0, 0]
        assert [m.id for m in later.recent_errors] == [m.id for m in view.recent_errors]


async def test_status_keeps_only_the_last_20_errors(tmp_path: Path) -> None:
    async with running(tmp_path, simulator=quiet_simulator(undelivered=["+1555999*"])) as h:
        texts = [await h.submit(SENDERS[i % 4], f"+155599900{i:02d}") for i in range(24)]
        await advance_until(h.clock, all_terminal(h, texts))
        errors = (await h.service.status()).recent_errors
        assert len(errors) == 20
        assert {m.status.value for m in errors} == {"Undelivered"}
        assert {m.id for m in errors} < {m.id for m in texts}
        assert [m.updated_at for m in errors] == sorted(
            (m.updated_at for m in errors), reverse=True
        )


async def test_the_last_errors_are_read_from_the_store_after_a_restart(tmp_path: Path) -> None:
    sim = quiet_simulator(undelivered=["+1555999*"], not_in_service=["+15558880001"])
    config = Config(simulator=sim)
    clock = FakeClock()
    async with running_service(tmp_path, config=config, clock=clock,
                               store=SQLiteStore(tmp_path / "d.db")) as first:  # fmt: skip
        h = Harness.of(first)
        texts = [await h.submit(SENDERS[0], "+15559990001"),
                 await h.submit(SENDERS[1], "+15558880001"),
                 await h.submit(SENDERS[2], "+15557770001")]  # fmt: skip
        await advance_until(h.clock, all_terminal(h, texts))
        before = status_json(await h.service.status())["recent_errors"]
    assert {e["id"] for e in before} == {texts[0].id, texts[1].id}

    async with running_service(tmp_path, config=config, clock=clock,
                               store=SQLiteStore(tmp_path / "d.db")) as second:  # fmt: skip
        after = status_json(await second.service.status())["recent_errors"]
        assert after == before  # newest first, with status, reason, code and time
        assert {e["code"] for e in after} == {"30005", "21614"}
        shown = frame(status_answer(recent_errors=after))
        assert texts[0].id in shown
        assert "carrier_undelivered" in shown
        assert "30005" in shown


@pytest.mark.parametrize("answer", [{"numbers": "not a list"}, {"recent_errors": None}])
def test_the_frame_survives_odd_answers(answer: dict[str, Any]) -> None:
    assert "sent in the last minute" in frame(status_answer(**answer))
