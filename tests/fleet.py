"""A fleet of ``dispatcher serve`` workers on one PostgreSQL database, and its judge.

:class:`Fleet` starts N worker processes against one database, each with its own home
folder (control socket, ``serve.log``, the simulator's send log) and its own HTTP
address on loopback, all sending to one carrier (``[simulator] fleet_log``: the
record a worker that takes a number over asks about a text left Sending); it submits
texts through the workers' control sockets, waits (polling the database, with a
deadline) until every text has a final status, and can hurt the workers and the
database while they send: ``kill -9`` of a worker and its restart, ``kill -STOP``
then ``kill -CONT``, a restart of the cluster.

:func:`judge` merges the simulators' send logs (the ground truth: a send is logged
the moment it reaches the carrier, with its time on the machine's monotonic clock,
which every worker on one machine shares) and checks, across the workers:

- every number's sends at least 1.000 s apart;
- first in, first out per number (one lane: the order the texts were submitted);
- no text sent twice, except those whose outcome was unknown to a worker (its
  ``outcome_unknown`` log lines), counted as such;
- every accepted text accounted for: a final status, and in the logs once unless it
  ended unsent.

A broken invariant fails with a message naming the number and the two sends. Used by
``tests/test_fleet.py`` (small runs) and ``benchmarks/fleet.py`` (the full-size runs
and the scale-out figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from dispatcher.control.client import ControlClient, call
from dispatcher.core.model import TERMINAL, TextStatus
from dispatcher.errors import ServiceUnavailable
from tests.helpers import cli_env

REFUSED = "another dispatcher service already runs on the database"
SPACING = 1.0  # seconds between two sends of one number, at least
START_WITHIN = 60.0  # seconds a worker has to answer ping once started
SUBMITTERS = 8  # control connections submitting at once
READ_EVERY = 5.0  # seconds between two reads of every text's status while some are not final


class SecondWorkerRefused(Exception):
    """The database takes one service only: a second worker was refused at start."""


def sender(i: int) -> str:
    """The ``i``-th sending number."""
    return f"+1555{i:07d}"


def recipient(number: int, text: int) -> str:
    """A recipient of its own for every text (the same-second rule never applies)."""
    return f"+1{6_000_000_000 + number * 100_000 + text}"


@dataclass(slots=True)
class Worker:
    """One ``dispatcher serve`` process on its own home folder."""

    index: int
    home: Path
    url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def socket(self) -> Path:
        return self.home / "dispatcher.sock"

    @property
    def log(self) -> Path:
        return self.home / "serve.log"

    @property
    def sends(self) -> Path:
        return self.home / "simulator-sends.jsonl"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self) -> None:
        """Start the process (a fresh HTTP port on loopback at every start)."""
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        env = {**cli_env(self.home), "DISPATCHER_STORE_URL": self.url,
               "DISPATCHER_LOG_FORMAT": "json", **self.env}  # fmt: skip
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dispatcher", "--home", str(self.home), "serve"],
                env=env, stdout=log, stderr=log,
            )  # fmt: skip
        self.starts += 1

    async def ready(self, within: float = START_WITHIN) -> None:
        """Wait until the worker answers ``ping``; :class:`SecondWorkerRefused` when it
        stopped saying another service holds the database."""
        deadline = time.monotonic() + within
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                said = self.log.read_text(errors="replace")
                self.process = None
                if REFUSED in said:
                    raise SecondWorkerRefused(said.strip().splitlines()[-1][-600:])
                raise AssertionError(f"worker {self.index} exited at start:\n{said[-4000:]}")
            with contextlib.suppress(ServiceUnavailable, OSError):
                await call(self.socket, "ping")
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"worker {self.index} did not answer ping in {within} s")
            await asyncio.sleep(0.05)

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        os.kill(self.process.pid, sig)

    def kill9(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=START_WITHIN)
        self.process = None

    def stop(self) -> int:
        """SIGTERM (after SIGCONT, should it be stopped), then wait; the exit code."""
        if self.process is None:
            return 0
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=START_WITHIN)
        except subprocess.TimeoutExpired:
            self.kill9()
            return -int(signal.SIGKILL)
        self.process = None
        return code


@dataclass(frozen=True, slots=True)
class Submitted:
    """The texts accepted, per number in submission order."""

    by_number: dict[str, list[str]]

    @property
    def ids(self) -> list[str]:
        return [i for ids in self.by_number.values() for i in ids]


@dataclass(slots=True)
class Fleet:
    """N workers on the database ``url``, their homes under ``root``."""

    url: str
    root: Path
    size: int
    env: dict[str, str] = field(default_factory=dict)
    workers: list[Worker] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)  # what was done to it, for messages
    kills: list[tuple[int, float]] = field(default_factory=list)  # (worker, monotonic)

    @property
    def fleet_log(self) -> Path:
        """The carrier's record of every text it received, shared by the workers."""
        return self.root / "fleet-sends.jsonl"

    async def start(self) -> None:
        """Start every worker; the first alone, so it migrates the database.
        :class:`SecondWorkerRefused` (every worker stopped) when the database takes one."""
        env = {"DISPATCHER_SIMULATOR_FLEET_LOG": str(self.fleet_log), **self.env}
        self.workers = [Worker(i, self.root / f"w{i}", self.url, env)
                        for i in range(self.size)]  # fmt: skip
        self.workers[0].spawn()
        await self.workers[0].ready()
        for worker in self.workers[1:]:
            worker.spawn()
        try:
            for worker in self.workers[1:]:
                await worker.ready()
        except SecondWorkerRefused:
            self.stop()
            raise

    def stop(self) -> list[int]:
        return [worker.stop() for worker in self.workers]

    def said(self, codes: list[int]) -> str:
        """The end of the log of each worker whose exit code in ``codes`` is not 0."""
        return "\n".join(
            f"worker {worker.index} exited {code}:\n"
            f"{worker.log.read_text(errors='replace')[-2000:]}"
            for worker, code in zip(self.workers, codes, strict=True)
            if code != 0
        )

    def alive(self) -> list[Worker]:
        return [w for w in self.workers if w.alive]

    def exited(self) -> list[str]:
        """The workers that ended by themselves (not stopped or killed by the harness):
        each with its exit code and the last line of its log."""
        ended = []
        for worker in self.workers:
            if worker.process is not None and (code := worker.process.poll()) is not None:
                said = worker.log.read_text(errors="replace").strip().splitlines()
                ended.append(
                    f"worker {worker.index} exited {code}: {said[-1][-300:] if said else ''}"
                )
        return ended

    async def submit(self, numbers: int, texts: int) -> Submitted:
        """``texts`` texts on each of ``numbers`` numbers, one lane, a number's texts in
        order, through the running workers' sockets in turn."""
        by_number: dict[str, list[str]] = {sender(n): [] for n in range(numbers)}
        order = [(n, t) for t in range(texts) for n in range(numbers)]
        # A number's texts are submitted by one connection, in order (FIFO is per
        # number), so connection i takes the numbers n with n % SUBMITTERS == i.
        lanes = [[(n, t) for n, t in order if n % SUBMITTERS == i] for i in range(SUBMITTERS)]
        alive = self.alive()

        async def submit(i: int, items: list[tuple[int, int]]) -> None:
            async with ControlClient(alive[i % len(alive)].socket) as client:
                for n, t in items:
                    answer = await client.call("submit", **{"from": sender(n)},
                                               to=recipient(n, t), body=f"text {t}")  # fmt: skip
                    by_number[sender(n)].append(answer["id"])

        async with asyncio.TaskGroup() as group:
            for i, items in enumerate(lanes):
                if items:
                    group.create_task(submit(i, items))
        return Submitted(by_number)

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record] | None:
        """``query``'s rows on a connection of its own; None while the database does
        not answer."""
        try:
            connection = await asyncpg.connect(self.url, timeout=5)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return None
        try:
            rows: list[asyncpg.Record] = await connection.fetch(query, *args)
        except (OSError, asyncpg.PostgresError):
            return None
        finally:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                await connection.close()
        return rows

    async def statuses(self, ids: list[str]) -> dict[str, str] | None:
        """Every text's status in the database; None while it does not answer."""
        rows = await self._fetch("SELECT id, status FROM messages WHERE id = ANY($1::text[])", ids)
        return None if rows is None else {row["id"]: row["status"] for row in rows}

    async def unsettled(self) -> int | None:
        """How many texts of the database have no final status yet (one count, cheap
        beside reading every text's status); None while it does not answer."""
        rows = await self._fetch(
            "SELECT count(*) AS n FROM messages WHERE status <> ALL($1::text[])",
            [s.value for s in TERMINAL],
        )
        return None if rows is None else int(rows[0]["n"])

    async def settled(self, submitted: Submitted, within: float) -> dict[str, str]:
        """Poll until every text has a final status; fails after ``within`` seconds
        saying how many are where. Every status is read when the database counts no text
        unsettled, and every :data:`READ_EVERY` s whatever it counts (texts other than
        these may be in it): reading them at every poll was the run's heaviest statement
        on the database the workers share (30,000 rows each 0.2 s, at full size)."""
        deadline = time.monotonic() + within
        final = {s.value for s in TERMINAL}
        seen: dict[str, str] = {}
        read_at = time.monotonic() + READ_EVERY
        while True:
            if await self.unsettled() == 0 or time.monotonic() >= read_at:
                read_at = time.monotonic() + READ_EVERY
                found = await self.statuses(submitted.ids)
                if found is not None:
                    seen = found
                    if len(seen) == len(submitted.ids) and set(seen.values()) <= final:
                        return seen
            if time.monotonic() > deadline:
                if (found := await self.statuses(submitted.ids)) is not None:
                    seen = found
                counts: dict[str, int] = defaultdict(int)
                for status in seen.values():
                    counts[status] += 1
                raise AssertionError(
                    f"not every text reached a final status within {within} s: "
                    f"{dict(counts)} of {len(submitted.ids)} (faults: {self.faults}; "
                    f"workers that ended by themselves: {self.exited() or 'none'})"
                )
            await asyncio.sleep(0.2)

    def records(self) -> list[dict[str, Any]]:
        """Every send of every worker (its homes' simulator logs), with ``worker``."""
        merged = []
        for worker in self.workers:
            if not worker.sends.exists():
                continue
            text = worker.sends.read_text()
            lines = text[: text.rfind("\n") + 1].splitlines()  # the last may be half written
            merged += [{**json.loads(line), "worker": worker.index} for line in lines if line]
        return merged

    def logged(self, event: str) -> list[dict[str, Any]]:
        """The workers' log entries whose event ends with ``event`` (JSON lines)."""
        found = []
        for worker in self.workers:
            if not worker.log.exists():
                continue
            for line in worker.log.read_text(errors="replace").splitlines():
                if event not in line or not line.startswith("{"):
                    continue
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if str(entry.get("event", "")).endswith(event):
                        found.append(entry)
        return found

    def unknown_outcomes(self) -> set[str]:
        """The texts a worker logged an unknown outcome for (``*.outcome_unknown``)."""
        return {str(entry.get("id")) for entry in self.logged("outcome_unknown")}


