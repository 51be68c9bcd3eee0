"""``dispatcher dnt ...``: the Do Not Text list (add, remove, check, list). A client of
the running service's control socket."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dispatcher.cli.output import each, json_flag, out
from dispatcher.control.client import call


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dnt = sub.add_parser("dnt", help="the Do Not Text list")
    dnt.set_defaults(run=run)
    dnt_sub = dnt.add_subparsers(dest="dnt_command", required=True, metavar="ACTION")
    add = dnt_sub.add_parser("add", help="put a number on the list")
    add.add_argument("number")
    add.add_argument("--reason")
    add.add_argument("--by", default="operator", help="who asked (default operator)")
    for verb in ("remove", "check"):
        dnt_sub.add_parser(verb, help=f"{verb} a number").add_argument("number")
    dnt_sub.add_parser("list", help="every entry")
    for p in dnt_sub.choices.values():
        json_flag(p)


async def run(sock: Path, args: argparse.Namespace) -> int:
    action: str = args.dnt_command
    if action == "add":
        result = await call(sock, "dnt_add", number=args.number, reason=args.reason,
                            added_by=args.by)  # fmt: skip
        out(args, result, _show_entry)
    elif action == "remove":
        result = await call(sock, "dnt_remove", number=args.number)
        out(
            args,
            result,
            lambda r: print(f"{r['number']} {'removed' if r['removed'] else 'was not listed'}"),
        )
    elif action == "check":
        out(args, await call(sock, "dnt_check", number=args.number), _show_check)
    else:
        result = await call(sock, "dnt_list")
        out(args, result, lambda r: each(_show_entry, r["entries"]))
    return 0


def _show_entry(e: dict[str, Any]) -> None:
    reason = f": {e['reason']}" if e.get("reason") else ""
    print(f"{e['number']}  listed since {e['added_at']} by {e['added_by']}{reason}")


def _show_check(r: dict[str, Any]) -> None:
    if r["listed"]:
        _show_entry(r["entry"])
    else:
        print(f"{r['number']} is not on the Do Not Text list")
