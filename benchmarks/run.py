"""``scripts/bench``: the service against its peers, every figure in one run, on one machine.

Every workload runs in a fresh interpreter (``benchmarks.workloads``,
``benchmarks.campaigns``, ``benchmarks.scenarios``), so its CPU time and peak memory
are its own. Figures are medians over ``--runs``; violations and FIFO inversions are
the worst run's. Ratios are against the lower bound of the makespan and against the
peers measured in the same run (``benchmarks.report`` writes the tables).

Parts (``--only``): ``pacing`` (makespan, spacing, order, CPU per text, against
asyncio-throttle, aiolimiter and the in-memory heap), ``sustained`` (texts a second of
one service under a saturating load, against the heap), ``campaigns`` (a campaign's
send rate against its pool's), ``ingest`` (a contacts file imported), ``scenario``
(bulk ingest, restart with a large queue, the socket's and the HTTP app's latency
while every number paces, memory), ``email`` (emails a second per relay to a local
aiosmtpd relay against aiosmtplib's own ceiling over one connection, and the spacing
held at the default 10 a second). Only when named: ``scale-out`` (``dispatcher serve``
workers on one throwaway PostgreSQL cluster, ``benchmarks.fleet``: sends a second with
2,000 busy numbers at 1, 2 and 4 workers against pgbench running one send's statements,
the statements per send, and the fault runs with their failover; ``--faults`` and
``--within`` choose its fault runs and its limit).

Interrupted (^C, SIGINT or SIGTERM) or past its time limit, a workload is told to stop
(SIGTERM): the report is still printed (and written to ``--out``, each row to
``--results``) with every row measured so far; scale-out keeps the row in progress,
marked "cut short", and the exit status is 1. A rerun with ``--results`` measures
again the rows cut short.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.report import RUNNERS

PEER_CAP = report.PEER_CAP
PARTS = ("pacing", "sustained", "campaigns", "ingest", "scenario", "email")
EXTRA_PARTS = ("scale-out",)  # run only when --only names them
FAULTS = ("kill", "stall", "restart")  # scale-out's fault runs
ONCE = {"scale-out"}  # parts measured once whatever --runs says: its runs take minutes each
WORST = {"violations", "inversions", "unfinished"}  # the worst run's, not the median
Row = dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Sizes:
    """What each part measures, by mode (see :func:`parse`)."""

    numbers: list[int]
    texts: int
    latencies: list[float]
    runs: int
    sustained: tuple[int, float, int]  # numbers, texts a second each, texts each
    pools: list[tuple[int, int]]  # (pool numbers, contacts) per campaign
    ingest_rows: int
    ingest_pool: int
    queued: int  # texts queued before the restart (scenario)
    queued_numbers: int
    http_each: int
    samples: int
    emails: int  # to the relay as fast as it takes them (email)
    paced_emails: int  # at the default 10 a second (email)
    fleet: dict[str, Any]  # scale-out: a benchmarks.fleet.Spec


QUICK = Sizes(numbers=[20], texts=3, latencies=[0.0], runs=1, sustained=(20, 20.0, 10),
              pools=[(10, 20)], ingest_rows=2_000, ingest_pool=100, queued=2_000,
              queued_numbers=100, http_each=3, samples=20, emails=200,
              paced_emails=20,
              fleet={"workers": [1, 2], "busy": 200, "busy_texts": 5, "numbers": 4, "texts": 6,
                     "every": 3.0, "down": 1.0, "db_down": 2.0, "clients": 4,
                     "seconds": 3})  # fmt: skip
FULL = Sizes(numbers=[1_000, 10_000], texts=20, latencies=[0.0, 50.0], runs=3,
             sustained=(1_000, 50.0, 40), pools=[(300, 3_600), (3_500, 21_000)],
             ingest_rows=1_000_000, ingest_pool=1_000, queued=1_000_000,
             queued_numbers=10_000, http_each=300, samples=200, emails=3_000,
             paced_emails=100,
             fleet={"workers": [1, 2, 4], "busy": 2_000, "busy_texts": 15, "numbers": 40,
                    "texts": 120, "every": 15.0, "down": 5.0, "db_down": 5.0, "clients": 8,
                    "seconds": 20})  # fmt: skip


_RESULTS = threading.Lock()  # workloads run at once (--jobs) append to --results in turn
CUT_GRACE = 600.0  # seconds a workload told to stop has to print what it measured
CUT = "cut short"  # the field of a row measured until it was interrupted


class Failed(Exception):
    """A workload that failed or did not finish in time: its row says so."""


@dataclasses.dataclass(slots=True)
class Stopping:
    """The workloads running (each told to stop, SIGTERM, on SIGINT or SIGTERM), and why
    the run is being cut short once it is."""

    running: set[subprocess.Popen[str]] = dataclasses.field(default_factory=set)
    told: set[subprocess.Popen[str]] = dataclasses.field(default_factory=set)
    why: str = ""
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def stop(self, signum: int, _frame: object = None) -> None:
        """The handler of SIGINT and SIGTERM: tell every workload running to stop; they
        print what they measured and the report is written from it."""
        with self.lock:
            self.why = self.why or signal.Signals(signum).name
            running = list(self.running)
        for child in running:
            self.tell(child)

    def tell(self, child: subprocess.Popen[str]) -> None:
        """SIGTERM to a workload (once it ended, nothing)."""
        self.told.add(child)
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)


STOPPING = Stopping()


def run_module(module: str, *args: str, timeout: float) -> dict[str, Any]:
    """``python -m module args`` in its own interpreter (and its own session: a ^C
    reaches this process, which tells the workload to stop); its last line of output,
    JSON. Past ``timeout``, or when the run is cut short, it is sent SIGTERM: a row it
    still prints is marked ``cut short``."""
    child = subprocess.Popen(  # noqa: S603 - our own module, arguments we built
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    with STOPPING.lock:
        STOPPING.running.add(child)
        if STOPPING.why:
            STOPPING.tell(child)
    cut = ""
    try:
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            cut = f"its time limit of {timeout:g} s reached"
            STOPPING.tell(child)
            try:
                out, err = child.communicate(timeout=CUT_GRACE)
            except subprocess.TimeoutExpired:
                child.kill()
                child.communicate()
                raise Failed(f"did not finish in {timeout:g} s") from None
    finally:
        with STOPPING.lock:
            STOPPING.running.discard(child)
            if child in STOPPING.told and not cut:
                cut = STOPPING.why
    lines = out.strip().splitlines()
    if child.returncode != 0 or not lines:
        print(err[-4000:], file=sys.stderr)
        said = err.strip().splitlines() or ["no output"]
        raise Failed(f"{CUT} ({cut}), printed nothing" if cut else f"failed: {said[-1][:200]}")
    result: dict[str, Any] = json.loads(lines[-1])
    if cut:  # the workload's own words, after the reason it was told to stop
        result[CUT] = f"{cut}; the workload: {result[CUT]}" if CUT in result else cut
    return result


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the numeric figures (the worst for violations and inversions);
    ``lost``: the most texts any run did not send."""
    summary: dict[str, Any] = {"runs": len(results)}
    for key, first in results[0].items():
        values = [r[key] for r in results if key in r]
        if isinstance(first, bool) or not isinstance(first, int | float):
            summary[key] = first
        elif key in WORST:
            summary[key] = max(values)
        else:
            summary[key] = statistics.median(values)
    if all("expected" in r and "sends" in r for r in results):
        summary["lost"] = max(r["expected"] - r["sends"] for r in results)
    return summary


