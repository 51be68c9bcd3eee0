"""What a user types and reads at the command line: numbers written as people write
them (read in ``DISPATCHER_DEFAULT_REGION``), filters that match nothing (exit 1),
and the bodies and times the human output shows. The commands run as a user runs
them, in subprocesses, against a service in the test's own event loop."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dispatcher.config import Config, load_config
from dispatcher.control.client import ControlClient
from dispatcher.control.server import ControlServer
from dispatcher.service import Dispatcher
from tests.test_cli import CHILD_TIMEOUT, SENDER, SOURCE_ROOT, Run, assert_clean_error, child_env

SLOW = {"DISPATCHER_PACING_DEFAULT_RATE": "0.001"}  # texts stay queued


@pytest.fixture
async def service(home: Path) -> AsyncIterator[Config]:
    """The service with numbers that send once in 1000 s: what is submitted stays
    queued (after the first text of each number)."""
    config = load_config(home=home, env=SLOW)
    running = Dispatcher.from_config(config)
    async with (
        running,
        ControlServer(running, config.socket_path, max_line=config.control.max_line),
    ):
        yield config


async def run(home: Path, *args: str, region: str | None = None) -> Run:
    """``python -m dispatcher --home HOME ARGS``, with ``DISPATCHER_DEFAULT_REGION``."""
    env = child_env()
    if region is not None:
        env["DISPATCHER_DEFAULT_REGION"] = region
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dispatcher", "--home", str(home), *args, env=env, cwd=home,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), CHILD_TIMEOUT)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


async def test_send_and_find_take_national_numbers(home: Path, service: Config) -> None:
    sent = await run(home, "send", "--from", "(555) 000-0001", "--to", "555 010 0001",
                     "--body", "hello\nthere", "--json")  # fmt: skip
    message = sent.json()
    assert (message["from"], message["to"]) == (SENDER, "+15550100001")
    found = await run(home, "find", "555-010-0001")
    assert found.code == 0, found.err
    lines = found.out.splitlines()
    assert lines[0].startswith(f"{message['id']}  ")  # its status: it may have been sent
    assert lines[0].endswith(f"  {SENDER} -> +15550100001")
    assert lines[1].startswith(f"  accepted {message['accepted_at']}, updated ")
    assert lines[2] == "  hello\\nthere"  # the body, on one line
    shown = await run(home, "message", message["id"])
    assert "  body (1 segment): hello\\nthere" in shown.out.splitlines()
    assert f"  accepted {message['accepted_at']}, expires {message['expires_at']}" in shown.out


async def test_national_numbers_are_read_in_the_configured_region(
    home: Path, service: Config
) -> None:
    sent = await run(home, "send", "--from", SENDER, "--to", "07911 123456", "--body", "hi",
                     "--json", region="GB")  # fmt: skip
    assert sent.json()["to"] == "+447911123456"
    found = await run(home, "find", "07911 123456", "--json", region="gb")
    assert [m["id"] for m in found.json()["messages"]] == [sent.json()["id"]]
    status = await run(home, "status", "--number", "(555) 000-0001", "--json")
    assert [n["number"] for n in status.json()["numbers"]] == [SENDER]


async def test_a_number_that_cannot_be_read_names_its_option(home: Path, service: Config) -> None:
    bad = await run(home, "send", "--from", SENDER, "--to", "12", "--body", "hi")
    assert "--to" in assert_clean_error(bad, 2)
    bad_find = await run(home, "find", "not a number")
    assert "NUMBER" in assert_clean_error(bad_find, 2)


async def test_filters_that_match_nothing_say_so_and_exit_1(home: Path, service: Config) -> None:
    texts = await run(home, "find", "+15550100999")
    assert (texts.code, texts.out) == (1, "")
    assert texts.err == "dispatcher: no texts to or from +15550100999\n"
    as_json = await run(home, "find", "+15550100999", "--json")
    assert as_json.code == 1
    assert json.loads(as_json.out) == {"messages": []}
    calls = await run(home, "call", "find", "555 010 0999")
    assert (calls.code, calls.err) == (1, "dispatcher: no calls to +15550100999\n")


async def test_call_place_takes_national_numbers(home: Path, service: Config) -> None:
    placed = await run(home, "call", "place", "--from", "555 000 0100", "--to", "555-020-0001",
                       "--say", "hello", "--json")  # fmt: skip
    call = placed.json()
    assert (call["from"], call["to"]) == ("+15550000100", "+15550200001")
    async with ControlClient(service.socket_path) as client:
        shown = await client.call("call_show", id=call["id"])
    assert shown["to"] == "+15550200001"


async def test_the_readme_s_examples_run_on_the_shipped_configuration(home: Path) -> None:
    shipped = SOURCE_ROOT / "config" / "dispatcher.toml"
    config = load_config(shipped, home=home, env={})
    running = Dispatcher.from_config(config)
    async with (
        running,
        ControlServer(running, config.socket_path, max_line=config.control.max_line),
    ):
        sent = await run(home, "send", "--from", "+15550000001", "--to", "+15550100001",
                         "--body", "Hello", "--json")  # fmt: skip
        assert sent.json()["status"] in {"Queued", "Sending", "Sent", "Delivered"}
        placed = await run(home, "call", "place", "--from", "+15550000100", "--to",
                           "+15550200001", "--script", "reminder", "--json")  # fmt: skip
        assert placed.json()["script_name"] == "reminder"
