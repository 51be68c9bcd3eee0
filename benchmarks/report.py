"""The benchmark's report: the figures of the service next to their peers, in Markdown.

First one table with every figure the service is held to, each next to its peer
measured in the same run (or the bound it is measured against) and the target; then
each part's own table with every figure measured.
"""

from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

RUNNERS = ("dispatcher", "heap", "throttle", "aiolimiter")
LABELS = {
    "dispatcher": "dispatcher (SQLite, every transition persisted)",
    "heap": "in-memory heap scheduler, nothing persisted",
    "throttle": "asyncio-throttle, one Throttler per number",
    "aiolimiter": "aiolimiter, one AsyncLimiter per number",
}
PEER_CAP = {"throttle": 1000}
"""Tasks in flight at once for a peer (0: one task per text, all at once). asyncio-throttle
polls every 10 ms per waiting task; capped as its users cap it."""

Row = dict[str, Any]

METHOD = """\
Sizes are the full mode's. Each workload runs in a fresh interpreter; the service uses
SQLite in a fresh home and the simulator, whose log (the moment each send reached it)
is the ground truth.

- **Pacing**: N numbers x 20 texts, all queued while sending is held, then released; the
  makespan runs from the release to the last send, its bound is 19 slots of 1 s. The
  peers get the same texts as in-memory queues.
- **CPU-s per 1,000 texts**: from the release to the end of the run (the service closed),
  this process's CPU plus its children's: those that ended (`RUSAGE_CHILDREN`) and those
  still running (`/proc`), less what they used before the release. Ingest and start-up
  are not counted; the heap is measured over the same phase.
- **Sustained texts/s**: every number offered 50 texts a second (more than the service
  sends in all); the rate between the sends at the 10% and 90% marks.
- **Campaigns**: one campaign from its creation to its end (or cancelled 60 s after
  three times contacts / pool seconds), the send window open all along, the real clock,
  SQLite, the simulator at 0 ms. Its rate is each number's own rate from its first to
  its last send, summed (while it had contacts), against one text a second per pool
  number; the gaps are each number's, from the simulator's log.
- **Campaign import**: a contacts file of E.164 numbers (in number order, or with
  `--ingest-order scattered` its lines spread over the numbers) imported as a draft,
  from its creation to the campaign stored as a draft; next to it, the scenario's bulk
  `submit_many` into the send queue. Its CPU per contact counts every process of the
  service from the creation to the service closed (the file's parsers and the SQLite
  writer included); the writer's own is from the creation to the import's end.
- **Scenario**: 1,000,000 texts queued over 10,000 numbers by one service process,
  which then stops; a new process starts on the same database, as a restart does (its
  memory is not the ingest's); the restart figure is the last of those numbers' first
  sends after the start, and the memory is the new process's resident set then (the
  SQLite writer process's beside it); then, while they pace, a client in another
  process measures the control socket's round trips and `POST /v1/messages` from 16
  connections at once on a loopback port.
- **Email pacing**: an `aiosmtpd` relay on a loopback port, in a process of its own,
  notes when each transaction's `MAIL FROM` reaches it (where the service books a
  relay's slot). First aiosmtplib alone sends 3,000 messages built beforehand, one
  after another over one connection: the ceiling. Then the service (SQLite, every
  transition persisted) sends 3,000 emails submitted while held, with `[email]
  per_second` far above that ceiling, so the relay and its one connection are the
  limit; the ratio is the service's rate over the ceiling, from the first to the last
  transaction. Last, 100 emails at the default 10 a second: the smallest gap between
  two of them as the service recorded handing them over (`sent_at`) and as the relay
  saw them (which adds how late the relay's process was scheduled).\
"""


