"""One benchmark run: a workload on one pacer, measured from inside its own process.

Each run executes in a fresh interpreter (see ``benchmarks.run``), so peak memory
and CPU time belong to that run alone. Every runner sends through the same
simulator, whose log is the ground truth: the send times are the moments the
sends reached it.

The pacing phase starts when every text is queued (the dispatcher's release, the
peers' first send) and ends when the last one was sent (for the dispatcher: when the
service has closed). Its CPU time counts every process of the runner, children
included (:mod:`benchmarks.cpu`); ingest and start-up are not in it. Every number
sends ``rate`` texts a second: 1 for the makespan rows; more than the service can
send, in total, for the sustained rate (texts a second while every number has texts).

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
from bisect import bisect_left, bisect_right
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiolimiter import AsyncLimiter
from asyncio_throttle.throttler import Throttler

from benchmarks import cpu
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
    rate: float = 1.0  # texts a second per number
    loop: str = "asyncio"  # the event loop (dispatcher.runtime.run)

    @property
    def bound(self) -> float:
        """The lower bound of the makespan: texts - 1 slots of 1 / rate seconds."""
        return (self.texts - 1) / self.rate

    @property
    def hold(self) -> float:
        """A number's slot, with the pacer's guard (1 ms), as the service books it."""
        return 1.0 / self.rate + 0.001


@dataclasses.dataclass(slots=True)
class Phase:
    """The pacing phase: when it began (wall clock) and the CPU used over it."""

    start: datetime | None = None
    began: cpu.Reading | None = None
    used: cpu.Reading | None = None

    def begin(self) -> None:
        self.start = datetime.now().astimezone()
        self.began = cpu.read()

    def end(self) -> None:
        assert self.began is not None, "the phase ended before it began"
        self.used = cpu.read() - self.began


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


async def run_dispatcher(w: Workload, home: Path, phase: Phase) -> dict[str, Any]:
    """Submit everything while sending is held, then release: all texts due at once."""
    base = load_config(home=home, env={})
    pacing = dataclasses.replace(
        base.pacing, max_in_flight=max(64, w.concurrency or 1024), default_rate=w.rate
    )
    config = dataclasses.replace(base, simulator=simulator_config(w.latency_ms), pacing=pacing)
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
        phase.begin()
        d.release()
        deadline = time.monotonic() + 600 + 20 * w.bound  # bounded: a stuck run fails
        while d.texts.sent_count < total or (await d.status(limit=1)).in_flight:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{d.texts.sent_count:,} of {total:,} sent by the deadline")
            await asyncio.sleep(0.05)  # a measurement's poll, off the measured path
    phase.end()  # the service closed: its children ended and were waited for
    return {"order": order, "ingest_s": ingest}


async def run_heap(w: Workload, sim: Simulator, phase: Phase) -> None:
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
            dataclasses.replace(req, handed_off=lambda at: pacer.restore(number, at.mono + w.hold))
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
            pacer.book(number, now + w.hold)
            task = asyncio.create_task(send(queue.popleft()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    pacer = Pacer(clock, due)
    phase.begin()
    for number in queues:
        pacer.wake(number)
    task = asyncio.create_task(pacer.run())
    await done.wait()
    pacer.stop()
    await task


async def run_limited(w: Workload, sim: Simulator, phase: Phase, make: Callable[[], Any]) -> None:
    limiters = {sender(n): make() for n in range(w.numbers)}
    gate = asyncio.Semaphore(w.concurrency) if w.concurrency else None
    phase.begin()

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
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        home = Path(folder)
        log_path = home / "simulator-sends.jsonl"
        phase = Phase()
        extra: dict[str, Any] = {}
        if w.runner == "dispatcher":
            extra = runtime.run(run_dispatcher(w, home, phase), loop=w.loop)
            order = extra.pop("order")
        else:
            order = _run_peer(w, log_path, phase)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        assert phase.start is not None
        assert phase.used is not None
        figures = analyse(log_path, phase.start, order, w)
    per_1k = 1000 / (w.numbers * w.texts)
    return {
        **dataclasses.asdict(w),
        **figures,
        "cpu_per_1k": phase.used.total * per_1k,
        "cpu_children_per_1k": phase.used.children * per_1k,
        "peak_rss_mib": rss,
        **(
            {"ingest_per_s": w.numbers * w.texts / extra["ingest_s"]} if "ingest_s" in extra else {}
        ),
    }


def _run_peer(w: Workload, log_path: Path, phase: Phase) -> dict[str, tuple[int, int]]:
    order = {f"m{n}-{k}": (n, k) for n in range(w.numbers) for k in range(w.texts)}
    period = 1.0 / w.rate

    async def go() -> None:
        async with Simulator(config=simulator_config(w.latency_ms), log_path=log_path) as sim:
            runners: dict[str, Callable[[], Awaitable[None]]] = {
                "heap": lambda: run_heap(w, sim, phase),
                "throttle": lambda: run_limited(
                    w, sim, phase, lambda: Throttler(rate_limit=1, period=period)
                ),
                "aiolimiter": lambda: run_limited(w, sim, phase, lambda: AsyncLimiter(1, period)),
            }
            await runners[w.runner]()
            phase.end()

    runtime.run(go(), loop=w.loop)
    return order


def analyse(
    log_path: Path, start: datetime, order: dict[str, tuple[int, int]], w: Workload
) -> dict[str, Any]:
    """Makespan, spacing violations, FIFO inversions, first-wave time and the sustained
    rate from the log."""
    sends: dict[int, list[tuple[float, int, float]]] = defaultdict(list)
    count = 0
    spacing = 1.0 / w.rate
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
            violations += b - a < spacing
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
        "sustained_per_s": sustained([t for items in sends.values() for t, _, _ in items]),
    }


def sustained(times: list[float]) -> float:
    """Texts a second over the middle of the run (between the sends at 10% and 90% of
    them), where every number still has texts: the ramp and the tail left out."""
    times.sort()
    if len(times) < 10:
        return 0.0
    low, high = times[len(times) // 10], times[len(times) * 9 // 10]
    if high <= low:
        return 0.0
    return (bisect_right(times, high) - bisect_left(times, low)) / (high - low)


def main() -> None:
    runtime.tune()  # as dispatcher serve does
    workload = Workload(**json.loads(sys.argv[1]))
    print(json.dumps(measure(workload)))


if __name__ == "__main__":
    main()
