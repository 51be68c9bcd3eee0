"""``dispatcher dnt ...``: the Do Not Text list (add, remove, check, list), the text
view of the consent ledger (``dispatcher consent``). A client of the running service's
control socket.

``dnt check`` exits 0 when the number is listed, 1 when it is not, as ``grep`` does.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dispatcher.cli.numbers import NUMBER, phone
from dispatcher.cli.output import each, json_flag, out
from dispatcher.control.client import call


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dnt = sub.add_parser("dnt", help="the Do Not Text list")
    dnt.set_defaults(run=run)
    dnt_sub = dnt.add_subparsers(dest="dnt_command", required=True, metavar="ACTION")
    add = dnt_sub.add_parser("add", help="put a number on the list")
    add.add_argument("number", help=f"the contact's {NUMBER}")
    add.add_argument("--reason", help="why, kept in the history")
    add.add_argument("--by", default="operator", help="who asked (default operator)")
    for verb, summary in (("remove", "take a number off the list"),
                          ("check", "is a number listed? (exit 0 yes, 1 no)")):  # fmt: skip
        dnt_sub.add_parser(verb, help=summary).add_argument(
            "number", help=f"the contact's {NUMBER}")  # fmt: skip
    dnt_sub.add_parser("list", help="every entry")
    for p in dnt_sub.choices.values():
        json_flag(p)


async def run(sock: Path, args: argparse.Namespace) -> int:
    action: str = args.dnt_command
    if action == "add":
        result = await call(sock, "dnt_add", number=_number(args), reason=args.reason,
                            added_by=args.by)  # fmt: skip
        out(args, result, _show_entry)
    elif action == "remove":
        result = await call(sock, "dnt_remove", number=_number(args))
        out(
            args,
            result,
            lambda r: print(f"{r['number']} {'removed' if r['removed'] else 'was not listed'}"),
        )
    elif action == "check":
        result = await call(sock, "dnt_check", number=_number(args))
        out(args, result, _show_check)
        return 0 if result["listed"] else 1
    else:
        result = await call(sock, "dnt_list")
        out(args, result, lambda r: each(_show_entry, r["entries"]))
    return 0


def _number(args: argparse.Namespace) -> str:
    return phone(args, args.number, option="number")


def _show_entry(e: dict[str, Any]) -> None:
    reason = f": {e['reason']}" if e.get("reason") else ""
    print(f"{e['number']}  listed since {e['added_at']} by {e['added_by']}{reason}")


def _show_check(r: dict[str, Any]) -> None:
    if r["listed"]:
        _show_entry(r["entry"])
    else:
        print(f"{r['number']} is not on the Do Not Text list")