def measured(args: argparse.Namespace, job: dict[str, Any], once: Callable[[], Row]) -> Row:
    """``job`` measured ``args.runs`` times (or as an interrupted run saved it): its
    medians, with the job's own fields; ``failed`` says why when it could not be."""
    key = json.dumps({**job, "runs": args.runs}, sort_keys=True)
    if key in args.saved:
        saved: dict[str, Any] = args.saved[key]
        return saved
    if STOPPING.why:
        return {**job, "failed": f"not run: the benchmark was {CUT} ({STOPPING.why})"}
    started = time.monotonic()
    try:
        runs = 1 if job["part"] in ONCE else args.runs
        results: list[dict[str, Any]] = []
        while len(results) < runs and not any(CUT in r for r in results):
            results.append(once())
        row = {**job, **summarise(results)}
    except Failed as exc:
        row = {**job, "failed": str(exc)}
    took = time.monotonic() - started
    print("  " + ", ".join(f"{k}={v}" for k, v in job.items()) + f": {took:.1f} s", file=sys.stderr)
    if args.results is not None:
        with _RESULTS:
            args.results.parent.mkdir(parents=True, exist_ok=True)
            with args.results.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"key": key, "row": row}) + "\n")
    return row


Job = tuple[dict[str, Any], Callable[[], dict[str, Any]]]
"""What one row measures (its fields) and one run of it."""


def workload(args: argparse.Namespace, part: str, spec: dict[str, Any]) -> Job:
    arg = json.dumps({**spec, "loop": args.loop})
    once = partial(run_module, "benchmarks.workloads", arg, timeout=args.timeout)
    return {"part": part, **spec, "loop": args.loop}, once


