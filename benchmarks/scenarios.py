"""Ingest, restart, operator latency, HTTP submissions and memory with a large queue.

One service process (this module run as ``python -m benchmarks.scenarios``):
1. bulk-submits ``texts`` texts over ``numbers`` numbers with sending held (ingest
   rate), in a process of its own, which then stops;
2. starts again on the same database, in a new process as a restart is: time until
   every number has sent (restart to full pacing: each number's first send in the
   simulator's log), and its memory with the queue in the store (the service's
   process, and the SQLite writer process's beside it);
3. while those numbers pace, a client in another process measures ``status`` and
   ``message`` round trips over the control socket and single submissions, then
   ``POST /v1/messages`` over 16 connections to the HTTP app on a loopback port, and
   the service's sends a second meanwhile (what the requests' share cost the pacing).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import cpu
from benchmarks.workloads import simulator_config
from dispatcher import runtime
from dispatcher.config import Config, load_config
from dispatcher.control.client import ControlClient
from dispatcher.control.server import ControlServer
from dispatcher.core.model import Lane
from dispatcher.service import Dispatcher, TextRequest
from dispatcher.web.app import HttpServer, WebApp

CHUNK = 10_000
CONNECTIONS = 16  # HTTP connections submitting at once


def _memory() -> dict[str, float]:
    """Resident and peak resident memory of this process, MiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def sender(i: int) -> str:
    return f"+1555{i:07d}"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Sizes:
    texts: int  # queued before the restart
    numbers: int  # over this many numbers
    http_each: int = 300  # submissions each HTTP connection makes
    samples: int = 200  # round trips of each socket command, and single submissions
    loop: str = "asyncio"


def _config(home: Path) -> Config:
    base = load_config(home=home, env={})
    return dataclasses.replace(
        base,
        simulator=simulator_config(0.0),
        pacing=dataclasses.replace(base.pacing, max_in_flight=1024),
    )


async def ingest_side(sizes: Sizes, home: Path) -> dict[str, Any]:
    """Bulk-submit the queue with sending held, in a process of its own: the restart
    that follows is a new process, as it is for a user, and its memory is not the
    ingest's."""
    texts, numbers = sizes.texts, sizes.numbers
    figures: dict[str, Any] = {}
    async with Dispatcher.from_config(_config(home)) as d:
        d.hold()
        started = time.perf_counter()
        for first in range(0, texts, CHUNK):
            requests = [
                TextRequest(
                    sender=sender(i % numbers),
                    recipient=f"+1{6_000_000_000 + i}",
                    body="bulk campaign text",
                    lane=Lane.BULK,
                )
                for i in range(first, min(texts, first + CHUNK))
            ]
            await d.submit_many(requests)
        elapsed = time.perf_counter() - started
        figures["bulk ingest, texts/s (submit_many into SQLite)"] = texts / elapsed
        figures["texts queued"] = texts
        figures["ingest peak RSS (MiB)"] = _memory()["VmHWM"]
    return figures


