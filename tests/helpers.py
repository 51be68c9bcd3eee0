"""Helpers shared by the end-to-end tests: a real service in a subprocess."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dispatcher.control.client import call
from dispatcher.errors import ServiceUnavailable
from dispatcher.testing import wait_for

__all__ = [
    "DEADLINE",
    "Service",
    "cli",
    "cli_env",
    "cli_json",
    "free_port",
    "gaps_by_number",
    "send_log",
    "wait_for",  # from dispatcher.testing, with the service's other test helpers
]

DEADLINE = 60.0


def cli_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    env["DISPATCHER_HOME"] = str(home)
    env["DISPATCHER_HTTP_LISTEN"] = f"127.0.0.1:{free_port()}"
    return env


# Ports handed to servers the tests start come from below the kernel's ephemeral range, a
# band of their own for each parallel test worker. A port the kernel picks (bind to 0) and
# the probe closes again can be taken by any outgoing connection before the server binds it
# ("address already in use"); below the ephemeral range no client connection is given it,
# and no other worker of the suite hands it out. A process outside the suite's workers (a
# benchmark using these helpers) takes the last band; each process starts at a random place
# in its band, so a second run beside this one (another checkout's suite) rarely meets it.
_PORTS_LOW = 10_000
_BAND = 2_000


def _ephemeral_low() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
    except OSError:
        return 32_768
    return int(text.split()[0])


def _band() -> Iterator[int]:
    bands = max(1, (_ephemeral_low() - _PORTS_LOW) // _BAND)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "").removeprefix("gw")
    index = int(worker) % bands if worker.isdigit() else bands - 1
    start = _PORTS_LOW + index * _BAND
    first = random.randrange(_BAND)  # a place to start in the band
    return itertools.cycle([*range(start + first, start + _BAND), *range(start, start + first)])


_ports = _band()


def free_port() -> int:
    """A loopback TCP port nothing listens on, for a server the test is about to start."""
    for _ in range(_BAND):
        port = next(_ports)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free loopback port in this test worker's band of {_BAND}")


def cli(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real command line, as a user would."""
    result = subprocess.run(
        [sys.executable, "-m", "dispatcher", *args],
        env=cli_env(home),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"dispatcher {' '.join(args)} failed: {result.stderr}")
    return result


def cli_json(home: Path, *args: str) -> Any:
    return json.loads(cli(home, *args, "--json").stdout)


class Service:
    """``dispatcher serve`` as a subprocess on ``home``."""

    def __init__(
        self, home: Path, config: Path | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.home = home
        self.config = config
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.log = home / "serve.log"

    @property
    def socket(self) -> Path:
        return self.home / "dispatcher.sock"

    async def start(self) -> None:
        args = [sys.executable, "-m", "dispatcher", "--home", str(self.home)]
        if self.config is not None:
            args += ["--config", str(self.config)]
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)  # as the service makes it
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
                [*args, "serve"], env={**cli_env(self.home), **self.env}, stdout=log, stderr=log
            )
        await wait_for(self._answers, what="the service to answer ping")

    async def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the service exited early:\n{self.log.read_text()}")
        try:
            await call(self.socket, "ping")
        except ServiceUnavailable:
            return False
        return True

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=DEADLINE)
        self.process = None

    def stop(self) -> int:
        """SIGTERM, then wait for the drain; returns the exit code."""
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=DEADLINE)
        self.process = None
        return code


def send_log(home: Path) -> list[dict[str, Any]]:
    """The simulator's own record of every send it received."""
    path = home / "simulator-sends.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def gaps_by_number(records: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Seconds between consecutive sends of each number, on the simulator's monotonic
    clock (its wall-clock ``at`` may be stepped by time sync)."""
    times: dict[str, list[float]] = defaultdict(list)
    for record in records:
        times[record["from"]].append(float(record["mono"]))
    return {
        number: [b - a for a, b in itertools.pairwise(sorted(ts))] for number, ts in times.items()
    }
