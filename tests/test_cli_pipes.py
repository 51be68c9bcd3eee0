"""The command piped into a reader that goes away (``dispatcher status --json | head -2``):
no BrokenPipeError traceback, and the exit status of a Unix tool killed by SIGPIPE
(141), whatever wrote. The commands run as a user runs them, in subprocesses, against
a service in the test's own event loop."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dispatcher.cli.main import EXIT_PIPE
from dispatcher.config import Config, load_config
from dispatcher.control.client import ControlClient
from dispatcher.control.server import ControlServer
from dispatcher.service import Dispatcher
from tests.test_cli import CHILD_TIMEOUT, SENDER, child_env

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix pipes")


@pytest.fixture
async def service(home: Path) -> AsyncIterator[Config]:
    """The service, as ``dispatcher serve`` runs it, inside the test's event loop, with
    one text submitted."""
    config = load_config(home=home, env={})
    running = Dispatcher.from_config(config)
    async with (
        running,
        ControlServer(running, config.socket_path, max_line=config.control.max_line),
    ):
        yield config


async def message_id(config: Config) -> str:
    async with ControlClient(config.socket_path) as client:
        sent = await client.call("submit", **{"from": SENDER, "to": "+15550100001", "body": "hi"})
    return str(sent["id"])


async def into_closed_pipe(home: Path, *args: str) -> tuple[int, str]:
    """Run the command with its output into a pipe whose reader is already gone: its
    exit status and what it wrote on stderr."""
    read, write = os.pipe()
    os.close(read)  # every write to ``write`` now fails with EPIPE
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dispatcher", "--home", str(home), *args,
            env=child_env(), cwd=home, stdin=asyncio.subprocess.DEVNULL, stdout=write,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
    finally:
        os.close(write)
    _, err = await asyncio.wait_for(process.communicate(), CHILD_TIMEOUT)
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_each_command_stops_quietly_when_its_reader_is_gone(
    home: Path, service: Config
) -> None:
    sent = await message_id(service)
    commands = [
        ("status", "--json"), ("status",), ("metrics", "--csv"), ("metrics", "--json"),
        ("message", sent), ("message", sent, "--json"), ("--version",),
    ]  # fmt: skip
    for args in commands:
        code, err = await into_closed_pipe(home, *args)
        assert (code, err) == (EXIT_PIPE, ""), args
    assert EXIT_PIPE == 141
    # argparse writes the help itself and ignores a failed write: quiet, and 0.
    assert await into_closed_pipe(home, "--help") == (0, "")


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("head") is None,
                    reason="needs bash and head")  # fmt: skip
async def test_piped_into_head_prints_the_first_lines_and_no_traceback(
    home: Path, service: Config
) -> None:
    sent = await message_id(service)
    command = shlex.join([sys.executable, "-m", "dispatcher", "--home", str(home)])
    for args, first in [("status --json", "{"), ("metrics --csv", "channel"),
                        (f"message {sent}", sent)]:  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            "bash", "-c", f"set -o pipefail; {command} {args} | head -1",
            env=child_env(), cwd=home, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), CHILD_TIMEOUT)
        # 0 when the output fitted in the pipe before head left, 141 when it did not.
        assert process.returncode in {0, EXIT_PIPE}, err
        assert err.decode() == "", args
        assert out.decode().count("\n") == 1
        assert out.decode().startswith(first) or first in out.decode(), out