def markdown(results: dict[str, Any], args: argparse.Namespace) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    python = platform.python_version()
    where = f"{platform.machine()}, {os.cpu_count()} cores, Python {python}, {platform.platform()}"
    parts = [
        "# Benchmarks",
        "",
        f"Measured {now} on {where} with `scripts/bench {' '.join(args.argv)}` (medians of "
        f"{args.runs} run(s); violations, inversions and losses are the worst run's; event "
        f"loop: {args.loop}).",
        "",
        "Runners: " + "; ".join(f"**{r}**: {LABELS[r]}" for r in args.runners) + ".",
        "Peers run one task per text; asyncio-throttle's are capped at "
        f"{PEER_CAP['throttle']:,} in flight, since each waiting task polls every 10 ms.",
        "Send times are the moments the sends reached the simulator (its own log). CPU time",
        "is over the pacing phase only (from the release of the queued texts to the end, not",
        "ingest or start-up) and counts every process of the runner, its children included.",
        *_cut(results),
        "",
        "## Figures",
        "",
        figures(results),
    ]
    sections: list[tuple[str, str, Callable[[Any], str]]] = [
        ("pacing", "Pacing", lambda rows: pacing_table(rows, args.sizes.texts)),
        ("sustained", "Sustained rate (a saturating load)", sustained_table),
        ("campaigns", "Campaigns (real clock, SQLite, simulator at 0 ms)", campaigns_table),
        ("ingest", "Campaign import", lambda row: values_table(row, skip=("part", "loop"))),
        ("scenario", "Bulk ingest, restart, operator latency, HTTP and memory", scenario_table),
        ("email", "Email pacing (one relay: aiosmtpd on a loopback port)", email_table),
        (
            "scale-out",
            "Scale-out on PostgreSQL (workers on one database)",
            lambda row: values_table(row, skip=("part",)),
        ),
    ]
    for key, title, draw in sections:
        if key in results:
            parts += ["", f"## {title}", "", draw(results[key])]
    parts += ["", "## How each figure is measured", "", METHOD]
    parts += [
        "",
        "## What limits these figures",
        "",
        "Each target of the service against the figure measured, with the cause of every",
        "miss and what was changed along the way: [performance.md](performance.md).",
    ]
    return "\n".join(parts) + "\n"


def _cut(results: dict[str, Any]) -> list[str]:
    """A line saying the run was cut short and why, when a row of it was."""
    rows = [row for value in results.values()
            for row in (value if isinstance(value, list) else [value])]  # fmt: skip
    said = [str(row.get("cut short", row.get("failed", ""))) for row in rows]
    why = next((line for line in said if "cut short" in line or "SIG" in line), None)
    if why is None:
        return []
    return ["", f"**Cut short** ({why[:200]}): each row is what was measured until then; "
            "the rows in progress say so, and those not run say why."]  # fmt: skip


# -- the summary --------------------------------------------------------------------------


def figures(results: dict[str, Any]) -> str:
    """One line per figure: the service, its peer in the same run, their ratio, the target."""
    lines = [
        "| figure | dispatcher | peer, same run | dispatcher / peer | target |",
        "|---|---|---|---|---|",
    ]
    pacing = [r for r in results.get("pacing", []) if "failed" not in r]
    sustained = {r["runner"]: r for r in results.get("sustained", []) if "failed" not in r}
    if pacing:
        lines.append(_spacing(pacing + list(sustained.values())))
        for numbers in sorted({r["numbers"] for r in pacing}):
            lines += _pacing_lines(pacing, numbers)
    if "dispatcher" in sustained:
        ours, heap = sustained["dispatcher"], sustained.get("heap")
        offered = ours["numbers"] * ours["rate"]
        lines.append(_line(
            f"sustained texts/s of one service ({ours['numbers']:,} numbers, "
            f"{offered:,.0f} texts/s offered)", f"{ours['sustained_per_s']:,.0f}",
            f"heap {heap['sustained_per_s']:,.0f}" if heap else "-",
            _ratio(ours["sustained_per_s"], heap["sustained_per_s"]) if heap else "-",
            "≥ 10,000",
        ))  # fmt: skip
    scenario = results.get("scenario", {})
    scenario = {} if "failed" in scenario else scenario
    if scenario:
        queued, numbers = scenario["texts"], scenario["numbers"]
        lines.append(_line(
            f"restart with {queued:,} queued to every number sending ({numbers:,} numbers)",
            f"{_find(scenario, 'restart: start to every')[1]:.2f} s", "-", "-", "≤ 2 s",
        ))  # fmt: skip
        lines.append(_line(
            f"socket `status` p99 while {numbers:,} numbers pace",
            f"{_find(scenario, 'socket `status` p99')[1]:.1f} ms", "-", "-", "≤ 5 ms",
        ))  # fmt: skip
    lines += _campaign_lines(results, scenario)
    lines += _email_lines(results.get("email", {}))
    if scenario:
        name, rss = _find(scenario, "RSS with")
        shown = f"{rss:.0f} MiB"
        if any(k.startswith("the SQLite writer") for k in scenario):
            writer = _find(scenario, "the SQLite writer")[1]
            shown += f" (the writer process beside it {writer:.0f})"
        lines.append(_line(name.removesuffix(" (MiB)"), shown, "-", "-", "≤ 100 MiB"))
        per_s = _find(scenario, "HTTP submissions")[1]
        p99 = _find(scenario, "HTTP submission p99")[1]
        lines.append(_line(
            "HTTP submissions (`POST /v1/messages`), 16 connections, while pacing",
            f"{per_s:,.0f}/s, p99 {p99:.1f} ms", "-", "-", "≥ 3,000/s, p99 ≤ 50 ms",
        ))  # fmt: skip
    return "\n".join(lines)


