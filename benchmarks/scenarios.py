"""Ingest, restart, operator latency and memory with a large queue.

One service process (this module run as ``python -m benchmarks.scenarios``):
1. bulk-submits ``texts`` texts over 10,000 numbers with sending held (ingest rate);
2. stops, and starts again on the same database: time until every number has sent
   (restart to full pacing), and its memory with the queue in the store;
3. while those numbers pace, a client in another process measures ``status`` and
   ``message`` round trips over the control socket, and single submissions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.workloads import simulator_config
from dispatcher import runtime
from dispatcher.config import load_config
from dispatcher.control.client import ControlClient
from dispatcher.control.server import ControlServer
from dispatcher.core.model import Lane
from dispatcher.service import Dispatcher, TextRequest

NUMBERS = 10_000
CHUNK = 10_000


def _memory() -> dict[str, float]:
    """Resident and peak resident memory of this process, MiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


async def service_side(texts: int, home: Path) -> dict[str, Any]:
    base = load_config(home=home, env={})
    config = dataclasses.replace(
        base,
        simulator=simulator_config(0.0),
        pacing=dataclasses.replace(base.pacing, max_in_flight=1024),
    )
    figures: dict[str, Any] = {}
    per_number = max(1, texts // NUMBERS)
    async with Dispatcher.from_config(config) as d:
        d.hold()
        started = time.perf_counter()
        for first in range(0, texts, CHUNK):
            requests = [
                TextRequest(
                    sender=f"+1555{i % NUMBERS:07d}",
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
    # Restart on the same database: the queue is only in the store now.
    started = time.perf_counter()
    async with Dispatcher.from_config(config) as d:
        opened = time.perf_counter() - started
        while d.texts.sent_count < NUMBERS:  # noqa: ASYNC110 - a measurement's poll, 10 ms
            await asyncio.sleep(0.01)
        figures["restart: service open (s)"] = opened
        figures["restart: start to every number sending (s)"] = time.perf_counter() - started
        figures[f"RSS with {texts:,} queued, {NUMBERS:,} numbers pacing (MiB)"] = _memory()["VmRSS"]
        async with ControlServer(d, config.socket_path):
            client = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "benchmarks.scenarios", "client", str(config.socket_path),
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, _ = await client.communicate()
            figures.update(json.loads(out))
        figures["sends during the scenario"] = d.texts.sent_count
    figures[f"per number queued at start ({NUMBERS:,} numbers)"] = per_number
    return figures


async def client_side(socket: Path) -> dict[str, Any]:
    """Round trips measured from another process while the service paces."""
    figures: dict[str, Any] = {}
    async with ControlClient(socket) as client:
        ids: list[str] = []
        started = time.perf_counter()
        single = 300
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
            for _ in range(200):
                t = time.perf_counter()
                await client.call(command, **args)
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            figures[f"socket `{command}` p50 (ms)"] = statistics.median(times)
            figures[f"socket `{command}` p99 (ms)"] = times[int(len(times) * 0.99) - 1]
    return figures


def run_all(texts: int, timeout: float) -> dict[str, Any]:
    done = subprocess.run(  # noqa: S603 - our own module, arguments we built
        [sys.executable, "-m", "benchmarks.scenarios", "service", str(texts)],
        capture_output=True,
        text=True,
        timeout=timeout * 4,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"scenarios failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    runtime.tune()  # as dispatcher serve does
    role = sys.argv[1]
    if role == "service":
        home = Path(tempfile.mkdtemp(prefix="bench-"))
        print(json.dumps(asyncio.run(service_side(int(sys.argv[2]), home))))
    else:
        print(json.dumps(asyncio.run(client_side(Path(sys.argv[2])))))


if __name__ == "__main__":
    main()
