"""Scale-out on PostgreSQL (``scripts/bench --only scale-out``): workers on one database.

Run as ``python -m benchmarks.fleet SPEC`` (SPEC: JSON of :class:`Spec`) in a process
of its own; it starts a throwaway cluster (``tests/peers_postgres.py``, with
``pg_stat_statements`` loaded) and prints one JSON object of figures:

1. **Throughput with busy numbers**, for each worker count: ``busy`` numbers x
   ``busy_texts`` texts written into the database by one short-lived service with
   sending held, then the workers started (``tests/fleet.py``): sends a second end to
   end with the simulator, between the 10% and 90% marks of the merged send logs, and
   from ``pg_stat_statements`` and ``pg_stat_database`` the statements, transactions and
   rows the database ran per send. The run is judged as the fault runs are.
2. **The ceiling of one send's statements**: Debian's ``pgbench`` running, on the same
   cluster and database, the statements one text's sending runs on the leases (the
   head read; the start, ``dispatcher_start_send``; the Sent, fenced on the text's
   status and epoch, with the number's next slot; the Delivered), each step its own
   transaction, unbatched, at ``clients`` connections for ``seconds``, each client on
   numbers of its own (a number has one text Sending at most): sends a second.
3. **Fault runs** at full size with the most workers the database takes: ``kill -9`` of
   a random worker every ``every`` s (started again ``down`` s later), and the failover
   (after each kill, until every number the killed worker sent from last has sent
   again); ``kill -STOP`` of a worker longer than its lease; the database stopped for
   ``db_down`` s mid-run. Each judged: 0 spacing violations, 0 inversions, nothing sent
   twice but counted unknown outcomes, every text accounted for (else its row says it
   failed, naming the number and the two sends, and the other rows are still measured).

The machine's load average is given at the start and the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from dispatcher.config import load_config
from dispatcher.core.model import Lane
from dispatcher.service import Dispatcher, TextRequest
from tests import fleet as harness
from tests.fleet import Fleet, SecondWorkerRefused, Submitted
from tests.peers_postgres import Cluster, bindir, cluster, restart

CHUNK = 10_000  # texts per submit_many
LEASE = 6.0  # seconds: the default lease
SETTLE_MORE = 300.0  # seconds for a run's texts to reach a final status, beyond their pacing


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Spec:
    workers: list[int]  # worker counts of the throughput rows
    busy: int  # numbers in the throughput rows
    busy_texts: int  # texts on each of them
    numbers: int  # numbers in the fault runs
    texts: int  # texts on each of them
    every: float  # seconds between two kills
    down: float  # seconds a killed worker stays down
    db_down: float  # seconds the database is down in its run
    clients: int  # pgbench connections
    seconds: int  # pgbench duration
    faults: list[str] = dataclasses.field(default_factory=lambda: ["kill", "stall", "restart"])


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


async def _ingest(url: str, home: Path, numbers: int, texts: int) -> Submitted:
    """``texts`` texts on each of ``numbers`` numbers written by one service with sending
    held, which then stops: the queue is in the database when the workers start."""
    config = load_config(home=home, env={"DISPATCHER_STORE_URL": url})
    by_number: dict[str, list[str]] = {harness.sender(n): [] for n in range(numbers)}
    order = [(n, t) for t in range(texts) for n in range(numbers)]
    async with Dispatcher.from_config(config) as d:
        d.hold()
        for first in range(0, len(order), CHUNK):
            chunk = order[first : first + CHUNK]
            requests = [
                TextRequest(sender=harness.sender(n), recipient=harness.recipient(n, t),
                            body=f"text {t}", lane=Lane.BULK)
                for n, t in chunk
            ]  # fmt: skip
            for (n, _), submission in zip(chunk, await d.submit_many(requests), strict=True):
                by_number[harness.sender(n)].append(submission.message.id)
    return Submitted(by_number)


async def _counters(url: str) -> dict[str, float]:
    """The database's counters: top-level statements run, commits, rows written."""
    db = await asyncpg.connect(url)
    try:
        statements = await db.fetchval(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()"
        )
        row = await db.fetchrow(
            "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted AS rows, "
            "pg_database_size(current_database()) AS bytes "
            "FROM pg_stat_database WHERE datname = current_database()"
        )
        assert row is not None
    finally:
        await db.close()
    return {"statements": float(statements), "commits": float(row["xact_commit"]),
            "rows": float(row["rows"]), "bytes": float(row["bytes"])}  # fmt: skip


