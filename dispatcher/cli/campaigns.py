"""``dispatcher campaign ...``: create (with the import's progress bar), list, show
(``--follow`` for a live progress bar), pause, resume, cancel. A client of the
running service's control socket, like every operator command."""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dispatcher.cli.numbers import NUMBER, phone
from dispatcher.cli.output import json_flag, nothing_found, out, tracking
from dispatcher.control.client import call
from dispatcher.errors import DispatcherError, InvalidInput

CONTACT_STATES = ("pending", "queued", "sent", "expired", "canceled", "no_window")

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

CAMPAIGN_ID = "the campaign's id (cmp_...)"
PAGE = 5000  # contacts asked of the service at a time
LISTED = 10_000  # contacts listed without --csv when no --limit is given
PREVIEW = 3  # texts shown after an import
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
        "--template",
        help="the text, with {column} fields; for --channel voice, a script's name",
    )  # fmt: skip
    create.add_argument("--from", dest="senders", required=True,
                        help="the sender pool: numbers (or From addresses for --channel "
                        "email), comma-separated")  # fmt: skip
    create.add_argument(
        "--channel", choices=["text", "voice", "email"], default="text",
        help="texts, calls running the script --template names, or emails (default text)",
    )  # fmt: skip
    create.add_argument("--subject", help="email: the subject, a template ({{ order }})")
    create.add_argument("--text", help="email: the plain-text part, a template")
    create.add_argument("--html", metavar="FILE", help="email: a file of the HTML part")
    tracking(create, "email")
    create.add_argument("--email-column", default="email",
                        help="email: the column of the addresses, in any case "
                        "(default email)")  # fmt: skip
    create.add_argument("--time-zone", help="the time zone of a contact without one "
                        "(default campaigns.default_time_zone)")  # fmt: skip
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
    preview = verbs.add_parser("preview", help="the first contacts' texts, as they will be sent")
    preview.add_argument("id", help=CAMPAIGN_ID)
    preview.add_argument("--limit", type=int, default=3, help="texts to show (default 3)")
    test = verbs.add_parser(
        "test", help="send one contact's text to a test number, outside the campaign's counts"
    )
    test.add_argument("id", help=CAMPAIGN_ID)
    test.add_argument("--to", required=True,
                      help=f"the test {NUMBER} (an address for an email campaign)")  # fmt: skip
    test.add_argument(
        "--line", type=int, help="the contact on this line of the file (default: the first)"
    )
    contacts = verbs.add_parser(
        "contacts", help="every contact: its state, its text's status, reason and times"
    )
    contacts.add_argument("id", help=CAMPAIGN_ID)
    contacts.add_argument("--state", action="append", choices=CONTACT_STATES,
                          help="only contacts in this state (again for more)")  # fmt: skip
    contacts.add_argument("--limit", type=int,
                          help="at most this many, in file order (default: every one with "
                          "--csv, else 10,000)")  # fmt: skip
    contacts.add_argument("--cursor", help="from where an earlier listing stopped (the "
                          "next_cursor it gave)")  # fmt: skip
    for parser in verbs.choices.values():
        if parser is contacts:
            output = parser.add_mutually_exclusive_group()
            output.add_argument("--json", action="store_true", help="print JSON")
            output.add_argument("--csv", action="store_true", help="print CSV rows, a header first")
        else:
            json_flag(parser)


async def run(sock: Path, args: argparse.Namespace) -> int:
    action: str = args.campaign_command
    if action == "show" and args.follow:
        return await _follow(sock, args.id)
    verb = _VERBS.get(action)
    if verb is not None:
        return await verb(sock, args)
    # show, pause, resume, cancel: the campaign as it is after
    out(args, await call(sock, f"campaign_{action}", id=args.id), _show)
    return 0


async def _list(sock: Path, args: argparse.Namespace) -> int:
    out(args, await call(sock, "campaigns"), lambda r: _table(r["campaigns"]))
    return 0