# -- faults ------------------------------------------------------------------------------


async def _pause(done: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` unless ``done`` is set first; whether it was."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), seconds)
    return done.is_set()


async def kill_every(
    fleet: Fleet, done: asyncio.Event, *, every: float, down: float, seed: int = 1
) -> int:
    """``kill -9`` a random running worker every ``every`` seconds and start it again
    ``down`` seconds later, until ``done``; the kills."""
    rng = random.Random(seed)
    kills = 0
    while not await _pause(done, every):
        alive = fleet.alive()
        if not alive:
            continue
        victim = rng.choice(alive)
        victim.kill9()
        kills += 1
        fleet.kills.append((victim.index, time.monotonic()))
        fleet.faults.append(f"kill -9 worker {victim.index} at {time.monotonic():.3f}")
        await _pause(done, down)
        victim.spawn()
        await victim.ready()
    return kills


@dataclass(frozen=True, slots=True)
class Stall:
    """A worker stopped (``kill -STOP``) from ``stopped`` to ``resumed`` (monotonic)."""

    worker: int
    stopped: float
    resumed: float


async def stall(fleet: Fleet, worker: Worker, seconds: float) -> Stall:
    """``kill -STOP`` the worker for ``seconds``, then ``kill -CONT``."""
    worker.signal(signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        await asyncio.sleep(seconds)
    finally:
        worker.signal(signal.SIGCONT)
    resumed = time.monotonic()
    fleet.faults.append(f"kill -STOP worker {worker.index} {stopped:.3f} to {resumed:.3f}")
    return Stall(worker.index, stopped, resumed)


async def first_sends(fleet: Fleet, count: int, within: float = 60.0) -> None:
    """Wait until the workers have sent ``count`` texts in all."""
    deadline = time.monotonic() + within
    while len(fleet.records()) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"fewer than {count} sends within {within} s")
        await asyncio.sleep(0.05)


# -- the judge ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the merged send logs show."""

    sends: int
    texts: int
    numbers: int
    min_gap: float  # the smallest gap between two sends of one number, seconds
    unknown_resent: int  # texts sent twice after an unknown outcome (counted)
    unknown: int  # texts a worker logged an unknown outcome for
    by_worker: dict[int, int]  # sends per worker

    def line(self) -> str:
        return (f"{self.sends} sends of {self.texts} texts over {self.numbers} numbers, "
                f"smallest gap {self.min_gap:.3f} s, {self.unknown} unknown outcomes "
                f"({self.unknown_resent} resent), per worker {self.by_worker}")  # fmt: skip


def _send(record: dict[str, Any]) -> str:
    return (f"message {record['message_id']} (attempt {record['attempt_id']}, worker "
            f"{record['worker']}, at {record['at']}, monotonic {record['mono']:.6f})")  # fmt: skip


def _by_number(records: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        grouped[record["from"]].append(record)
    for sends in grouped.values():
        sends.sort(key=lambda r: float(r["mono"]))
    return grouped


@dataclass(frozen=True, slots=True)
class Breaches:
    """Every broken invariant of spacing, order and sending once the merged send logs
    show (a message naming the number and the two sends each), with what the judge
    needs besides: each text's first send, the gaps, the counted resends."""

    violations: list[str]  # two sends of one number less than SPACING apart
    inversions: list[str]  # a number's texts first sent out of submission order
    twice: list[str]  # a text sent again with no unknown outcome logged for it
    firsts: dict[str, dict[str, Any]]  # each text's first send
    gaps: list[float]  # every gap between two sends of one number, seconds
    resent: int  # texts sent twice after an unknown outcome (counted)
    unknown: set[str]  # texts a worker logged an unknown outcome for

    @property
    def min_gap(self) -> float:
        return min(self.gaps, default=float("inf"))

    def counts(self) -> str:
        """``violations / inversions / sent twice``."""
        return f"{len(self.violations)} / {len(self.inversions)} / {len(self.twice)}"


def breaches(
    fleet: Fleet, submitted: Submitted, records: list[dict[str, Any]] | None = None
) -> Breaches:
    """What the merged send logs (``records``, else read now) show, every breach
    counted, none raised: the judge of a run whose texts are not all final (cut short,
    or past its limit)."""
    records = fleet.records() if records is None else records
    faults = f" (faults: {fleet.faults})" if fleet.faults else ""
    grouped = _by_number(records)
    gaps, violations = _spaced(grouped, faults)
    unknown = fleet.unknown_outcomes()
    firsts, resent, twice = _once(records, unknown, faults)
    inversions = _in_order(submitted, grouped, firsts, faults)
    return Breaches(violations=violations, inversions=inversions, twice=twice, firsts=firsts,
                    gaps=gaps, resent=resent, unknown=unknown)  # fmt: skip


def judge(fleet: Fleet, submitted: Submitted, statuses: dict[str, str]) -> Verdict:
    """Check the invariants on the merged send logs; AssertionError naming the number
    and the two sends (or the text) of the first broken one."""
    records = fleet.records()
    faults = f" (faults: {fleet.faults})" if fleet.faults else ""
    found = breaches(fleet, submitted, records)
    for broken in (found.violations, found.twice, found.inversions):
        if broken:
            raise AssertionError(broken[0])
    _accounted(submitted, statuses, found.firsts, faults)
    by_worker: dict[int, int] = defaultdict(int)
    for record in records:
        by_worker[record["worker"]] += 1
    return Verdict(
        sends=len(records), texts=len(submitted.ids), numbers=len({r["from"] for r in records}),
        min_gap=found.min_gap, unknown_resent=found.resent,
        unknown=len(found.unknown & set(submitted.ids)), by_worker=dict(sorted(by_worker.items())),
    )  # fmt: skip


def _spaced(grouped: dict[str, list[dict[str, Any]]], faults: str) -> tuple[list[float], list[str]]:
    """Every gap between two sends of one number, and those under ``SPACING``."""
    gaps, violations = [], []
    for number, sends in grouped.items():
        for a, b in itertools.pairwise(sends):
            gap = float(b["mono"]) - float(a["mono"])
            gaps.append(gap)
            if gap < SPACING:
                violations.append(f"number {number}: two sends {gap:.6f} s apart: "
                                  f"{_send(a)} then {_send(b)}{faults}")  # fmt: skip
    return gaps, violations


def _once(
    records: list[dict[str, Any]], unknown: set[str], faults: str
) -> tuple[dict[str, dict[str, Any]], int, list[str]]:
    """Each text's first send; a second one counted after an unknown outcome, else a
    breach."""
    firsts: dict[str, dict[str, Any]] = {}
    resent = 0
    twice = []
    for record in sorted(records, key=lambda r: float(r["mono"])):
        earlier = firsts.setdefault(record["message_id"], record)
        if earlier is record:
            continue
        if record["message_id"] not in unknown:
            twice.append(f"number {record['from']}: a text sent twice: "
                         f"{_send(earlier)} then {_send(record)}{faults}")  # fmt: skip
        else:
            resent += 1
    return firsts, resent, twice


def _in_order(
    submitted: Submitted,
    grouped: dict[str, list[dict[str, Any]]],
    firsts: dict[str, dict[str, Any]],
    faults: str,
) -> list[str]:
    """Each number's texts first sent in the order they were submitted: the pairs not."""
    inversions = []
    for number, ids in submitted.by_number.items():
        place = {message_id: i for i, message_id in enumerate(ids)}
        sent = [r for r in grouped.get(number, []) if firsts[r["message_id"]] is r]
        for a, b in itertools.pairwise(sent):
            if place.get(a["message_id"], -1) > place.get(b["message_id"], -1):
                inversions.append(f"number {number}: out of submission order: "
                                  f"{_send(a)} before {_send(b)}{faults}")  # fmt: skip
    return inversions


def _accounted(
    submitted: Submitted, statuses: dict[str, str], firsts: dict[str, dict[str, Any]], faults: str
) -> None:
    """Every accepted text final, and sent unless it ended unsent; nothing else sent."""
    if stray := sorted(set(firsts) - set(submitted.ids)):
        raise AssertionError(f"sends of texts never accepted: {_send(firsts[stray[0]])}")
    final = {s.value for s in TERMINAL}
    for message_id in submitted.ids:
        status = statuses.get(message_id)
        if status not in final:
            raise AssertionError(f"text {message_id} ended {status}, not a final status{faults}")
        if message_id not in firsts and status != TextStatus.UNSENT:
            raise AssertionError(f"text {message_id} is {status} but no simulator logged "
                                 f"its send{faults}")  # fmt: skip


def failovers(fleet: Fleet, stall: Stall | None = None) -> list[float]:
    """For each kill (or the stall), the seconds until every number the worker sent
    from last before it had sent again, from another worker or from itself restarted:
    how long its numbers stood still."""
    grouped = _by_number(fleet.records())
    events = list(fleet.kills) + ([(stall.worker, stall.stopped)] if stall else [])
    took = []
    for worker, at in events:
        waits = []
        for sends in grouped.values():
            before = [r for r in sends if float(r["mono"]) <= at]
            after = [r for r in sends if float(r["mono"]) > at]
            if before and after and before[-1]["worker"] == worker:
                waits.append(float(after[0]["mono"]) - at)
        if waits:
            took.append(max(waits))
    return took


def stale_sends(fleet: Fleet, stall: Stall) -> list[dict[str, Any]]:
    """The stalled worker's sends from the moment it was stopped until it took a number
    again after it resumed (its ``leases.taken`` log line): sends under the leases that
    lapsed while it was stopped, which must be none."""
    worker = fleet.workers[stall.worker]
    resumed_wall = time.time() - (time.monotonic() - stall.resumed)
    retaken = float("inf")
    for line in worker.log.read_text(errors="replace").splitlines():
        if '"leases.taken"' not in line or not line.startswith("{"):
            continue
        with contextlib.suppress(ValueError, KeyError):
            entry = json.loads(line)
            at = datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00")).timestamp()
            if at >= resumed_wall:
                retaken = min(retaken, stall.resumed + (at - resumed_wall))
                break
    return [r for r in fleet.records() if r["worker"] == stall.worker
            and stall.stopped < float(r["mono"]) < retaken]  # fmt: skip


def sent_by_others_during(fleet: Fleet, stall: Stall) -> int:
    """Sends, while the worker was stopped, of numbers it had sent from before: its
    numbers taken over by the other workers."""
    grouped = _by_number(fleet.records())
    taken = 0
    for sends in grouped.values():
        if not any(r["worker"] == stall.worker and float(r["mono"]) < stall.stopped
                   for r in sends):  # fmt: skip
            continue
        taken += sum(1 for r in sends if r["worker"] != stall.worker
                     and stall.stopped < float(r["mono"]) < stall.resumed)  # fmt: skip
    return taken