def _rate(records: list[dict[str, Any]]) -> tuple[float, float]:
    """Sends a second between the 10% and 90% marks, and from the first to the last."""
    times = sorted(float(r["mono"]) for r in records)
    low, high = times[len(times) // 10], times[len(times) * 9 // 10]
    middle = (len(times) * 9 // 10 - len(times) // 10) / (high - low)
    return middle, (len(times) - 1) / (times[-1] - times[0])


async def throughput(pg: Cluster, root: Path, spec: Spec, workers: int) -> dict[str, Any]:
    url = await pg.fresh_database()
    await _execute(url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    empty = await _counters(url)
    submitted = await _ingest(url, root / f"ingest-{workers}", spec.busy, spec.busy_texts)
    await _execute(url, "SELECT pg_stat_statements_reset()")  # not the ingest's
    before = await _counters(url)
    fleet = Fleet(url, root / f"busy-{workers}", workers)
    await fleet.start()
    try:
        statuses = await fleet.settled(submitted, SETTLE_MORE + 4 * spec.busy_texts)
    finally:
        fleet.stop()
    after = await _counters(url)
    verdict = harness.judge(fleet, submitted, statuses)
    middle, whole = _rate(fleet.records())
    sends = verdict.sends
    name = f"{spec.busy:,} busy numbers x {spec.busy_texts}, {workers} worker(s)"
    return {
        f"{name}: sends/s (10%-90%)": middle,
        f"{name}: sends/s (first to last send)": whole,
        f"{name}: spacing violations / inversions / sent twice": "0 / 0 / 0",
        f"{name}: smallest gap (s)": verdict.min_gap,
        f"{name}: statements per send (top level)": (after["statements"] - before["statements"])
        / sends,
        f"{name}: transactions per send": (after["commits"] - before["commits"]) / sends,
        f"{name}: rows written per send": (after["rows"] - before["rows"]) / sends,
        f"{name}: database bytes per text (tables, indexes, dead rows)": (
            after["bytes"] - empty["bytes"]
        )
        / len(submitted.ids),
        f"{name}: the statements run most, calls per send": await _statements(url, sends),
        "_url": url,
    }


async def _statements(url: str, sends: int, most: int = 8) -> dict[str, Any]:
    """The statements run most often in the run's database, calls per send each (an
    ``executemany`` counts one call per row, though it is one round trip)."""
    db = await asyncpg.connect(url)
    try:
        rows = await db.fetch(
            "SELECT calls, query FROM pg_stat_statements s JOIN pg_database d "
            "ON d.oid = s.dbid WHERE d.datname = current_database() "
            "ORDER BY calls DESC LIMIT $1", most,
        )  # fmt: skip
    finally:
        await db.close()
    return {
        " ".join(str(row["query"]).split())[:90]: round(row["calls"] / sends, 3) for row in rows
    }


async def _execute(url: str, statement: str) -> None:
    db = await asyncpg.connect(url)
    try:
        await db.execute(statement)
    finally:
        await db.close()


PGBENCH_SEND = """\
\\set s :client_id + {clients} * random(0, {per_client} - 1)
SELECT m.id, m.sender, p.epoch FROM messages AS m JOIN pacing_keys AS p ON p.key = m.sender
  WHERE m.sender = '+1555' || lpad(:s::text, 7, '0') AND m.status = 'Queued'
  ORDER BY m.lane, m.seq LIMIT 1 \\gset
SELECT outcome FROM dispatcher_start_send('pgbench', :sender, :epoch, :id, 'a-' || :id,
  interval '0', interval '1 second', NULL);
BEGIN;
SELECT id FROM messages WHERE id = :id AND status = 'Sending' AND epoch = :epoch FOR UPDATE;
INSERT INTO events (message_id, at, status, reason, provider_code, source, applied, detail)
  VALUES (:id, now(), 'Sent', NULL, NULL, 'provider', true, NULL);
UPDATE messages SET status = 'Sent', reason = NULL, provider_code = NULL, updated_at = now(),
  provider_id = 'p-' || :id WHERE id = :id;
INSERT INTO pacing_keys (key, next_slot_at) VALUES (:sender, now())
  ON CONFLICT (key) DO UPDATE SET next_slot_at = GREATEST(pacing_keys.next_slot_at,
                                                          EXCLUDED.next_slot_at);
COMMIT;
BEGIN;
INSERT INTO events (message_id, at, status, reason, provider_code, source, applied, detail)
  VALUES (:id, now(), 'Delivered', NULL, NULL, 'receipt', true, NULL);
UPDATE messages SET status = 'Delivered', reason = NULL, provider_code = NULL,
  updated_at = now() WHERE id = :id;
COMMIT;
"""
STATEMENTS_PER_SEND = 8  # in PGBENCH_SEND, BEGIN and COMMIT aside: the head read included
TRANSACTIONS_PER_SEND = 4
PGBENCH_CEILING = 5_000  # sends a second the texts queued for pgbench allow, at least

# The numbers leased to pgbench (a worker of its own, no worker of the fleet running),
# and texts Queued on each for it: enough that no client runs out at PGBENCH_CEILING.
PGBENCH_SETUP = """\
UPDATE pacing_keys SET owner = 'pgbench', epoch = epoch + 1, next_slot_at = NULL,
  lease_expires_at = now() + interval '1 day';
INSERT INTO messages (id, sender, recipient, body, segments, lane, status, accepted,
                      accepted_at, expires_at, updated_at)
SELECT 'pgbench-' || g || '-' || p.key, p.key, '+15550001111', 'pgbench', 1, 1, 'Queued',
       true, now(), now() + interval '1 day', now()
FROM pacing_keys AS p, generate_series(1, {per_key}) AS g ORDER BY g, p.key;
"""


async def pgbench(pg: Cluster, url: str, spec: Spec) -> dict[str, Any]:
    """One send's statements, unbatched, run by pgbench on the run's database: the
    statements a send runs on the leases (the head read, the start through
    ``dispatcher_start_send``, the fenced Sent with the number's next slot, the
    Delivered), each client on numbers of its own (two clients never start texts of
    one number, as two workers never hold one; a number has one text Sending at most).
    Sends a second: the texts pgbench started, over its duration."""
    per_client = spec.busy // spec.clients
    per_key = -(-PGBENCH_CEILING * spec.seconds // spec.busy)
    await _execute(url, PGBENCH_SETUP.format(per_key=per_key))
    script = pg.folder / "send.sql"  # where the server's user may read it
    script.write_text(PGBENCH_SEND.format(clients=spec.clients, per_client=per_client))
    script.chmod(0o644)
    database = url.split("/")[3].split("?", maxsplit=1)[0]
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    done = await asyncio.to_thread(
        subprocess.run,  # Debian's pgbench, arguments we built
        [*prefix, str(bindir() / "pgbench"), "-h", str(pg.folder), "-p", str(pg.port),
         "-U", "postgres", "-n", "-M", "prepared", "-c", str(spec.clients),
         "-j", str(min(spec.clients, os.cpu_count() or 1)), "-T", str(spec.seconds),
         "-f", str(script), database],
        capture_output=True, text=True, check=False, timeout=spec.seconds + 120,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed: {done.stderr.strip()[-2000:]}")
    found = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", done.stdout)
    if found is None:
        raise RuntimeError(f"pgbench said no tps: {done.stdout[-2000:]}")
    started, refused = await _pgbench_sends(url)
    if refused:
        raise RuntimeError(f"pgbench: {refused} starts refused (every one must start)")
    name = f"pgbench, one send's statements unbatched, {spec.clients} clients"
    return {
        f"{name}: sends/s": started / spec.seconds,
        f"{name}: scripts/s (pgbench's tps)": float(found.group(1)),
        f"{name}: statements / transactions per send": (
            f"{STATEMENTS_PER_SEND} / {TRANSACTIONS_PER_SEND}"
        ),
    }


async def _pgbench_sends(url: str) -> tuple[int, int]:
    """The texts pgbench started (a Sending event each), and those whose start was
    refused (Delivered with none: the writes after a start that failed change them)."""
    db = await asyncpg.connect(url)
    try:
        row = await db.fetchrow(
            "SELECT count(*) FILTER (WHERE s.n > 0) AS started, "
            "count(*) FILTER (WHERE s.n = 0 AND m.status = 'Delivered') AS refused "
            "FROM messages AS m CROSS JOIN LATERAL (SELECT count(*) AS n FROM events AS e "
            "WHERE e.message_id = m.id AND e.status = 'Sending') AS s "
            "WHERE m.body = 'pgbench'"
        )
    finally:
        await db.close()
    assert row is not None
    return int(row["started"]), int(row["refused"])


async def faults(pg: Cluster, root: Path, spec: Spec, workers: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for fault in spec.faults:
        url = await pg.fresh_database()
        fleet = Fleet(url, root / f"{fault}-{workers}", workers)
        await fleet.start()
        name = f"{fault}, {workers} worker(s), {spec.numbers} x {spec.texts}"
        started = time.monotonic()
        try:
            submitted = await fleet.submit(spec.numbers, spec.texts)
            await harness.first_sends(fleet, spec.numbers)
            figures.update(await _hurt(pg, fleet, submitted, spec, fault=fault, name=name))
            fleet.stop()
            verdict = harness.judge(fleet, submitted, await _final(fleet, submitted))
        except AssertionError as exc:  # a broken invariant, or texts never final: a figure
            figures[f"{name}: failed"] = str(exc)[:1500]
            continue
        finally:
            fleet.stop()
            figures[f"{name}: took (s)"] = time.monotonic() - started
        figures[f"{name}: judged"] = "0 violations / 0 inversions / 0 sent twice; " + (
            verdict.line()
        )
    return figures


async def _final(fleet: Fleet, submitted: Submitted) -> dict[str, str]:
    found = await fleet.statuses(submitted.ids)
    assert found is not None
    return found


async def _hurt(
    pg: Cluster, fleet: Fleet, submitted: Submitted, spec: Spec, *, fault: str, name: str
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    if fault == "kill":
        done = asyncio.Event()
        killer = asyncio.create_task(
            harness.kill_every(fleet, done, every=spec.every, down=spec.down)
        )
        try:
            await fleet.settled(submitted, SETTLE_MORE + 4 * spec.texts)
        finally:
            done.set()
            figures[f"{name}: kills"] = await killer
        took = harness.failovers(fleet)
        if took:
            figures[f"{name}: failover, median / worst (s)"] = (
                f"{statistics.median(took):.2f} / {max(took):.2f}"
            )
    elif fault == "stall":
        stalled = await harness.stall(fleet, fleet.workers[-1], LEASE + 2.0)
        await fleet.settled(submitted, SETTLE_MORE + 4 * spec.texts)
        figures[f"{name}: sends by the others while it was stopped"] = (
            harness.sent_by_others_during(fleet, stalled)
        )
        took = harness.failovers(fleet, stalled)
        if took:
            figures[f"{name}: its numbers stood still (s)"] = max(took)
    else:
        stopped = time.monotonic()
        await asyncio.to_thread(restart, pg, down=spec.db_down)
        up = time.monotonic()
        await fleet.settled(submitted, SETTLE_MORE + 4 * spec.texts)
        late = [r for r in fleet.records() if stopped + 1.0 < float(r["mono"]) < up]
        figures[f"{name}: sends while the database was down (beyond 1 s)"] = len(late)
        after = [float(r["mono"]) - up for r in fleet.records() if float(r["mono"]) > up]
        figures[f"{name}: first send after the database was back (s)"] = min(after)
    return figures


async def run(spec: Spec) -> dict[str, Any]:
    figures: dict[str, Any] = {"load average at start (1 / 5 / 15 min)": _load()}
    root = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    try:
        with cluster() as started:
            _preload(started)
            pg = await asyncio.to_thread(restart, started)
            most, url = 1, ""
            for workers in spec.workers:
                try:
                    row = await throughput(pg, root, spec, workers)
                except SecondWorkerRefused as exc:
                    figures[f"{workers} worker(s)"] = f"refused: {str(exc)[:160]}"
                    continue
                except AssertionError as exc:  # a broken invariant, or texts never final
                    figures[f"{workers} worker(s), busy numbers"] = f"failed: {str(exc)[:1500]}"
                    most = max(most, workers)
                    continue
                url = row.pop("_url")
                most = max(most, workers)
                figures.update(row)
            if url:
                figures.update(await pgbench(pg, url, spec))
            figures.update(await faults(pg, root, spec, most))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    figures["load average at the end (1 / 5 / 15 min)"] = _load()
    return figures


def _preload(pg: Cluster) -> None:
    """Load ``pg_stat_statements`` at the next start (counting top-level statements)."""
    conf = pg.folder / "data" / "postgresql.conf"
    with conf.open("a") as fh:
        fh.write("shared_preload_libraries = 'pg_stat_statements'\n"
                 "pg_stat_statements.track = top\n")  # fmt: skip


def main() -> None:
    spec = Spec(**json.loads(sys.argv[1]))
    print(json.dumps(asyncio.run(run(spec))))


if __name__ == "__main__":
    main()
