"""``dispatcher consent ...``: the consent ledger (check, add, remove, list, history,
import, export) of texts, calls and email. A client of the running service's control
socket.

``consent check`` exits 0 when the contact has an opt-out in force (on the channel
asked about, or on any), 1 when it has none, as ``grep`` does; ``consent import``
exits 1 when a line of the file was not recorded (each is printed with its line
number and why).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from dispatcher.cli.numbers import NUMBER, phone
from dispatcher.cli.output import each, json_flag, out
from dispatcher.control.client import call

CHANNELS = ("text", "voice", "email")
CONTACT = f"the contact: an email address, or a phone {NUMBER}"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    consent = sub.add_parser("consent", help="the consent ledger: opt-outs of text, voice, email")
    consent.set_defaults(run=run)
    verbs = consent.add_subparsers(dest="consent_command", required=True, metavar="ACTION")
    check = verbs.add_parser("check", help="is an opt-out in force? (exit 0 yes, 1 no)")
    _contact(check)
    _channel(check, "only this channel (default: every channel of the contact)")
    for verb, summary in (("add", "record an opt-out"),
                          ("remove", "take back the opt-outs in force (an opt-in)")):  # fmt: skip
        change = verbs.add_parser(verb, help=summary)
        _contact(change)
        change.add_argument("--channel", action="append", choices=CHANNELS, dest="channels",
                            help="a channel (repeat for more; default: every channel of "
                            "the contact: text and voice for a number, email for an "
                            "address)")  # fmt: skip
        scope = change.add_mutually_exclusive_group()
        scope.add_argument("--sender", help="only for this sending number or email domain")
        scope.add_argument("--campaign", help="only for this campaign (its id)")
        change.add_argument("--by", default="operator", help="who asked (default operator)")
        if verb == "add":
            change.add_argument("--reason", help="why, kept in the history")
    listing = verbs.add_parser("list", help="the opt-outs in force, earliest first")
    _channel(listing, "only this channel")
    listing.add_argument("--limit", type=int, default=1000, help="at most this many (1000)")
    history = verbs.add_parser("history", help="every entry of a contact, in order")
    _contact(history)
    _channel(history, "only this channel")
    imported = verbs.add_parser("import", help="record the entries of a CSV file")
    imported.add_argument(
        "file", type=os.path.abspath, help="a CSV file with a contact column (and channel, "
        "action, scope, scope_value, reason if wanted); an export reads back",
    )  # fmt: skip
    imported.add_argument("--by", default="operator", help="who imports (default operator)")
    verbs.add_parser("export", help="the whole ledger as CSV on stdout")
    for p in verbs.choices.values():
        if p is not verbs.choices["export"]:
            json_flag(p)


def _contact(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("contact", help=CONTACT)


def _channel(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--channel", choices=CHANNELS, help=help_text)


def contact(args: argparse.Namespace) -> str:
    """The contact argument: an address as it is, a number in E.164."""
    value: str = args.contact
    return value if "@" in value else phone(args, value, option="contact")


def _sender(args: argparse.Namespace) -> str | None:
    """The ``--sender`` argument: a domain or address as it is, a number in E.164."""
    value: str | None = args.sender
    if value is None or any(c.isalpha() or c == "@" for c in value):
        return value
    return phone(args, value, option="--sender")


async def run(sock: Path, args: argparse.Namespace) -> int:  # noqa: PLR0911 - one per action
    action: str = args.consent_command
    if action == "check":
        result = await call(sock, "consent_check", contact=contact(args), channel=args.channel)
        out(args, result, _show_check)
        return 0 if result["listed"] else 1
    if action in {"add", "remove"}:
        change = {"contact": contact(args), "channels": args.channels, "sender": _sender(args),
                  "campaign": args.campaign, "who": args.by}  # fmt: skip
        if action == "add":
            result = await call(sock, "consent_add", **change, reason=args.reason)
            out(args, result, lambda r: each(_show_entry, r["entries"]))
            return 0
        result = await call(sock, "consent_remove", **change)
        out(args, result, _show_removed(change["contact"]))
        return 0
    if action == "list":
        result = await call(sock, "consent_list", channel=args.channel, limit=args.limit)
        out(args, result, lambda r: each(_show_entry, r["entries"]))
        return 0
    if action == "history":
        result = await call(sock, "consent_history", contact=contact(args), channel=args.channel)
        out(args, result, lambda r: each(_show_entry, r["entries"]))
        return 0
    if action == "import":
        result = await call(sock, "consent_import", file=args.file, who=args.by)
        out(args, result, _show_import)
        for bad in result["bad"]:
            print(f"dispatcher: {args.file}:{bad['line']}: {bad['error']}", file=sys.stderr)
        return 1 if result["bad"] else 0
    result = await call(sock, "consent_export")
    sys.stdout.write(result["csv"])
    return 0


def _show_entry(e: dict[str, Any]) -> None:
    scope = {"all": "", "sender": f" from {e['scope_value']}",
             "campaign": f" for campaign {e['scope_value']}"}[e["scope"]]  # fmt: skip
    what = "opted out of" if e["action"] == "opt_out" else "opted in to"
    reason = f": {e['reason']}" if e.get("reason") else ""
    print(f"{e['at']}  {e['contact']} {what} {e['channel']}{scope} "
          f"({e['source']}, by {e['who']}{reason})")  # fmt: skip


def _show_check(r: dict[str, Any]) -> None:
    for channel, entries in r["channels"].items():
        if not entries:
            print(f"{r['contact']} may be reached by {channel}")
        for e in entries:
            _show_entry(e)


def _show_removed(who: str) -> Any:
    def show(r: dict[str, Any]) -> None:
        if not r["removed"]:
            print(f"{who} had no opt-out in force to take back")
        each(_show_entry, r["entries"])

    return show


def _show_import(r: dict[str, Any]) -> None:
    print(f"recorded {r['recorded']} entries; {len(r['bad'])} lines not recorded")