def _email_lines(row: Row) -> list[str]:
    """Emails a second per relay against aiosmtplib alone on one connection to the same
    relay; the smallest gap at the default pace."""
    if not row or "failed" in row:
        return []
    return [
        _line(f"emails/s per relay, `per_second` above the relay's ceiling ({row['emails']:,} "
              "emails, every transition persisted)", f"{row['service_per_s']:,.0f}",
              f"aiosmtplib, one connection {row['ceiling_per_s']:,.0f}",
              _ratio(row["service_per_s"], row["ceiling_per_s"]), "≈ 1: the relay the limit"),
        _line(f"smallest gap between emails at the default 10/s ({row['paced']:,} emails): "
              "recorded by the service; seen by the relay",
              f"{row['paced_min_gap_recorded_ms']:.1f} ms; {row['paced_min_gap_ms']:.1f} ms",
              "-", "-", "≥ 100 ms"),
    ]  # fmt: skip


def email_table(row: Row) -> str:
    return values_table(row, skip=("part", "loop"))


def _spacing(rows: list[Row]) -> str:
    """Violations and inversions summed over every size and latency (each row: its
    worst run), per runner."""
    by_runner: dict[str, tuple[int, int]] = {}
    for r in rows:
        v, i = by_runner.get(r["runner"], (0, 0))
        by_runner[r["runner"]] = (v + r["violations"], i + r["inversions"])
    ours = by_runner.pop("dispatcher", (0, 0))
    peers = "; ".join(f"{name} {v:,} / {i:,}" for name, (v, i) in by_runner.items())
    return _line("sends < 1.000 s apart / FIFO inversions, every size and latency",
                 f"{ours[0]:,} / {ours[1]:,}", peers or "-", "-", "0 / 0")  # fmt: skip


def _pacing_lines(rows: list[Row], numbers: int) -> list[str]:
    texts = rows[0]["texts"]
    at = [r for r in rows if r["numbers"] == numbers]
    span_ours, span_peer, span_ratio = [], [], []
    cpu_ours, cpu_peer, cpu_ratio = [], [], []
    for latency in sorted({r["latency_ms"] for r in at}):
        here = {r["runner"]: r for r in at if r["latency_ms"] == latency}
        ours = here.pop("dispatcher", None)
        if ours is None:
            continue
        tag = f"{latency:g} ms: "
        span_ours.append(tag + f"{ours['makespan_ratio']:.4f}")
        if here:
            best = min(here.values(), key=lambda r: r["makespan_ratio"])
            span_peer.append(tag + f"{best['runner']} {best['makespan_ratio']:.4f}")
            span_ratio.append(tag + _ratio(ours["makespan_ratio"], best["makespan_ratio"], 3))
        children = ours.get("cpu_children_per_1k", 0.0)
        cpu_ours.append(tag + f"{ours['cpu_per_1k']:.3f} (children {children:.3f})")
        if (heap := here.get("heap")) is not None:
            cpu_peer.append(tag + f"heap {heap['cpu_per_1k']:.3f}")
            cpu_ratio.append(tag + _ratio(ours["cpu_per_1k"], heap["cpu_per_1k"]))
    target = "≤ 1.008, ahead of every peer" if numbers <= 1000 else "≤ 1.08"
    return [
        _line(f"makespan / bound, N={numbers:,} x {texts}", "; ".join(span_ours),
              "; ".join(span_peer) or "-", "; ".join(span_ratio) or "-", target),
        _line(f"CPU-s per 1,000 texts, all processes, pacing phase only, N={numbers:,}",
              "; ".join(cpu_ours), "; ".join(cpu_peer) or "-", "; ".join(cpu_ratio) or "-",
              "≤ 0.15"),
    ]  # fmt: skip


