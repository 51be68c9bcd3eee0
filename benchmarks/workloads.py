"""One benchmark run: a workload on one pacer, measured from inside its own process.

Each run executes in a fresh interpreter (see ``benchmarks.run``), so peak memory
and CPU time belong to that run alone. Every runner sends through the same
simulator, whose log is the ground truth: the send times are the moments the
sends reached it.

Runners:
- ``dispatcher``: the real service path: texts submitted into SQLite, then the
  service started on that database (the restart path), the deadline scheduler,
  the simulator, receipts, every transition persisted.
- ``heap``: the same deadline scheduler with in-memory queues, nothing persisted.
- ``throttle``: asyncio-throttle, one ``Throttler`` per number, a task per text.
- ``aiolimiter``: aiolimiter, one ``AsyncLimiter`` per number, a task per text.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import resource
import sys
import tempfile
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiolimiter import AsyncLimiter
from asyncio_throttle.throttler import Throttler

from dispatcher import runtime
from dispatcher.channels import SendRequest
from dispatcher.channels.simulator import Simulator
from dispatcher.clock import SystemClock
from dispatcher.config import SimulatorConfig, load_config
from dispatcher.core.model import Lane
from dispatcher.engine.scheduler import Pacer
from dispatcher.service import Dispatcher, TextRequest


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    runner: str
    numbers: int
    texts: int
    latency_ms: float
    concurrency: int = 0  # peers: 0 = one task per text, unbounded

    @property
    def bound(self) -> float:
        """The lower bound of the makespan: texts - 1 one-second slots."""
        return float(self.texts - 1)


def sender(n: int) -> str:
    return f"+1555{n:07d}"


def recipient(n: int, k: int) -> str:
    return f"+1{6_660_000_000 + n * 100 + k}"  # unique for k < 100


def simulator_config(latency_ms: float) -> SimulatorConfig:
    return SimulatorConfig(
        latency=timedelta(milliseconds=latency_ms),
        latency_jitter=timedelta(0),
        receipt_delay=timedelta(milliseconds=100),
        receipt_jitter=timedelta(milliseconds=100),
        reorder_rate=0.0,
    )


def request(workload: Workload, n: int, k: int) -> SendRequest:
    return SendRequest(
        message_id=f"m{n}-{k}",
        attempt_id=f"a{n}-{k}",
        sender=sender(n),
        recipient=recipient(n, k),
        body="benchmark text",
        segments=1,
        validity=timedelta(hours=10),
    )


# -- runners ---------------------------------------------------------------------------


async def run_dispatcher(w: Workload, home: Path) -> dict[str, Any]:
    """Submit everything while sending is held, then release: all texts due at once."""
    base = load_config(home=home, env={})
    config = dataclasses.replace(
        base,
        simulator=simulator_config(w.latency_ms),
        pacing=dataclasses.replace(base.pacing, max_in_flight=max(64, w.concurrency or 1024)),
    )
    order: dict[str, tuple[int, int]] = {}
    total = w.numbers * w.texts
    async with Dispatcher.from_config(config) as d:
        d.hold()
        ingest_start = time.perf_counter()
        for k in range(w.texts):
            requests = [
                TextRequest(sender=sender(n), recipient=recipient(n, k), body="benchmark text",
                            lane=Lane.BULK)
                for n in range(w.numbers)
            ]  # fmt: skip
            for n, submission in enumerate(await d.submit_many(requests)):
                order[submission.message.id] = (n, k)
        ingest = time.perf_counter() - ingest_start
        start = datetime.now().astimezone()
        d.release()
        while d.texts.sent_count < total or (await d.status(limit=1)).in_flight:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # a measurement's poll, off the measured path
    return {"start": start.isoformat(), "order": order, "ingest_s": ingest}


async def run_heap(w: Workload, sim: Simulator) -> None:
    """The pacer alone over in-memory queues: each key due sends its next request."""
    queues = {sender(n): deque(request(w, n, k) for k in range(w.texts)) for n in range(w.numbers)}
    clock = SystemClock()
    remaining = w.numbers * w.texts
    done = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()

    async def send(req: SendRequest) -> None:
        nonlocal remaining
        # As the dispatcher does: the next slot counts from the moment of the hand-off.
        number = req.sender
        await sim.send(
            dataclasses.replace(req, handed_off=lambda at: pacer.restore(number, at.mono + 1.001))
        )
        remaining -= 1
        if remaining == 0:
            done.set()

    def due(batch: list[tuple[str, float]]) -> None:
        now = clock.now().mono
        for number, _ in batch:
            queue = queues[number]
            if not queue:
                pacer.book(number, None)
                continue
            pacer.book(number, now + 1.001)
            task = asyncio.create_task(send(queue.popleft()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    pacer = Pacer(clock, due)
    for number in queues:
        pacer.wake(number)
    task = asyncio.create_task(pacer.run())
    await done.wait()
    pacer.stop()
    await task


async def run_limited(w: Workload, sim: Simulator, make: Callable[[], Any]) -> None:
    limiters = {sender(n): make() for n in range(w.numbers)}
    gate = asyncio.Semaphore(w.concurrency) if w.concurrency else None

    async def one(req: SendRequest) -> None:
        if gate is not None:
            async with gate, limiters[req.sender]:
                await sim.send(req)
        else:
            async with limiters[req.sender]:
                await sim.send(req)

    async with asyncio.TaskGroup() as group:
        for k in range(w.texts):
            for n in range(w.numbers):
                group.create_task(one(request(w, n, k)))


# -- measuring ---------------------------------------------------------------------------


def measure(w: Workload) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="bench-"))
    log_path = home / "simulator-sends.jsonl"
    cpu0 = time.process_time()
    extra: dict[str, Any] = {}
    if w.runner == "dispatcher":
        extra = asyncio.run(run_dispatcher(w, home))
        start = datetime.fromisoformat(extra.pop("start"))
        order = extra.pop("order")
    else:
        start, order = _run_peer(w, log_path)
    cpu = time.process_time() - cpu0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = analyse(log_path, start, order, w)
    return {
        **dataclasses.asdict(w),
        **figures,
        "cpu_per_1k": cpu / (w.numbers * w.texts) * 1000,
        "peak_rss_mib": rss,
        **(
            {"ingest_per_s": w.numbers * w.texts / extra["ingest_s"]} if "ingest_s" in extra else {}
        ),
    }


def _run_peer(w: Workload, log_path: Path) -> tuple[datetime, dict[str, tuple[int, int]]]:
    order = {f"m{n}-{k}": (n, k) for n in range(w.numbers) for k in range(w.texts)}

    async def go() -> datetime:
        async with Simulator(config=simulator_config(w.latency_ms), log_path=log_path) as sim:
            start = datetime.now().astimezone()
            runners: dict[str, Callable[[], Awaitable[None]]] = {
                "heap": lambda: run_heap(w, sim),
                "throttle": lambda: run_limited(
                    w, sim, lambda: Throttler(rate_limit=1, period=1.0)
                ),
                "aiolimiter": lambda: run_limited(w, sim, lambda: AsyncLimiter(1, 1.0)),
            }
            await runners[w.runner]()
            return start

    return asyncio.run(go()), order


def analyse(
    log_path: Path, start: datetime, order: dict[str, tuple[int, int]], w: Workload
) -> dict[str, Any]:
    """Makespan, spacing violations, FIFO inversions and first-wave time from the log."""
    sends: dict[int, list[tuple[float, int, float]]] = defaultdict(list)
    count = 0
    with log_path.open(encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            number, k = order[record["message_id"]]
            # Offsets from the start on the wall clock, gaps on the monotonic one.
            offset = (datetime.fromisoformat(record["at"]) - start).total_seconds()
            sends[number].append((float(record["mono"]), k, offset))
            count += 1
    violations = inversions = 0
    last = first_wave = 0.0
    for items in sends.values():
        items.sort()
        for (a, ka, _), (b, kb, _) in itertools.pairwise(items):
            violations += b - a < 1.0
            inversions += kb < ka
        first_wave = max(first_wave, items[0][2])
        last = max(last, items[-1][2])
    return {
        "sends": count,
        "expected": w.numbers * w.texts,
        "makespan_s": last,
        "makespan_ratio": last / w.bound,
        "violations": violations,
        "inversions": inversions,
        "first_wave_s": first_wave,
    }


def main() -> None:
    runtime.tune()  # as dispatcher serve does
    workload = Workload(**json.loads(sys.argv[1]))
    print(json.dumps(measure(workload)))


if __name__ == "__main__":
    main()
