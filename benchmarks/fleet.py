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

The machine's load average is given at the start, at the end of each row and at the
end. A row that fails (a worker that exited, a start refused in pgbench, its texts not
final within its limit) keeps what it measured: the texts sent of those accepted, sends
a second, violations, inversions and texts sent twice counted from the send logs, the
``leases.lost`` lines and the statements per send. When the run is cut short (SIGINT,
SIGTERM, or ``limit`` seconds reached) it stops its workers and still prints every row
measured so far and the row in progress, marked ``cut short``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import statistics
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
    within: float = 0.0  # seconds a run's texts have to be final (0: SETTLE_MORE + 4 a text)
    limit: float = 0.0  # seconds the whole run may take before it cuts itself short (0: none)

    def settle(self, texts: int) -> float:
        """Seconds a run of ``texts`` texts a number has for them all to be final."""
        return self.within or SETTLE_MORE + 4 * texts


@dataclasses.dataclass(slots=True)
class Measured:
    """The run's figures so far, and why it was cut short (a signal, or its time limit)
    once it was."""

    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    why: str | None = None
    heard: bool = False  # a row (or the run) caught the cancellation and is cleaning up

    def cut(self, name: str) -> None:
        """The row ``name`` was cut short: say so, before what it measured."""
        self.heard = True
        self.figures[f"{name}: cut short"] = self.why


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


def _rate(records: list[dict[str, Any]]) -> tuple[float, float] | None:
    """Sends a second between the 10% and 90% marks, and from the first to the last;
    None with too few sends to tell."""
    times = sorted(float(r["mono"]) for r in records)
    first, last = len(times) // 10, len(times) * 9 // 10
    if len(times) < 10 or times[last] <= times[first]:
        return None
    middle = (last - first) / (times[last] - times[first])
    return middle, (len(times) - 1) / (times[-1] - times[0])


def _sent(name: str, fleet: Fleet, submitted: Submitted) -> dict[str, Any]:
    """What a run's merged send logs show, whether or not it finished: texts sent of
    those accepted, sends a second, the breaches counted, the unknown outcomes, the
    workers' ``leases.lost`` lines."""
    records = fleet.records()
    found = harness.breaches(fleet, submitted, records)
    accepted = set(submitted.ids)
    figures: dict[str, Any] = {
        f"{name}: texts sent / accepted": f"{len(accepted & set(found.firsts)):,} / "
        f"{len(accepted):,}",
    }
    if (rate := _rate(records)) is not None:
        figures[f"{name}: sends/s (10%-90%)"], figures[f"{name}: sends/s (first to last send)"] = (
            rate
        )
    figures[f"{name}: spacing violations / inversions / sent twice"] = found.counts()
    by_worker = collections.Counter(int(r["worker"]) for r in records)
    figures[f"{name}: sends per worker"] = ", ".join(
        f"worker {w}: {by_worker[w]:,}" for w in range(len(fleet.workers))
    )
    if found.gaps:
        figures[f"{name}: smallest gap (s)"] = found.min_gap
    figures[f"{name}: unknown outcomes logged (resent after one)"] = (
        f"{len(found.unknown & accepted)} ({found.resent})"
    )
    figures[f"{name}: `leases.lost` log lines"] = len(fleet.logged("leases.lost"))
    # Texts put back to the queue before their provider call (the lease not trusted).
    figures[f"{name}: `dispatch.lease_lost` log lines"] = len(fleet.logged("dispatch.lease_lost"))
    kinds = (("spacing violation", found.violations), ("inversion", found.inversions),
             ("text sent twice", found.twice))  # fmt: skip
    for kind, broken in kinds:
        if broken:
            figures[f"{name}: the first {kind}"] = broken[0][:600]
    return figures