async def _preview(sock: Path, args: argparse.Namespace) -> int:
    result = await call(sock, "campaign_preview", id=args.id, limit=args.limit)
    out(args, result, lambda r: _texts(r["texts"]))
    return 0


async def _test(sock: Path, args: argparse.Namespace) -> int:
    to = args.to if "@" in args.to else phone(args, args.to, option="--to")
    out(args, await call(sock, "campaign_test", id=args.id, to=to, line=args.line), _tested)
    return 0


async def _create(sock: Path, args: argparse.Namespace) -> int:
    created = await call(
        sock, "campaign_create", name=args.name, contacts=_absolute(args.contacts),
        template=_template(args), **{"from": args.senders}, channel=args.channel,
        start_at=args.start_at, send_window=args.send_window,
        outside_window=args.outside_window, validity=args.validity,
        phone_column=args.phone_column, tz_column=args.tz_column, draft=args.draft,
        voice_message=args.voice_message, track_opens=args.track_opens,
        track_clicks=args.track_clicks, **_email_options(args),
    )  # fmt: skip
    view = await _imported(sock, created, quiet=args.json)
    if view["state"] == "failed":
        raise DispatcherError(f"the import of {args.contacts} failed: {view['import']['error']}")
    summary = {k: view[k] for k in ("id", "accepted", "rejected", "duplicates", "suppressed",
                                    "reject_file")}  # fmt: skip
    if args.json:
        out(args, summary, _show)
        return 0
    _show(view)
    if view["accepted"]:
        first = await call(sock, "campaign_preview", id=view["id"], limit=PREVIEW)
        print(f"  the first {len(first['texts'])} as they will be sent:")
        _texts(first["texts"], indent="    ")
    return 0


def _template(args: argparse.Namespace) -> str:
    """The text's template (or script), or an email campaign's text part."""
    email = args.channel == "email"
    given: str | None = args.text if email else args.template
    if given is None:
        option = "--text" if email else "--template"
        raise DispatcherError(f"{option} is required for a {args.channel} campaign")
    return given


def _email_options(args: argparse.Namespace) -> dict[str, Any]:
    """An email campaign's subject, HTML part (read from its file) and columns."""
    if args.channel != "email":
        return {"time_zone": args.time_zone} if args.time_zone else {}
    if not args.subject:
        raise DispatcherError("--subject is required for an email campaign")
    html = None
    if args.html:
        try:
            html = Path(args.html).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DispatcherError(f"--html {args.html}: cannot be read as UTF-8 text: "
                                  f"{exc}") from None  # fmt: skip
    return {"subject": args.subject, "html": html, "email_column": args.email_column,
            "time_zone": args.time_zone}  # fmt: skip


async def _contacts(sock: Path, args: argparse.Namespace) -> int:
    """The contacts, a page at a time: with ``--csv`` each page is written as it comes
    (an export of every contact holds one page in memory), else up to ``--limit``."""
    limit: int | None = args.limit if args.limit is not None or args.csv else LISTED
    if limit is not None and limit < 1:
        raise InvalidInput(f"--limit: at least 1, not {limit}", field="--limit")
    pages = _contact_pages(sock, args, limit)
    listed: list[dict[str, Any]] = []
    writer: csv.DictWriter[str] | None = None
    cursor: str | None = None
    async for rows, after in pages:
        cursor = after
        if args.csv and rows:
            if writer is None:
                writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]),
                                        lineterminator="\n")  # fmt: skip
                writer.writeheader()
            writer.writerows(rows)
        elif not args.csv:
            listed += rows
    result = {"contacts": listed, "next_cursor": cursor}
    if writer is None and not listed:
        states = " or ".join(args.state or ["any state"])
        return nothing_found(args, result, f"campaign {args.id} has no contact in {states}")
    if not args.csv:
        out(args, result, lambda _: _contact_lines(listed))
    if cursor is not None and not args.json:
        print(f"dispatcher: more contacts follow: --cursor {cursor}", file=sys.stderr)
    return 0


