"""``scripts/bench``: the pacing core against its peers, in one run, on one machine.

Every workload runs in a fresh interpreter (``benchmarks.workloads``) so its CPU time
and peak memory are its own. Figures are medians over ``--runs``; violations and
FIFO inversions are the worst run's. Ratios are against the lower bound of the
makespan (``texts - 1`` seconds) and against the peers measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RUNNERS = ("dispatcher", "heap", "throttle", "aiolimiter")
LABELS = {
    "dispatcher": "dispatcher (SQLite, every transition persisted)",
    "heap": "in-memory heap scheduler, nothing persisted",
    "throttle": "asyncio-throttle, one Throttler per number",
    "aiolimiter": "aiolimiter, one AsyncLimiter per number",
}


def run_one(workload: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One workload in its own interpreter; returns its figures."""
    done = subprocess.run(  # noqa: S603 - our own module, arguments we built
        [sys.executable, "-m", "benchmarks.workloads", json.dumps(workload)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"workload {workload} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    def median(key: str) -> float:
        return float(statistics.median(r[key] for r in results))

    summary = {
        "runs": len(results),
        "makespan_ratio": median("makespan_ratio"),
        "makespan_s": median("makespan_s"),
        "first_wave_s": median("first_wave_s"),
        "cpu_per_1k": median("cpu_per_1k"),
        "peak_rss_mib": median("peak_rss_mib"),
        "violations": max(r["violations"] for r in results),
        "inversions": max(r["inversions"] for r in results),
        "lost": max(r["expected"] - r["sends"] for r in results),
    }
    if all("ingest_per_s" in r for r in results):
        summary["ingest_per_s"] = median("ingest_per_s")
    return summary


PEER_CAP = {"throttle": 1000}
"""Tasks in flight at once for a peer (0: one task per text, all at once). asyncio-throttle
polls every 10 ms per waiting task; capped as its users cap it."""


def pacing(args: argparse.Namespace) -> list[dict[str, Any]]:
    done = _saved(args.results)
    rows = []
    for numbers in args.sizes:
        for latency in args.latencies:
            for runner in args.runners:
                workload = {
                    "runner": runner,
                    "numbers": numbers,
                    "texts": args.texts,
                    "latency_ms": latency,
                    "concurrency": PEER_CAP.get(runner, 0),
                }
                key = json.dumps({**workload, "runs": args.runs}, sort_keys=True)
                if key in done:
                    rows.append(done[key])
                    continue
                print(f"  {runner:<11} N={numbers:<6} latency={latency:g} ms", file=sys.stderr)
                try:
                    results = [run_one(workload, args.timeout) for _ in range(args.runs)]
                except subprocess.TimeoutExpired:
                    row = {**workload, "timed_out": args.timeout}
                else:
                    row = {**workload, **summarise(results)}
                rows.append(row)
                if args.results is not None:
                    args.results.parent.mkdir(parents=True, exist_ok=True)
                    with args.results.open("a", encoding="utf-8") as fh:
                        fh.write(json.dumps({"key": key, "row": row}) + "\n")
    return rows


def _saved(path: Path | None) -> dict[str, dict[str, Any]]:
    """Rows measured by an earlier, interrupted run with the same settings."""
    if path is None or not path.exists():
        return {}
    saved = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {item["key"]: item["row"] for item in saved}


def table(rows: list[dict[str, Any]], texts: int) -> str:
    """One Markdown table, with ratios against the bound and against the peers."""
    out = [
        f"N numbers x {texts} texts, all due at once; bound = {texts - 1} s. "
        "Ratios in the last columns: the peer's figure divided by dispatcher's.",
        "",
        "| N | latency | runner | makespan / bound | first wave (s) | sends < 1.000 s apart"
        " | FIFO inversions | lost | CPU-s / 1k texts | peak RSS (MiB) | peer CPU / ours"
        " | peer makespan / ours |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ours = {
        (r["numbers"], r["latency_ms"]): r
        for r in rows
        if r["runner"] == "dispatcher" and "timed_out" not in r
    }
    for r in rows:
        if "timed_out" in r:
            out.append(
                f"| {r['numbers']:,} | {r['latency_ms']:g} ms | {r['runner']} "
                f"| did not finish in {r['timed_out']:g} s | | | | | | | | |"
            )
            continue
        mine = ours.get((r["numbers"], r["latency_ms"]))
        cpu_ratio = span_ratio = "-"
        if mine is not None and r["runner"] != "dispatcher":
            cpu_ratio = f"{r['cpu_per_1k'] / mine['cpu_per_1k']:.2f}"
            span_ratio = f"{r['makespan_ratio'] / mine['makespan_ratio']:.3f}"
        out.append(
            f"| {r['numbers']:,} | {r['latency_ms']:g} ms | {r['runner']} "
            f"| {r['makespan_ratio']:.4f} | {r['first_wave_s']:.3f} | {r['violations']:,} "
            f"| {r['inversions']:,} | {r['lost']:,} | {r['cpu_per_1k']:.4f} "
            f"| {r['peak_rss_mib']:.0f} | {cpu_ratio} | {span_ratio} |"
        )
    return "\n".join(out)


def extras_table(extras: dict[str, Any]) -> str:
    lines = ["| figure | value |", "|---|---|"]
    for name, value in extras.items():
        shown = f"{value:,.3f}" if isinstance(value, float) else f"{value:,}"
        lines.append(f"| {name} | {shown} |")
    return "\n".join(lines)


def machine() -> str:
    python = platform.python_version()
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {python}, {platform.platform()}"


def report(
    rows: list[dict[str, Any]], extras: dict[str, Any] | None, args: argparse.Namespace
) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# Benchmarks",
        "",
        f"Measured {now} on {machine()} with `scripts/bench {' '.join(args.argv)}`"
        f" (medians of {args.runs} run(s); violations, inversions and losses are the worst run's).",
        "",
        "Runners: " + "; ".join(f"**{r}**: {LABELS[r]}" for r in args.runners) + ".",
        "Peers run one task per text; asyncio-throttle's are capped at "
        f"{PEER_CAP['throttle']:,} in flight, since each waiting task polls every 10 ms.",
        "Send times are the moments the sends reached the simulator (its own log).",
        "",
        "## Pacing",
        "",
        table(rows, args.texts),
    ]
    if extras:
        parts += ["", "## Ingest, operator latency, restart and memory", "", extras_table(extras)]
    parts += [
        "",
        "## What limits these figures",
        "",
        "Each target of the pacing core against the figure measured, with the cause of every",
        "miss and what was changed along the way: [performance.md](performance.md).",
    ]
    return "\n".join(parts) + "\n"


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run (CI smoke)")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--texts", type=int)
    parser.add_argument("--latencies", type=lambda s: [float(x) for x in s.split(",")])
    parser.add_argument("--runs", type=int)
    parser.add_argument("--runners", type=lambda s: s.split(","), default=list(RUNNERS))
    parser.add_argument("--extras", action="store_true", help="also ingest/latency/restart")
    parser.add_argument("--extras-texts", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, help="write the report here (Markdown)")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    parser.add_argument("--results", type=Path, help="keep each measured row here; rerun to resume")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per workload")
    args = parser.parse_args(argv)
    quick = args.quick
    args.sizes = args.sizes or ([20] if quick else [100, 1000, 10000])
    args.texts = args.texts or (3 if quick else 20)
    args.latencies = args.latencies or ([0.0] if quick else [0.0, 50.0])
    args.runs = args.runs or (1 if quick else 3)
    args.argv = list(argv)
    unknown = set(args.runners) - set(RUNNERS)
    if unknown:
        parser.error(f"unknown runner {', '.join(sorted(unknown))}; known: {', '.join(RUNNERS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    print("pacing workloads:", file=sys.stderr)
    rows = pacing(args)
    extras = None
    if args.extras:
        from benchmarks import scenarios  # noqa: PLC0415 - only when asked for

        print("ingest, latency and restart:", file=sys.stderr)
        extras = scenarios.run_all(args.extras_texts, args.timeout)
    text = report(rows, extras, args)
    if args.json:
        print(json.dumps({"pacing": rows, "extras": extras}, indent=2))
    else:
        print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