@dataclasses.dataclass(slots=True)
class Busy:
    """A throughput row as far as it got."""

    name: str
    url: str = ""
    empty: dict[str, float] = dataclasses.field(default_factory=dict)  # before the ingest
    before: dict[str, float] = dataclasses.field(default_factory=dict)  # after it
    submitted: Submitted | None = None
    fleet: Fleet | None = None
    final: bool = False  # every text reached a final status
    began: float = 0.0  # monotonic, when its workers were started

    async def figures(self) -> dict[str, Any]:
        """Every figure of what it got to: the sends, then the database's counts."""
        if self.submitted is None or self.fleet is None:
            return {f"{self.name}: reached": "the ingest" if self.url else "nothing"}
        sends = len(self.fleet.records())
        figures: dict[str, Any] = {
            f"{self.name}: from the workers' start (s)": time.monotonic() - self.began
        }
        figures |= _sent(self.name, self.fleet, self.submitted)
        statuses = await self.fleet.statuses(self.submitted.ids) or {}
        counts = collections.Counter(statuses.values())
        figures[f"{self.name}: texts by status"] = ", ".join(
            f"{status} {count:,}" for status, count in counts.most_common()
        )
        if not self.before:
            return figures
        after = await _counters(self.url)
        figures[f"{self.name}: statements (top level) / transactions run"] = (
            f"{after['statements'] - self.before['statements']:,.0f} / "
            f"{after['commits'] - self.before['commits']:,.0f}"
        )
        if not sends:
            return figures
        per_send = {"statements per send (top level)": "statements",
                    "transactions per send": "commits",
                    "rows written per send": "rows"}  # fmt: skip
        for label, counter in per_send.items():
            figures[f"{self.name}: {label}"] = (after[counter] - self.before[counter]) / sends
        figures[f"{self.name}: database bytes per text (tables, indexes, dead rows)"] = (
            after["bytes"] - self.empty["bytes"]
        ) / len(self.submitted.ids)
        figures[f"{self.name}: the statements run most, calls per send"] = await _statements(
            self.url, sends
        )
        figures[f"{self.name}: load average at its end"] = _load()
        return figures


