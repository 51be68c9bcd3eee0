"""``dispatcher call ...``: place a call that runs a script, show it, find a contact's
calls, cancel one still queued. A client of the running service's control socket."""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path
from typing import Any

from dispatcher.cli.numbers import NUMBER, phone
from dispatcher.cli.output import found, json_flag, out, show_callbacks, submission
from dispatcher.control.client import call
from dispatcher.errors import InvalidInput


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    calls = sub.add_parser("call", help="voice calls: place, show, find, cancel")
    calls.set_defaults(run=run)
    call_sub = calls.add_subparsers(dest="call_command", required=True, metavar="ACTION")
    place = call_sub.add_parser("place", help="place a call that runs a script")
    place.add_argument("--from", dest="sender", required=True, help=f"the calling {NUMBER}")
    place.add_argument("--to", dest="recipient", required=True, help=f"the contact's {NUMBER}")
    script = place.add_mutually_exclusive_group(required=True)
    script.add_argument("--script", help="the name of a script in the configuration")
    script.add_argument(
        "--script-file", help="a script: a JSON list of steps, or TOML with [[steps]] tables"
    )
    script.add_argument("--say", help="a one-step script that says this text")
    submission(place)
    show = call_sub.add_parser("show", help="a call's statuses, the steps it ran, and why")
    show.add_argument("id", help="the call's id (call_...)")
    find_calls = call_sub.add_parser("find", help="calls to a contact, newest first")
    find_calls.add_argument("number", help=f"the contact's {NUMBER}")
    find_calls.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    call_sub.add_parser("cancel", help="cancel a call that is still queued").add_argument(
        "id", help="the call's id (call_...)"
    )
    for p in call_sub.choices.values():
        json_flag(p)


async def run(sock: Path, args: argparse.Namespace) -> int:
    action: str = args.call_command
    if action == "place":
        result = await call(
            sock, "call", **{"from": phone(args, args.sender, option="--from")},
            to=phone(args, args.recipient, option="--to"),
            script=_script_arg(args), priority=args.priority,
            idempotency_key=args.idempotency_key, status_callback=args.status_callback,
        )  # fmt: skip
        out(args, result, _show_call)
    elif action == "show":
        out(args, await call(sock, "call_show", id=args.id), _show_call_view)
    elif action == "find":
        to = phone(args, args.number, option="NUMBER")
        result = await call(sock, "call_find", to=to, limit=args.limit)
        return found(args, result, "calls", _show_call, f"no calls to {to}")
    else:
        out(args, await call(sock, "call_cancel", id=args.id), _show_call)
    return 0


def _script_arg(args: argparse.Namespace) -> str | list[Any]:
    """The script of ``call place``: a name, a file's steps, or one Say."""
    if args.say is not None:
        return [{"say": args.say}]
    if args.script is not None:
        return str(args.script)
    path = Path(args.script_file)
    try:
        text = path.read_text(encoding="utf-8")
        steps = tomllib.loads(text).get("steps") if path.suffix == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # TOML and JSON errors are both
        raise InvalidInput(f"{path}: cannot read the script: {exc}", field="script") from exc
    if not isinstance(steps, list):
        raise InvalidInput(
            f"{path}: a script file is a JSON list of steps, or TOML with [[steps]] tables",
            field="script",
        )
    return steps


def _show_call(c: dict[str, Any]) -> None:
    reason = f" ({c['reason']})" if c.get("reason") else ""
    script = c.get("script_name") or f"{len(c.get('script') or [])}-step script"
    print(f"{c['id']}  {c['status']}{reason}  {c['from']} -> {c['to']}  {script}")


def _show_call_view(v: dict[str, Any]) -> None:
    _show_call(v)
    print(f"  {v['explanation']}")
    for e in v["history"]:
        what = e["status"] or e["result"] or "note"
        step = f" step {e['step'] + 1}" if e.get("step") is not None else ""
        note = "" if e["applied"] else "  (kept, not applied)"
        detail = f" {e['detail']}" if e.get("detail") else ""
        print(f"  {e['at']}  {what:<14}{step}{detail}  [{e['source']}]{note}")
    show_callbacks(v)