def pacing(args: argparse.Namespace) -> list[Job]:
    """Every runner at the first latency; at the others, ``--latency-runners`` only."""
    jobs = []
    for numbers in args.sizes.numbers:
        for latency in args.sizes.latencies:
            first = latency == args.sizes.latencies[0]
            for runner in args.runners:
                if not first and runner not in args.latency_runners:
                    continue
                spec = {"runner": runner, "numbers": numbers, "texts": args.sizes.texts,
                        "latency_ms": latency, "concurrency": PEER_CAP.get(runner, 0)}  # fmt: skip
                jobs.append(workload(args, "pacing", spec))
    return jobs


def sustained(args: argparse.Namespace) -> list[Job]:
    """The dispatcher and the heap, every number offered more than the service sends."""
    numbers, rate, texts = args.sizes.sustained
    spec = {"numbers": numbers, "texts": texts, "latency_ms": 0.0, "rate": rate}
    runners = [r for r in ("dispatcher", "heap") if r in args.runners]
    return [workload(args, "sustained", {"runner": r, **spec}) for r in runners]


def campaigns(args: argparse.Namespace) -> list[Job]:
    jobs: list[Job] = []
    for pool, contacts in args.sizes.pools:
        job = {"part": "campaign", "pool": pool, "contacts": contacts, "loop": args.loop}
        arg = json.dumps({"what": "pace", "first": pool, "second": contacts, "loop": args.loop})
        once = partial(run_module, "benchmarks.campaigns_main", arg, timeout=args.timeout)
        jobs.append((job, once))
    return jobs


def ingest(args: argparse.Namespace) -> list[Job]:
    rows, pool, order = args.sizes.ingest_rows, args.sizes.ingest_pool, args.ingest_order
    job = {"part": "ingest", "rows": rows, "pool": pool, "order": order, "loop": args.loop}
    arg = json.dumps({"what": "ingest", "first": rows, "second": pool, "order": order,
                      "loop": args.loop})  # fmt: skip
    return [(job, partial(run_module, "benchmarks.campaigns_main", arg, timeout=args.timeout))]


def scenario(args: argparse.Namespace) -> list[Job]:
    s = args.sizes
    spec = {"texts": s.queued, "numbers": s.queued_numbers, "http_each": s.http_each,
            "samples": s.samples, "loop": args.loop}  # fmt: skip
    arg = json.dumps(spec)
    once = partial(run_module, "benchmarks.scenarios", "service", arg, timeout=args.timeout * 4)
    return [({"part": "scenario", **spec}, once)]


def email(args: argparse.Namespace) -> list[Job]:
    spec = {"emails": args.sizes.emails, "paced": args.sizes.paced_emails, "loop": args.loop}
    once = partial(run_module, "benchmarks.mail", json.dumps(spec), timeout=args.timeout)
    return [({"part": "email", **spec}, once)]


def scale_out(args: argparse.Namespace) -> list[Job]:
    """Workers on one PostgreSQL database: throughput, pgbench's ceiling, fault runs.
    The run cuts itself short after three ``--timeout``s, still printing its rows."""
    chosen = {"workers": args.workers, "faults": args.faults, "within": args.within}
    spec = {**args.sizes.fleet, **{k: v for k, v in chosen.items() if v is not None}}
    limit = args.timeout * 3
    arg = json.dumps({**spec, "limit": limit})
    once = partial(run_module, "benchmarks.fleet", arg, timeout=limit + CUT_GRACE)
    return [({"part": "scale-out", **spec}, once)]


PART_JOBS: dict[str, Callable[[argparse.Namespace], list[Job]]] = {
    "pacing": pacing, "sustained": sustained, "campaigns": campaigns, "ingest": ingest,
    "scenario": scenario, "email": email, "scale-out": scale_out,
}  # fmt: skip
SINGLE = {"ingest", "scenario", "email", "scale-out"}  # parts of one row


def _saved(path: Path | None) -> dict[str, dict[str, Any]]:
    """Rows measured whole by an earlier, interrupted run with the same settings (one
    it cut short is measured again)."""
    if path is None or not path.exists():
        return {}
    saved = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {item["key"]: item["row"] for item in saved if not _was_cut(item["row"])}