async def _contact_pages(
    sock: Path, args: argparse.Namespace, limit: int | None
) -> AsyncIterator[tuple[list[dict[str, Any]], str | None]]:
    """Each page of contacts and the cursor after it, up to ``limit`` contacts (None:
    every one), from ``--cursor``."""
    cursor: str | None = args.cursor
    left = limit
    while True:
        size = PAGE if left is None else min(PAGE, left)
        page = await call(sock, "campaign_contacts", id=args.id, states=args.state or [],
                          limit=size, cursor=cursor)  # fmt: skip
        cursor = page["next_cursor"]
        yield page["contacts"], cursor
        if left is not None:
            left -= len(page["contacts"])
        if cursor is None or left == 0:
            return


def _contact_lines(rows: list[dict[str, Any]]) -> None:
    print(f"{'line':>6}  {'phone':<16} {'state':<9} {'status':<12} {'reason':<14} updated")
    for r in rows:
        print(f"{r['line']:>6}  {r['phone']:<16} {r['state']:<9} {r['status'] or '-':<12} "
              f"{r['reason'] or '-':<14} {r['updated_at'] or '-'}")  # fmt: skip


def _texts(texts: list[dict[str, Any]], indent: str = "") -> None:
    """Each previewed text: its line and contact, then the text."""
    for t in texts:
        cost = (
            f", {t['segments']} segment{'s' if t['segments'] != 1 else ''}" if t["segments"] else ""
        )
        print(f"{indent}line {t['line']}: {t['from']} -> {t['to']}{cost}")
        if t.get("subject"):
            print(f"{indent}  Subject: {t['subject']}")
        print(f"{indent}  {t['body']}")


def _tested(t: dict[str, Any]) -> None:
    print(f"{t['id']}  {t['status']}  {t['from']} -> {t['to']}  (the text of line {t['line']}; "
          "in none of the campaign's counts)")  # fmt: skip
    print(f"  {t['body']}")


_VERBS: dict[str, Callable[[Path, argparse.Namespace], Awaitable[int]]] = {
    "create": _create, "list": _list, "preview": _preview, "test": _test,
    "contacts": _contacts,
}  # fmt: skip


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
    counts += "held: {task.fields[held]}; {task.fields[state]}"
    with _progress("{task.description}", counts, _console()) as bar:
        task = bar.add_task(view["name"], total=view["total"] or None, queued=0, state="",
                            held="none")  # fmt: skip
        while True:
            bar.update(task, total=view["total"] or None, completed=view["done"],
                       queued=view["queued"], state=view["state"],
                       held=_held(view))  # fmt: skip
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
          f"{c['duplicates']} duplicates, {c['suppressed']} "
          f"{_OPTED_OUT[c['channel']]}")  # fmt: skip
    if c.get("reject_file"):
        print(f"  rejected rows: {c['reject_file']}")
    if c["channel"] == "text":
        print(f"  cost: {c['segments']} segments; projected finish {c['projected_finish'] or '-'}")
    contacts = ", ".join(f"{k} {v}" for k, v in c["contacts"].items()) or "none"
    print(f"  contacts: {contacts}; {c['done']}/{c['total']} settled")
    if c.get("held"):
        print(f"  held: {_held(c)}")
    if c.get("no_window"):
        print(f"  {c['no_window']} outside every window: their time zones are never all "
              f"in {c['send_window']} at once")  # fmt: skip
    print(f"  window {c['send_window']} in each contact's time (outside: {c['outside_window']})")


_OPTED_OUT = {"text": "on the Do Not Text list", "voice": "on the Do Not Call list",
              "email": "suppressed for email"}  # fmt: skip


def _held(c: dict[str, Any]) -> str:
    """How many contacts wait for their window to open, and until when."""
    held = int(c.get("held") or 0)
    if not held:
        return "none"
    noun = "contact waits" if held == 1 else "contacts wait"
    return f"{held} {noun} for the window to open (the first at {c['held_until']})"


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
