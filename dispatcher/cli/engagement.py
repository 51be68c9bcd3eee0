"""``dispatcher metrics`` and ``dispatcher report``: the engagement metrics, as tables
(CSV or JSON on request) or as a self-contained HTML page of charts
(:mod:`dispatcher.cli.report_page`). Clients of the running service's control socket:
the service counts, the command prints or draws. The counting's vocabulary
(:mod:`dispatcher.core.metrics`) and the page load when these commands run, so that
every other client command starts without them."""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dispatcher.cli.numbers import REGION
from dispatcher.cli.output import out
from dispatcher.control.client import call
from dispatcher.errors import InvalidInput

_WHEN = "an ISO 8601 time, or a duration back from now (24h, 7d)"
BREAKDOWNS = ("campaign", "sender", "automation")
"""The keys of ``--by`` (:data:`dispatcher.core.metrics.BY`; a test holds them equal)."""
BUCKETS = ("hour", "day")
"""The steps of ``--bucket`` (:data:`dispatcher.core.report.BUCKETS`; the same)."""


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    counts = sub.add_parser("metrics", help="engagement counts by channel (voice and text)")
    counts.set_defaults(run=run_metrics)
    counts.add_argument("--campaign", help="only this campaign's texts and calls")
    counts.add_argument(
        "--sender", help="only texts and calls from this number, or email from this address"
    )
    counts.add_argument("--automation", help="only what this automation made")
    counts.add_argument("--since", help=f"from this time: {_WHEN}")
    counts.add_argument("--until", help=f"up to (not including) this time: {_WHEN}")
    counts.add_argument("--by", metavar="|".join(BREAKDOWNS), help="one breakdown per key")
    output = counts.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON")
    output.add_argument("--csv", action="store_true", help="print CSV rows")

    page = sub.add_parser(
        "report", help="write an HTML page of the engagement metrics: charts and their numbers"
    )
    page.set_defaults(run=run_report)
    page.add_argument("--out", required=True, metavar="FILE.html", help="the page to write")
    page.add_argument("--campaign", help="only this campaign's texts and calls")
    page.add_argument("--since", help=f"from this time: {_WHEN}")
    page.add_argument("--until", help=f"up to (not including) this time: {_WHEN}")
    page.add_argument(
        "--bucket",
        choices=BUCKETS,
        help="the step of the charts over time (default: hour when the events span up to "
        "7 days, else day)",
    )


async def run_metrics(sock: Path, args: argparse.Namespace) -> int:
    from dispatcher.core import metrics  # noqa: PLC0415 - loads only for this command

    names = ("since", "until", "campaign", "sender", "automation", "by")
    asked = {name: getattr(args, name) for name in names}
    if args.sender is not None:
        region = getattr(args, REGION, "US")
        asked["sender"] = metrics.sender_key(args.sender, field="--sender", region=region)
    metrics.request(now=datetime.now(UTC), prefix="--", **asked)  # bad input says so first
    result = await call(sock, "metrics", **asked)
    if args.csv:
        csv.writer(sys.stdout, lineterminator="\n").writerows(metrics.csv_rows(result))
    else:
        out(args, result, _show_metrics)
    return 0


async def run_report(sock: Path, args: argparse.Namespace) -> int:
    """Writes the page, and prints its absolute path."""
    from dispatcher.cli import report_page  # noqa: PLC0415 - loads only for this command
    from dispatcher.core import metrics  # noqa: PLC0415

    asked = {name: getattr(args, name) for name in ("since", "until", "campaign")}
    metrics.request(now=datetime.now(UTC), prefix="--", **asked)  # bad input says so first
    page = _report_path(args.out)
    data = await call(sock, "report_data", bucket=args.bucket, **asked)
    _write_report(page, report_page.render(data))
    print(page)
    return 0


def _report_path(text: str) -> Path:
    """The absolute path of ``--out``, refused early when it cannot be a file."""
    page = Path(text).expanduser().resolve()
    if page.is_dir() or not page.parent.is_dir():
        where = "is a folder" if page.is_dir() else f"has no folder {page.parent}"
        raise InvalidInput(f"--out: cannot write {page}: it {where}", field="--out")
    return page


def _write_report(page: Path, html: str) -> None:
    try:
        page.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(
            f"--out: cannot write {page}: {exc.strerror or exc}", field="--out"
        ) from exc


def _show_metrics(result: dict[str, Any]) -> None:
    """A table per channel: a column for the total, and one per key of a breakdown."""
    from rich.console import Console  # noqa: PLC0415 - rich loads only for tables
    from rich.table import Table  # noqa: PLC0415

    from dispatcher.core import metrics  # noqa: PLC0415 - loads only for this command

    columns = {"all": result, **result.get("breakdown", {})}
    console = Console()
    for channel in metrics.CHANNELS:
        table = Table(title=channel.capitalize(), title_justify="left")
        table.add_column("")
        for key in columns:
            table.add_column(key, justify="right")
        for name in metrics.NAMES[channel]:
            table.add_row(name, *(str(part[channel][name]) for part in columns.values()))
        table.add_section()
        for rate in metrics.CHANNEL_RATES[channel]:
            values = (part["rates"][rate] for part in columns.values())
            table.add_row(
                rate.replace("_", " "), *("-" if v is None else f"{v:.1%}" for v in values)
            )
        console.print(table)