def _was_cut(row: dict[str, Any]) -> bool:
    return CUT in row or CUT in str(row.get("failed", ""))


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def _pools(text: str) -> list[tuple[int, int]]:
    pairs = (item.split("x") for item in text.split(","))
    return [(int(pool), int(contacts)) for pool, contacts in pairs]


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add = parser.add_argument
    add("--quick", action="store_true", help="small sizes, one run (CI smoke)")
    add("--only", type=lambda s: s.split(","), default=list(PARTS),
        help=f"parts to run, comma-separated (default all: {','.join(PARTS)}; "
        f"only when named: {','.join(EXTRA_PARTS)})")  # fmt: skip
    add("--workers", type=_ints, help="worker counts of scale-out's throughput rows (full: 1,2,4)")
    add(
        "--faults",
        type=lambda s: [f for f in s.split(",") if f and f != "none"],
        help="scale-out's fault runs, of kill,stall,restart, or none (default all three)",
    )
    add(
        "--within",
        type=float,
        help="seconds each scale-out run's texts have to reach a "
        "final status, else the row fails with what it measured (default 300 + 4 a text)",
    )
    add("--sizes", type=_ints, help="numbers in the pacing rows (full: 1000,10000)")
    add("--texts", type=int, help="texts per number in the pacing rows (full: 20)")
    add("--latencies", type=lambda s: [float(x) for x in s.split(",")],
        help="simulator latencies, ms (full: 0,50)")  # fmt: skip
    add("--runs", type=int, help="runs of each workload; figures are medians (full: 3)")
    add("--runners", type=lambda s: s.split(","), default=list(RUNNERS),
        help=f"runners of the pacing rows (default {','.join(RUNNERS)})")  # fmt: skip
    add("--latency-runners", type=lambda s: s.split(","), default=["dispatcher", "heap"],
        help="runners measured at latencies after the first (default dispatcher,heap)")  # fmt: skip
    add("--sustained", type=lambda s: tuple(float(x) for x in s.split(",")),
        help="numbers,rate,texts of the saturating load (full: 1000,50,40)")  # fmt: skip
    add("--pools", type=_pools, help="campaigns as POOLxCONTACTS,... (full: 300x3600,3500x21000)")
    add("--ingest-rows", type=int, help="lines of the imported contacts file (full: 1000000)")
    add("--ingest-order", choices=["sorted", "scattered"], default="sorted",
        help="the imported file's lines in number order or scattered (default sorted)")  # fmt: skip
    add("--queued", type=int, help="texts queued before the restart (full: 1000000)")
    add("--loop", choices=["asyncio", "uvloop"], default="asyncio",
        help="the event loop every workload runs on (default asyncio)")  # fmt: skip
    add("--jobs", type=int, help="workloads run this many at once (quick: 4; full: 1, since "
        "workloads at once share the CPU and skew each other's timings)")  # fmt: skip
    add("--out", type=Path, help="write the report here (Markdown)")
    add("--json", action="store_true", help="print the raw figures as JSON")
    add("--results", type=Path, help="keep each measured row here; rerun to resume")
    add("--timeout", type=float, default=900.0, help="seconds per workload run")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    given = {"numbers": args.sizes, "texts": args.texts, "latencies": args.latencies,
             "runs": args.runs, "pools": args.pools, "ingest_rows": args.ingest_rows,
             "queued": args.queued}  # fmt: skip
    overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if args.sustained is not None:
        numbers, rate, texts = args.sustained
        overrides["sustained"] = (int(numbers), rate, int(texts))
    args.sizes = dataclasses.replace(base, **overrides)
    args.runs = args.sizes.runs
    args.jobs = args.jobs or (4 if args.quick else 1)
    args.argv = list(argv)
    for name, chosen, known in (("runner", args.runners, RUNNERS),
                                ("part", args.only, PARTS + EXTRA_PARTS),
                                ("fault", args.faults or [], FAULTS)):  # fmt: skip
        if unknown := set(chosen) - set(known):
            parser.error(f"unknown {name} {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    args.saved = _saved(args.results)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    for sig in (signal.SIGINT, signal.SIGTERM):  # stop the workloads, report what they measured
        signal.signal(sig, STOPPING.stop)
    chosen = [part for part in PARTS + EXTRA_PARTS if part in args.only]
    jobs = {part: PART_JOBS[part](args) for part in chosen}
    listed = [(part, job) for part in chosen for job in jobs[part]]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # in order when --jobs 1
        futures = [pool.submit(measured, args, *job) for _, job in listed]
        while wait(futures, timeout=0.5).not_done:
            pass  # this thread wakes to run a signal's handler a workload's thread received
        rows = [future.result() for future in futures]
    results: dict[str, Any] = {}
    for (part, _), row in zip(listed, rows, strict=True):
        if part in SINGLE:
            results[part] = row
        else:
            results.setdefault(part, []).append(row)
    text = report.markdown(results, args)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"written to {args.out}", file=sys.stderr)
    return 1 if STOPPING.why else 0


if __name__ == "__main__":
    raise SystemExit(main())
