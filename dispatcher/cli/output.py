"""What a client command prints: its answer as JSON with ``--json``, else lines for
people."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any


def json_flag(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` the ``--json`` option."""
    parser.add_argument("--json", action="store_true", help="print JSON")


def out(args: argparse.Namespace, result: Any, human: Callable[[Any], object]) -> None:
    """Print ``result``: as JSON when ``--json`` was given, else with ``human``."""
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2))
    else:
        human(result)


def each(show: Callable[[dict[str, Any]], None], items: list[dict[str, Any]]) -> None:
    """Show every item of a list answer."""
    for item in items:
        show(item)


def nothing_found(args: argparse.Namespace, result: Any, what: str) -> int:
    """A filter matched nothing: say so on stderr (the empty answer still goes to
    stdout with ``--json``) and give exit code 1, as ``grep`` does."""
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2))
    print(f"dispatcher: {what}", file=sys.stderr)
    return 1


def found(
    args: argparse.Namespace,
    result: Any,
    key: str,
    show: Callable[[dict[str, Any]], None],
    nothing: str,
) -> int:
    """Show every item of the list answer ``result[key]``; when it is empty, say
    ``nothing`` as :func:`nothing_found` does."""
    if not result[key]:
        return nothing_found(args, result, nothing)
    out(args, result, lambda r: each(show, r[key]))
    return 0


def submission(
    parser: argparse.ArgumentParser,
    lanes: str = "the lane: automation goes ahead of bulk on the same number",
) -> None:
    """Give ``parser`` the options of a submission: ``--priority`` (explained by
    ``lanes``), ``--idempotency-key`` and ``--status-callback``."""
    parser.add_argument("--priority", choices=["automation", "bulk"], default="automation",
                        help=f"{lanes} (default automation)")  # fmt: skip
    idempotency(parser)
    status_callback(parser)


def status_callback(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` the ``--status-callback`` option of a submission."""
    parser.add_argument(
        "--status-callback", metavar="URL",
        help="POST each status change there, signed (https, or http to a loopback host; "
             "docs/api.md, Status callbacks)",
    )  # fmt: skip


def show_callbacks(view: dict[str, Any]) -> None:
    """The deliveries of an item's status callback, each attempt with its outcome."""
    for d in view.get("callbacks") or []:
        due = f", next attempt {d['next_attempt_at']}" if d.get("next_attempt_at") else ""
        print(f"  callback {d['sequence']} {d['status']} -> {d['url']}: {d['state']}{due}")
        for a in d["attempts"]:
            outcome = f"HTTP {a['status_code']}" if a["status_code"] is not None else a["error"]
            print(f"    {a['at']}  {outcome}")


def tracking(parser: argparse.ArgumentParser, what: str = "the email") -> None:
    """Give ``parser`` the ``--[no-]track-opens`` and ``--[no-]track-clicks`` options
    of an email (or an email campaign: ``what``); not given: the ``[email]`` switches'."""
    parser.add_argument(
        "--track-opens", action=argparse.BooleanOptionalAction, default=None,
        help=f"{what}: an open pixel in the HTML part, or none (default: [email] track_opens)",
    )  # fmt: skip
    parser.add_argument(
        "--track-clicks", action=argparse.BooleanOptionalAction, default=None,
        help=f"{what}: links through the click redirect, or as written (default: [email] "
             "track_clicks)",
    )  # fmt: skip


def idempotency(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` the ``--idempotency-key`` option of a submission."""
    parser.add_argument(
        "--idempotency-key", metavar="KEY",
        help="submitting again with the same key answers the first submission, sends nothing",
    )  # fmt: skip