def _campaign_lines(results: dict[str, Any], scenario: Row) -> list[str]:
    done = [r for r in results.get("campaigns", []) if "failed" not in r]
    lines = [_line(
        f"campaign send rate, {r['pool']:,} pool numbers, {r['contacts']:,} contacts, "
        "always-open window",
        f"{r['rate_per_s']:,.0f}/s ({r['rate_share']:.1%}), gap p99 {r['gap_p99_s']:.3f} s",
        f"the pool's rate {r['pool']:,}/s", f"{r['rate_share']:.3f}",
        "≥ 97% of the pool's rate, gap p99 ≤ 1.05 s",
    ) for r in done]  # fmt: skip
    if done:
        r = min(done, key=lambda r: r["pool"])
        unfinished = r.get("unfinished") or "finish_s" not in r
        lines.append(_line(
            f"campaign finish, {r['contacts']:,} contacts over {r['pool']:,} numbers",
            f"{_finish(r)} s (busiest number {r['busiest_over_mean']:+.1f} over the mean)",
            f"contacts / pool {r['finish_bound_s']:.1f} s",
            "-" if unfinished else _ratio(r["finish_s"], r["finish_bound_s"]),
            "≤ 14 s for 3,600 over 300",
        ))  # fmt: skip
    row = results.get("ingest", {})
    if row and "failed" not in row:
        bulk = _find(scenario, "bulk ingest")[1] if scenario else None
        lines.append(_line(
            f"campaign ingest, {row['rows']:,} rows, contacts/s",
            f"{row['ingest_per_s']:,.0f}" + _ingest_cpu(row),
            f"bulk `submit_many` {bulk:,.0f}" if bulk else "-",
            _ratio(row["ingest_per_s"], bulk) if bulk else "-", "≥ 50,000",
        ))  # fmt: skip
    return lines


def _ingest_cpu(row: Row) -> str:
    """CPU-µs a contact, every process of the service and the SQLite writer's alone."""
    if "cpu_us_per_contact" not in row:
        return ""
    return (f" ({row['cpu_us_per_contact']:.1f} CPU-µs a contact, the writer "
            f"{row['writer_cpu_us_per_contact']:.1f})")  # fmt: skip


def _find(row: Row, prefix: str) -> tuple[str, float]:
    """The scenario's figure whose name starts with ``prefix``."""
    name = next(k for k in row if k.startswith(prefix))
    return name, float(row[name])


def _ratio(a: float, b: float, digits: int = 2) -> str:
    return f"{a / b:.{digits}f}" if b else "-"


