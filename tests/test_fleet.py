"""Several ``dispatcher serve`` workers on one PostgreSQL database, hurt while they send.

Each run starts a fleet of workers (``tests/fleet.py``) on a fresh database (of a
cluster of this module's own for the run that restarts it), submits texts on a
few numbers, hurts the fleet, waits until every text has a final status, and judges
the simulators' merged send logs: every number's sends at least 1.000 s apart across
the workers, first in first out per number, nothing sent twice (but for counted
unknown outcomes), every accepted text accounted for.

The faults: ``kill -9`` of a random worker every few seconds (started again a moment
later); ``kill -STOP`` of a worker for longer than its lease, then ``kill -CONT``; the
cluster stopped and started again mid-run (no send starts while it is down).

The kills run with 1, 2 and 4 workers, the stall and the restart with 1 and 2. While
the database takes one service only (a second worker is refused at start), the runs
with more are skipped, saying so. The sizes are small (the suite's time is short);
``scripts/bench --only scale-out`` runs the full size (4 workers, 40 numbers x 120
texts, a kill every 15 s).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests import fleet as harness
from tests.fleet import Fleet, SecondWorkerRefused
from tests.peers_postgres import Cluster, cluster, restart

pytestmark = pytest.mark.acceptance

# Worker counts: the kills with 1, 2 and 4; the stall and the restart with 1 and 2 (two
# show a number taken over; the suite's time is short).
EVERY_SIZE = pytest.mark.parametrize(
    "fleet", [1, 2, 4], indirect=True, ids=lambda n: f"{n}-workers"
)
TWO = pytest.mark.parametrize("fleet", [1, 2], indirect=True, ids=lambda n: f"{n}-workers")
NUMBERS = 4
TEXTS = 5  # per number: about 5 s of sending at one text a second
LEASE = 6.0  # seconds: the default lease a worker holds its numbers for
SETTLE_WITHIN = 90.0  # seconds for every text to reach a final status
DOWN = 4.0  # seconds the database is down in the restart run
LEAD = 2.0  # a send claimed before the database went down may leave this late (a busy loop)

_refused: list[str] = []  # why a second worker was refused, once seen


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[Cluster]:
    """A cluster of this module's own: the restart run must not restart the session's."""
    with cluster() as running:
        yield running


@pytest.fixture
async def fleet(request: pytest.FixtureRequest, home: Path) -> AsyncIterator[Fleet]:
    """The workers started on a fresh database (of the module's own cluster when the
    test asks for it, else the session's); skipped, saying why, while the database
    takes one service only."""
    size: int = request.param
    if size > 1 and _refused:
        pytest.skip(_refused[0])
    chosen = "own_cluster" if "own_cluster" in request.fixturenames else "postgres"
    on: Cluster = request.getfixturevalue(chosen)
    running = Fleet(await on.fresh_database(), home, size)
    try:
        await running.start()
    except SecondWorkerRefused as exc:
        said = str(exc)
        _refused.append("a second worker is refused on one database (the single-worker "
                        f"guard): {said[: said.find(' (host')]}")  # fmt: skip
        pytest.skip(_refused[0])
    try:
        yield running
    finally:
        codes = running.stop()
        assert all(code == 0 for code in codes), f"workers exited {codes}\n{running.said(codes)}"


@EVERY_SIZE
async def test_kill_9_of_a_random_worker_every_few_seconds_loses_nothing(fleet: Fleet) -> None:
    # TEXTS + 3 a number (about 8 s of sending), as the stall: with 5, one run with one
    # worker (in the suite, on a loaded machine) had every text final before the first
    # kill, 2.5 s after the first sends were seen.
    submitted = await fleet.submit(NUMBERS, TEXTS + 3)
    await harness.first_sends(fleet, NUMBERS)
    done = asyncio.Event()
    killer = asyncio.create_task(harness.kill_every(fleet, done, every=2.5, down=0.5))
    try:
        statuses = await fleet.settled(submitted, SETTLE_WITHIN)
    finally:
        done.set()
        kills = await killer
    assert kills >= 1, "the run ended before a worker was killed"
    verdict = harness.judge(fleet, submitted, statuses)
    assert verdict.sends >= NUMBERS * (TEXTS + 3), verdict.line()


@TWO
async def test_a_worker_stopped_longer_than_its_lease_sends_nothing_stale(fleet: Fleet) -> None:
    submitted = await fleet.submit(NUMBERS, TEXTS + 3)
    await harness.first_sends(fleet, NUMBERS)
    stalled = await harness.stall(fleet, fleet.workers[-1], LEASE + 1.0)
    statuses = await fleet.settled(submitted, SETTLE_WITHIN)
    verdict = harness.judge(fleet, submitted, statuses)
    # Resumed, it sent nothing before it took a number again: what it had in flight
    # under the leases that lapsed while it was stopped never reached the carrier.
    assert harness.stale_sends(fleet, stalled) == [], verdict.line()
    if fleet.size > 1:
        # Its numbers were taken over by the others while it was stopped.
        assert harness.sent_by_others_during(fleet, stalled) > 0, verdict.line()


@TWO
async def test_a_database_restart_mid_run_stops_sends_and_loses_nothing(
    fleet: Fleet, own_cluster: Cluster
) -> None:
    submitted = await fleet.submit(NUMBERS, TEXTS)
    await harness.first_sends(fleet, NUMBERS)
    stopped = time.monotonic()
    await asyncio.to_thread(restart, own_cluster, down=DOWN)
    started = time.monotonic()
    fleet.faults.append(f"database down from {stopped:.3f} to {started:.3f}")
    statuses = await fleet.settled(submitted, SETTLE_WITHIN)
    verdict = harness.judge(fleet, submitted, statuses)
    while_down = [r for r in fleet.records() if stopped + LEAD < float(r["mono"]) < started]
    assert not while_down, f"sends while the database was down: {while_down}"
    assert verdict.sends >= NUMBERS * TEXTS, verdict.line()


def test_the_judge_names_the_number_and_the_two_sends_of_a_broken_invariant(
    tmp_path: Path,
) -> None:
    """The merged logs of two workers: sends too close, out of order, twice, missing."""
    judged = Fleet("postgresql://unused@/db", tmp_path, 2)
    judged.workers = [harness.Worker(i, tmp_path / f"w{i}", judged.url, {}) for i in range(2)]
    number = harness.sender(0)
    submitted = harness.Submitted({number: ["m1", "m2", "m3"]})
    delivered = dict.fromkeys(submitted.ids, "Delivered")

    def logs(*sends: tuple[int, str, float]) -> None:
        for worker in judged.workers:
            worker.home.mkdir(exist_ok=True)
            lines = [json.dumps({"message_id": m, "attempt_id": f"a-{m}-{at}", "from": number,
                                 "to": "+16505550100", "at": f"t{at}", "mono": at})
                     for w, m, at in sends if w == worker.index]  # fmt: skip
            worker.sends.write_text("".join(line + "\n" for line in lines))

    logs((0, "m1", 10.0), (1, "m2", 11.0), (0, "m3", 12.5))
    assert harness.judge(judged, submitted, delivered).min_gap == 1.0
    assert harness.breaches(judged, submitted).counts() == "0 / 0 / 0"
    for sends, said, counted in (
        (((0, "m1", 10.0), (1, "m2", 10.6), (0, "m3", 12.0)), "two sends 0.600000 s apart",
         "1 / 0 / 0"),
        (((0, "m2", 10.0), (1, "m1", 11.0), (0, "m3", 12.0)), "out of submission order",
         "0 / 1 / 0"),
        (((0, "m1", 10.0), (1, "m2", 11.0), (1, "m3", 12.0), (0, "m3", 13.0)), "sent twice",
         "0 / 0 / 1"),
        (((0, "m1", 10.0), (1, "m2", 11.0)), "text m3 is Delivered but no simulator logged",
         "0 / 0 / 0"),
    ):  # fmt: skip
        logs(*sends)
        assert harness.breaches(judged, submitted).counts() == counted, said
        with pytest.raises(AssertionError) as failed:
            harness.judge(judged, submitted, delivered)
        assert said in str(failed.value)
        if "m3 is Delivered" not in said:
            assert f"number {number}" in str(failed.value)
            assert "worker 1" in str(failed.value)