async def throughput(
    pg: Cluster, root: Path, spec: Spec, workers: int, out: Measured
) -> str | None:
    """One throughput row into ``figures``, failed or cut short as far as it got. Its
    database when every text reached a final status (pgbench may run there), else "";
    None when the database took fewer workers."""
    row = Busy(f"{spec.busy:,} busy numbers x {spec.busy_texts}, {workers} worker(s)")
    figures = out.figures
    try:
        row.url = await pg.fresh_database()
        await _execute(row.url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        row.empty = await _counters(row.url)
        ingest = root / f"ingest-{workers}"
        row.submitted = await _ingest(row.url, ingest, spec.busy, spec.busy_texts)
        await _execute(row.url, "SELECT pg_stat_statements_reset()")  # not the ingest's
        row.before = await _counters(row.url)
        row.fleet = Fleet(row.url, root / f"busy-{workers}", workers)
        row.began = time.monotonic()
        try:
            await row.fleet.start()
            statuses = await row.fleet.settled(row.submitted, spec.settle(spec.busy_texts))
            row.final = True
        finally:
            row.fleet.stop()
        harness.judge(row.fleet, row.submitted, statuses)
    except SecondWorkerRefused as exc:
        figures[f"{workers} worker(s)"] = f"refused: {str(exc)[:160]}"
        return None
    except AssertionError as exc:  # a broken invariant, a worker that exited, texts not final
        figures[f"{row.name}: failed"] = str(exc)[:1500]
    except asyncio.CancelledError:
        out.cut(row.name)
        figures.update(await row.figures())
        raise
    figures.update(await row.figures())
    return row.url if row.final else ""


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
# Then the tables' statistics, so the plans pgbench prepares (-M prepared: a generic
# plan after five runs, kept) are made on the tables as they are: right after the bulk
# insert autovacuum may not have analysed them yet. Without it the same statements ran
# at 37.5 and 48.8 sends a second in two runs of seven, 925-1,206 in the others; with
# it, 1,282-1,494 in three runs of three.
PGBENCH_SETUP = """\
UPDATE pacing_keys SET owner = 'pgbench', epoch = epoch + 1, next_slot_at = NULL,
  lease_expires_at = now() + interval '1 day';
INSERT INTO messages (id, sender, recipient, body, segments, lane, status, accepted,
                      accepted_at, expires_at, updated_at)
SELECT 'pgbench-' || g || '-' || p.key, p.key, '+15550001111', 'pgbench', 1, 1, 'Queued',
       true, now(), now() + interval '1 day', now()
FROM pacing_keys AS p, generate_series(1, {per_key}) AS g ORDER BY g, p.key;
ANALYZE messages, pacing_keys, events;
"""


async def pgbench(pg: Cluster, url: str, spec: Spec, out: Measured) -> None:
    """One send's statements, unbatched, run by pgbench on the run's database: the
    statements a send runs on the leases (the head read, the start through
    ``dispatcher_start_send``, the fenced Sent with the number's next slot, the
    Delivered), each client on numbers of its own (two clients never start texts of
    one number, as two workers never hold one; a number has one text Sending at most).
    Sends a second: the texts pgbench started, over its duration. Failed (pgbench
    ended in error, said no tps, or a start was refused) or cut short, its row keeps
    what it measured."""
    per_client = spec.busy // spec.clients
    per_key = -(-PGBENCH_CEILING * spec.seconds // spec.busy)
    await _execute(url, PGBENCH_SETUP.format(per_key=per_key))
    script = pg.folder / "send.sql"  # where the server's user may read it
    script.write_text(PGBENCH_SEND.format(clients=spec.clients, per_client=per_client))
    script.chmod(0o644)
    database = url.split("/")[3].split("?", maxsplit=1)[0]
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    name = f"pgbench, one send's statements unbatched, {spec.clients} clients"
    figures = out.figures
    before = await _counters(url)
    started = time.monotonic()
    child = await asyncio.create_subprocess_exec(  # Debian's pgbench, arguments we built
        *prefix, str(bindir() / "pgbench"), "-h", str(pg.folder), "-p", str(pg.port),
        "-U", "postgres", "-n", "-M", "prepared", "-c", str(spec.clients),
        "-j", str(min(spec.clients, os.cpu_count() or 1)), "-T", str(spec.seconds),
        "-f", str(script), database, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    said, failed = "", ""
    try:
        printed, err = await asyncio.wait_for(child.communicate(), spec.seconds + 120)
        said = printed.decode(errors="replace")
        if child.returncode != 0:
            failed = f"pgbench failed: {err.decode(errors='replace').strip()[-2000:]}"
    except TimeoutError:
        failed = f"pgbench did not finish in {spec.seconds + 120} s"
        await _end(child)
    except asyncio.CancelledError:
        out.cut(name)
        await _end(child)
        figures.update(await _pgbench_row(url, name, before, time.monotonic() - started))
        raise
    found = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", said)
    if found is None and not failed:
        failed = f"pgbench said no tps: {said[-2000:]}"
    row = await _pgbench_row(url, name, before, float(spec.seconds))
    if refused := row[f"{name}: starts refused"]:
        failed = failed or f"pgbench: {refused} starts refused (every one must start)"
    if failed:
        figures[f"{name}: failed"] = failed
    figures.update(row)
    if found is not None:
        figures[f"{name}: scripts/s (pgbench's tps)"] = float(found.group(1))


async def _end(child: asyncio.subprocess.Process) -> None:
    """Stop a child process we started (SIGTERM, then SIGKILL after 10 s)."""
    if child.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        child.terminate()
    try:
        await asyncio.wait_for(child.wait(), 10.0)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await child.wait()


async def _pgbench_row(
    url: str, name: str, before: dict[str, float], seconds: float
) -> dict[str, Any]:
    """What pgbench did on the database: texts started a second over ``seconds``, the
    starts refused, and the statements and transactions it ran per text started
    (``pg_stat_statements``, ``pg_stat_database``)."""
    started, refused = await _pgbench_sends(url)
    after = await _counters(url)
    row: dict[str, Any] = {
        f"{name}: sends/s": started / seconds if seconds > 0 else 0.0,
        f"{name}: texts started": started,
        f"{name}: starts refused": refused,
        f"{name}: statements / transactions per send in its script": (
            f"{STATEMENTS_PER_SEND} / {TRANSACTIONS_PER_SEND}"
        ),
    }
    if started:
        row[f"{name}: statements / transactions per send measured"] = (
            f"{(after['statements'] - before['statements']) / started:.2f} / "
            f"{(after['commits'] - before['commits']) / started:.2f}"
        )
    return row


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


async def faults(pg: Cluster, root: Path, spec: Spec, workers: int, out: Measured) -> None:
    figures = out.figures
    for fault in spec.faults:
        url = await pg.fresh_database()
        fleet = Fleet(url, root / f"{fault}-{workers}", workers)
        name = f"{fault}, {workers} worker(s), {spec.numbers} x {spec.texts}"
        started = time.monotonic()
        submitted: Submitted | None = None
        try:
            await fleet.start()
            submitted = await fleet.submit(spec.numbers, spec.texts)
            await harness.first_sends(fleet, spec.numbers)
            figures.update(await _hurt(pg, fleet, submitted, spec, fault=fault, name=name))
            fleet.stop()
            verdict = harness.judge(fleet, submitted, await _final(fleet, submitted))
        except AssertionError as exc:  # a broken invariant, or texts never final: a figure
            figures[f"{name}: failed"] = str(exc)[:1500]
            fleet.stop()
            if submitted is not None:
                figures.update(_sent(name, fleet, submitted))
            continue
        except asyncio.CancelledError:
            out.cut(name)
            fleet.stop()
            if submitted is not None:
                figures.update(_sent(name, fleet, submitted))
            raise
        finally:
            fleet.stop()
            figures[f"{name}: took (s)"] = time.monotonic() - started
        figures[f"{name}: judged"] = "0 violations / 0 inversions / 0 sent twice; " + (
            verdict.line()
        )
        figures[f"{name}: `leases.lost` log lines"] = len(fleet.logged("leases.lost"))


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
            await fleet.settled(submitted, spec.settle(spec.texts))
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
        await fleet.settled(submitted, spec.settle(spec.texts))
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
        await fleet.settled(submitted, spec.settle(spec.texts))
        late = [r for r in fleet.records() if stopped + 1.0 < float(r["mono"]) < up]
        figures[f"{name}: sends while the database was down (beyond 1 s)"] = len(late)
        after = [float(r["mono"]) - up for r in fleet.records() if float(r["mono"]) > up]
        figures[f"{name}: first send after the database was back (s)"] = min(after)
    return figures


async def run(spec: Spec) -> dict[str, Any]:
    """Every row, in order, into one dict of figures. SIGINT, SIGTERM or ``spec.limit``
    cut it short: the row in progress stops its workers and keeps what it measured, and
    the figures so far are returned, saying so."""
    out = Measured({"load average at start (1 / 5 / 15 min)": _load()})
    began = time.monotonic()
    task, loop = asyncio.current_task(), asyncio.get_running_loop()
    assert task is not None

    def stop(why: str) -> None:
        if out.why is None:  # the first says why; the rows' own clean-up is not cut
            out.why = f"{why} after {time.monotonic() - began:.0f} s"
            again()

    def again() -> None:
        """Cancel the run until a row hears it: asyncio.wait_for (in asyncpg's connect)
        may swallow a cancellation that comes as what it waits for is done."""
        if not out.heard and not task.done():
            task.cancel()
            loop.call_later(1.0, again)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig.name)
    if spec.limit:
        loop.call_later(spec.limit, stop, f"its time limit of {spec.limit:g} s reached")
    try:
        await _rows(spec, out)
    except asyncio.CancelledError:
        if out.why is None:
            raise
        out.heard = True
        out.figures["cut short"] = out.why
    out.figures["load average at the end (1 / 5 / 15 min)"] = _load()
    return out.figures


async def _rows(spec: Spec, out: Measured) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    try:
        with cluster() as started:
            _preload(started)
            pg = await asyncio.to_thread(restart, started)
            most, url = 1, ""
            for workers in spec.workers:
                done = await throughput(pg, root, spec, workers, out)
                if done is None:
                    continue
                most = max(most, workers)
                url = done or url
            if url:
                await pgbench(pg, url, spec, out)
            await faults(pg, root, spec, most, out)
    finally:
        shutil.rmtree(root, ignore_errors=True)


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