async def service_side(sizes: Sizes, home: Path, figures: dict[str, Any]) -> dict[str, Any]:
    """Start on the database the ingest left: every number sending, then the operator's
    and the HTTP app's latency while they pace."""
    numbers, texts = sizes.numbers, sizes.texts
    config = _config(home)
    per_number = max(1, texts // numbers)
    # Restart on the same database: the queue is only in the store now.
    token, listen = secrets.token_urlsafe(16), f"127.0.0.1:{_free_port()}"
    started = time.monotonic()
    async with Dispatcher.from_config(config) as d:
        opened = time.monotonic() - started
        deadline = started + 600  # bounded: a restart that never gets there fails
        while d.texts.sent_count < numbers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{d.texts.sent_count:,} sends 600 s after the restart")
            await asyncio.sleep(0.01)
        figures["restart: service open (s)"] = opened
        figures[f"RSS with {texts:,} queued, {numbers:,} numbers pacing (MiB)"] = _memory()["VmRSS"]
        writer = f"the SQLite writer process's RSS with {texts:,} queued, pacing (MiB)"
        figures[writer] = cpu.usage(cpu.WRITER).rss_mib
        webapp = WebApp(d, public_url=f"http://{listen}", twilio_auth_token=None, api_token=token)
        async with ControlServer(d, config.socket_path), HttpServer(webapp, listen):
            sent, began = d.texts.sent_count, time.monotonic()
            client = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "benchmarks.scenarios", "client", json.dumps({
                    "socket_path": str(config.socket_path), "url": f"http://{listen}",
                    "token": token, "each": sizes.http_each, "samples": sizes.samples,
                }), stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, _ = await client.communicate()
            if client.returncode != 0:
                raise RuntimeError(f"the client failed ({client.returncode})")
            figures.update(json.loads(out))
            figures["sends a second while the client measured"] = (d.texts.sent_count - sent) / (
                time.monotonic() - began
            )
        figures["sends during the scenario"] = d.texts.sent_count
    firsts = _first_sends(config.simulator_log, {sender(i) for i in range(numbers)})
    if len(firsts) < numbers:
        raise RuntimeError(f"{numbers - len(firsts):,} numbers never sent after the restart")
    figures["restart: start to every number sending (s)"] = max(firsts.values()) - started
    figures[f"per number queued at start ({numbers:,} numbers)"] = per_number
    return figures


def _first_sends(log: Path, wanted: set[str]) -> dict[str, float]:
    """Each of the ``wanted`` numbers' first send after the restart (monotonic, the
    service's clock: this process's), from the simulator's log."""
    first: dict[str, float] = {}
    with log.open(encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            number = record["from"]
            if number in wanted and number not in first:
                first[number] = float(record["mono"])
                if len(first) == len(wanted):
                    break
    return first


async def client_side(
    socket_path: str, url: str, token: str, each: int, samples: int
) -> dict[str, Any]:
    """Round trips measured from another process while the service paces."""
    figures: dict[str, Any] = {}
    async with ControlClient(Path(socket_path)) as client:
        ids: list[str] = []
        started = time.perf_counter()
        single = samples
        for i in range(single):
            result = await client.call(
                "submit", **{"from": f"+1555{9_000_000 + i % 50:07d}"},
                to=f"+1{7_000_000_000 + i}", body="automation text", priority="automation",
            )  # fmt: skip
            ids.append(result["id"])
        figures["single submissions over one socket connection, texts/s"] = single / (
            time.perf_counter() - started
        )
        for command, args in (("status", {}), ("message", {"id": ids[0]})):
            times = []
            for _ in range(samples):
                t = time.perf_counter()
                await client.call(command, **args)
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            figures[f"socket `{command}` p50 (ms)"] = statistics.median(times)
            figures[f"socket `{command}` p99 (ms)"] = times[int(len(times) * 0.99) - 1]
    figures.update(await http_submissions(url, token, each))
    return figures


async def http_submissions(url: str, token: str, each: int) -> dict[str, Any]:
    """``POST /v1/messages`` from CONNECTIONS clients at once, each ``each`` in turn on
    its own kept-alive connection: submissions a second and each one's latency."""
    headers = {"Authorization": f"Bearer {token}"}
    times: list[float] = []

    async def submit(http: aiohttp.ClientSession, worker: int) -> None:
        for i in range(each):
            to = f"+1{7_100_000_000 + worker * each + i}"
            body = {"from": sender(9_100_000 + worker), "to": to, "body": "automation text",
                    "priority": "automation"}  # fmt: skip
            t = time.perf_counter()
            async with http.post(f"{url}/v1/messages", json=body, headers=headers) as answer:
                await answer.read()
                if answer.status != 201:
                    raise RuntimeError(f"POST /v1/messages answered {answer.status}")
            times.append((time.perf_counter() - t) * 1000)

    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as http:
        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for worker in range(CONNECTIONS):
                group.create_task(submit(http, worker))
        elapsed = time.perf_counter() - started
    times.sort()
    return {
        f"HTTP submissions over {CONNECTIONS} connections, /s": len(times) / elapsed,
        "HTTP submission p50 (ms)": statistics.median(times),
        "HTTP submission p99 (ms)": times[max(0, int(len(times) * 0.99) - 1)],
    }


def main() -> None:
    runtime.tune()  # as dispatcher serve does
    role = sys.argv[1]
    if role == "ingest":
        sizes = Sizes(**json.loads(sys.argv[2]))
        print(json.dumps(runtime.run(ingest_side(sizes, Path(sys.argv[3])), loop=sizes.loop)))
    elif role == "service":
        sizes = Sizes(**json.loads(sys.argv[2]))
        with tempfile.TemporaryDirectory(prefix="bench-") as folder:
            ingest = subprocess.run(  # noqa: S603 - this module, with its own arguments
                [sys.executable, "-m", "benchmarks.scenarios", "ingest", sys.argv[2], folder],
                check=True, stdout=subprocess.PIPE,
            )  # fmt: skip
            figures = json.loads(ingest.stdout)
            figures = runtime.run(service_side(sizes, Path(folder), figures), loop=sizes.loop)
        print(json.dumps(figures))
    else:
        print(json.dumps(asyncio.run(client_side(**json.loads(sys.argv[2])))))


if __name__ == "__main__":
    main()