def _line(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


# -- each part's table -------------------------------------------------------------------


def pacing_table(rows: list[Row], texts: int) -> str:
    """Ratios against the bound and against the peers."""
    out = [
        f"N numbers x {texts} texts, all due at once; bound = {texts - 1} s. "
        "Ratios in the last columns: the peer's figure divided by dispatcher's.",
        "",
        "| N | latency | runner | makespan / bound | first wave (s) | sends < 1.000 s apart"
        " | FIFO inversions | lost | CPU-s / 1k texts (children) | peak RSS (MiB)"
        " | peer CPU / ours | peer makespan / ours |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ours = {(r["numbers"], r["latency_ms"]): r for r in rows
            if r["runner"] == "dispatcher" and "failed" not in r}  # fmt: skip
    for r in rows:
        head = f"| {r['numbers']:,} | {r['latency_ms']:g} ms | {r['runner']} "
        if "failed" in r:
            out.append(head + f"| {r['failed']} | | | | | | | | |")
            continue
        mine = ours.get((r["numbers"], r["latency_ms"]))
        cpu_ratio = span_ratio = "-"
        if mine is not None and r["runner"] != "dispatcher":
            cpu_ratio = _ratio(r["cpu_per_1k"], mine["cpu_per_1k"])
            span_ratio = _ratio(r["makespan_ratio"], mine["makespan_ratio"], 3)
        out.append(
            head + f"| {r['makespan_ratio']:.4f} | {r['first_wave_s']:.3f} | {r['violations']:,} "
            f"| {r['inversions']:,} | {r['lost']:,} | {r['cpu_per_1k']:.4f} "
            f"({r.get('cpu_children_per_1k', 0.0):.4f}) | {r['peak_rss_mib']:.0f} "
            f"| {cpu_ratio} | {span_ratio} |"
        )
    return "\n".join(out)


def sustained_table(rows: list[Row]) -> str:
    out = [
        "Every number offered more texts a second than the service sends in all: the rate",
        "over the middle 80% of the sends (from the 10% mark to the 90% mark).",
        "",
        "| runner | numbers | texts/s each | texts | sustained texts/s | sends < 1 / rate apart"
        " | FIFO inversions | lost | CPU-s / 1k texts (children) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        head = (
            f"| {r['runner']} | {r['numbers']:,} | {r['rate']:g} | {r['numbers'] * r['texts']:,} "
        )
        if "failed" in r:
            out.append(head + f"| {r['failed']} | | | | |")
            continue
        out.append(
            head + f"| {r['sustained_per_s']:,.0f} | {r['violations']:,} | {r['inversions']:,} "
            f"| {r['lost']:,} | {r['cpu_per_1k']:.4f} ({r.get('cpu_children_per_1k', 0.0):.4f}) |"
        )
    return "\n".join(out)


def campaigns_table(rows: list[Row]) -> str:
    out = [
        "Rate: each number's own rate from its first to its last send, summed (texts a",
        "second while contacts remain); the pool's rate is one text a second a number.",
        "",
        "| pool | contacts | rate (texts/s) | of the pool's rate | overall (texts/s)"
        " | first send (s) | gap p50 / p90 / p99 (s) | sends < 1.000 s apart"
        " | busiest over mean | finish (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        head = f"| {r['pool']:,} | {r['contacts']:,} "
        if "failed" in r:
            out.append(head + f"| {r['failed']} | | | | | | | |")
            continue
        out.append(
            head + f"| {r['rate_per_s']:,.1f} | {r['rate_share']:.1%} | {r['overall_per_s']:,.1f} "
            f"| {r['first_send_s']:.2f} | {r['gap_p50_s']:.3f} / {r['gap_p90_s']:.3f} / "
            f"{r['gap_p99_s']:.3f} | {r['violations']:,} | {r['busiest_over_mean']:+.1f} "
            f"| {_finish(r)} |"
        )
    return "\n".join(out)


def _finish(r: Row) -> str:
    """A campaign's finish, seconds; one not finished in a run was cancelled."""
    if r.get("unfinished") or "finish_s" not in r:
        return f"over {r['window_s']:,.0f} (not finished, cancelled)"
    return f"{r['finish_s']:.1f}"


def scenario_table(row: Row) -> str:
    return values_table(row, skip=("part", "texts", "numbers", "http_each", "samples", "loop"))


def values_table(row: Row, skip: tuple[str, ...] = ()) -> str:
    lines = ["| figure | value |", "|---|---|"]
    for name, value in row.items():
        if name in skip:
            continue
        if isinstance(value, float):
            shown = f"{value:,.3f}"
        else:
            shown = f"{value:,}" if isinstance(value, int) else str(value)
        lines.append(f"| {name} | {shown} |")
    return "\n".join(lines)
