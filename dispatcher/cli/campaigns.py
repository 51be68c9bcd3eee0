"""``dispatcher campaign ...``: create (with the import's progress bar), list, show
(``--follow`` for a live progress bar), pause, resume, cancel. A client of the
running service's control socket, like every operator command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dispatcher.cli.output import json_flag, out
from dispatcher.control.client import call
from dispatcher.errors import DispatcherError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

CAMPAIGN_ID = "the campaign's id (cmp_...)"
POLL = 0.25
ENDED = {"finished", "canceled", "failed"}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    campaign = sub.add_parser("campaign", help="bulk campaigns: create, list, show, pause, ...")
    campaign.set_defaults(run=run)
    verbs = campaign.add_subparsers(dest="campaign_command", required=True, metavar="ACTION")
    create = verbs.add_parser("create", help="import contacts from a CSV and start sending")
    create.add_argument("--name", required=True, help="the campaign's name (metrics take it too)")
    create.add_argument("--contacts", required=True, help="CSV file, a header line first")
    create.add_argument(
        "--template", required=True,
        help="the text, with {column} fields; for --channel voice, a script's name",
    )  # fmt: skip
    create.add_argument("--from", dest="senders", required=True,
                        help="the sender pool: numbers, comma-separated")  # fmt: skip
    create.add_argument(
        "--channel", choices=["text", "voice"], default="text",
        help="texts, or calls running the script --template names (default text)",
    )  # fmt: skip
    create.add_argument("--start-at", help="ISO 8601 time with offset (default: now)")
    create.add_argument("--send-window", help="HH:MM-HH:MM in the contact's time (08:00-21:00)")
    create.add_argument("--outside-window", choices=["hold", "expire"], default="hold",
                        help="a contact outside its window waits for it (hold, the default) "
                        "or ends expired (expire)")  # fmt: skip
    create.add_argument("--validity", help="each text's validity, e.g. 10h")
    create.add_argument(
        "--phone-column", default="phone",
        help="the column of the contacts' numbers, in any case (default phone)",
    )  # fmt: skip
    create.add_argument("--tz-column", help="a column of IANA time zones (else from the number)")
    create.add_argument("--draft", action="store_true", help="import only; launch with resume")
    create.add_argument(
        "--voice-message", help="what {voice_link} in the template plays: text or an audio URL"
    )
    verbs.add_parser("list", help="every campaign with its progress")
    show = verbs.add_parser("show", help="a campaign's import, contacts and projection")
    show.add_argument("id", help=CAMPAIGN_ID)
    show.add_argument("--follow", action="store_true", help="a live progress bar to the end")
    for verb in ("pause", "resume", "cancel"):
        verbs.add_parser(verb, help=f"{verb} a campaign").add_argument("id", help=CAMPAIGN_ID)
    for parser in verbs.choices.values():
        json_flag(parser)


async def run(sock: Path, args: argparse.Namespace) -> int:
    action: str = args.campaign_command
    if action == "create":
        return await _create(sock, args)
    if action == "list":
        result = await call(sock, "campaigns")
        out(args, result, lambda r: _table(r["campaigns"]))
        return 0
    if action == "show" and args.follow:
        return await _follow(sock, args.id)
    result = await call(sock, f"campaign_{action}", id=args.id)
    out(args, result, _show)
    return 0


async def _create(sock: Path, args: argparse.Namespace) -> int:
    created = await call(
        sock, "campaign_create", name=args.name, contacts=_absolute(args.contacts),
        template=args.template, **{"from": args.senders}, channel=args.channel,
        start_at=args.start_at, send_window=args.send_window,
        outside_window=args.outside_window, validity=args.validity,
        phone_column=args.phone_column, tz_column=args.tz_column, draft=args.draft,
        voice_message=args.voice_message,
    )  # fmt: skip
    view = await _imported(sock, created, quiet=args.json)
    if view["state"] == "failed":
        raise DispatcherError(f"the import of {args.contacts} failed: {view['import']['error']}")
    summary = {k: view[k] for k in ("id", "accepted", "rejected", "duplicates", "suppressed",
                                    "reject_file")}  # fmt: skip
    out(args, summary, lambda _: _show(view))
    return 0


def _absolute(path: str) -> str:
    """The service may run elsewhere in the file system: it is given an absolute path."""
    return str(Path(path).resolve())


async def _imported(sock: Path, view: dict[str, Any], *, quiet: bool) -> dict[str, Any]:
    """Wait for the import to end, with a progress bar (bytes read, rows) on stderr."""
    console = _console(stderr=True)
    counts = "{task.fields[rows]} rows: {task.fields[accepted]} accepted, {task.fields[rejected]} "
    counts += "rejected"
    with _progress("importing", counts, console, disable=quiet or not console.is_terminal) as bar:
        task = bar.add_task("import", total=None, rows=0, accepted=0, rejected=0)
        while view["state"] == "importing":
            status = view["import"] or {}
            bar.update(task, total=status.get("bytes_total") or None,
                       completed=status.get("bytes_read", 0), rows=status.get("rows", 0),
                       accepted=view["accepted"], rejected=view["rejected"])  # fmt: skip
            await asyncio.sleep(POLL)
            view = await call(sock, "campaign_show", id=view["id"])
    return view


async def _follow(sock: Path, campaign_id: str) -> int:
    """A live progress bar of contacts settled (sent, expired, cancelled) to the end."""
    view = await call(sock, "campaign_show", id=campaign_id)
    counts = "{task.completed}/{task.total} settled, {task.fields[queued]} queued, "
    counts += "{task.fields[state]}"
    with _progress("{task.description}", counts, _console()) as bar:
        task = bar.add_task(view["name"], total=view["total"] or None, queued=0, state="")
        while True:
            bar.update(task, total=view["total"] or None, completed=view["done"],
                       queued=view["queued"], state=view["state"])  # fmt: skip
            if view["state"] in ENDED or view["state"] == "paused":
                break
            await asyncio.sleep(POLL)
            view = await call(sock, "campaign_show", id=campaign_id)
    _show(view)
    return 0


def _console(**options: Any) -> Console:
    from rich.console import Console  # noqa: PLC0415 - rich loads only to draw

    return Console(**options)


def _progress(label: str, counts: str, console: Console, *, disable: bool = False) -> Progress:
    """A bar with its label, the counts and the time remaining."""
    from rich.progress import (  # noqa: PLC0415 - rich loads only to draw
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn(label), BarColumn(), TaskProgressColumn(), TextColumn(counts),
               TimeRemainingColumn())  # fmt: skip
    return Progress(*columns, console=console, disable=disable)


def _show(c: dict[str, Any]) -> None:
    print(f"{c['id']}  {c['name']}  {c['state']}  ({c['channel']}, from {', '.join(c['from'])})")
    print(f"  imported: {c['accepted']} accepted, {c['rejected']} rejected, "
          f"{c['duplicates']} duplicates, {c['suppressed']} on the Do Not Text list")  # fmt: skip
    if c.get("reject_file"):
        print(f"  rejected rows: {c['reject_file']}")
    if c["channel"] == "text":
        print(f"  cost: {c['segments']} segments; projected finish {c['projected_finish'] or '-'}")
    contacts = ", ".join(f"{k} {v}" for k, v in c["contacts"].items()) or "none"
    print(f"  contacts: {contacts}; {c['done']}/{c['total']} settled")
    print(f"  window {c['send_window']} in each contact's time (outside: {c['outside_window']})")


def _table(campaigns: list[dict[str, Any]]) -> None:
    from rich.table import Table  # noqa: PLC0415 - rich loads only to draw

    table = Table(title="Campaigns")
    # The id whole on one line (it is what the other verbs take); the rest folds, never cut.
    table.add_column("id", no_wrap=True, min_width=max((len(c["id"]) for c in campaigns),
                                                       default=2))  # fmt: skip
    for column in ("name", "state", "settled", "queued", "pending", "rejected"):
        table.add_column(column, overflow="fold")
    for c in campaigns:
        table.add_row(c["id"], c["name"], c["state"], f"{c['done']}/{c['total']}",
                      str(c["queued"]), str(c["pending"]), str(c["rejected"]))  # fmt: skip
    _console(file=sys.stdout).print(table)
