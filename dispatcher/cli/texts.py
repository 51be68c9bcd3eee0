"""The text commands: ``send``, ``message``, ``status``, ``find``, ``cancel``,
``pause`` and ``resume`` (a sending number). Clients of the running service's
control socket."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dispatcher.cli.numbers import NUMBER, phone, phone_or_none
from dispatcher.cli.output import found, json_flag, out, show_callbacks, submission
from dispatcher.control.client import call


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    send = sub.add_parser("send", help="submit a text")
    send.add_argument("--from", dest="sender", required=True, help=f"the sending {NUMBER}")
    send.add_argument("--to", dest="recipient", required=True, help=f"the contact's {NUMBER}")
    send.add_argument("--body", required=True, help="the text (its segments are counted)")
    submission(send)

    message = sub.add_parser("message", help="a message's history and why it is in its state")
    message.add_argument("id", help="the text's id (msg_...)")

    status = sub.add_parser("status", help="counts by status and the deepest queues")
    status.add_argument("--limit", type=int, default=100, help="numbers to show (default 100)")
    status.add_argument("--number", help=f"show this sending {NUMBER} only")

    find = sub.add_parser(
        "find", help="texts to and from a contact, newest first: status, times and body"
    )
    find.add_argument("number", help=f"the contact's {NUMBER}")
    find.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")

    cancel = sub.add_parser("cancel", help="cancel a message that has not started sending")
    cancel.add_argument("id", help="the text's id (msg_...)")

    numbers = [
        sub.add_parser(verb, help=f"{verb} a sending number") for verb in ("pause", "resume")
    ]
    for parser in numbers:
        parser.add_argument("number", help=f"the sending {NUMBER}")
    for parser in (send, message, status, find, cancel, *numbers):
        json_flag(parser)
        parser.set_defaults(run=run)


async def run(sock: Path, args: argparse.Namespace) -> int:
    command: str = args.command
    if command == "send":
        result = await call(
            sock, "submit", **{"from": phone(args, args.sender, option="--from")},
            to=phone(args, args.recipient, option="--to"), body=args.body,
            priority=args.priority, idempotency_key=args.idempotency_key,
            status_callback=args.status_callback,
        )  # fmt: skip
        out(args, {"id": result["id"], "status": result["status"], **result}, _show_message)
    elif command == "message":
        out(args, await call(sock, "message", id=args.id), _show_view)
    elif command == "status":
        number = phone_or_none(args, args.number, option="--number")
        result = await call(sock, "status", limit=args.limit, number=number)
        out(args, result, _show_status)
    elif command == "find":
        to = phone(args, args.number, option="NUMBER")
        result = await call(sock, "find", to=to, limit=args.limit)
        return found(args, result, "messages", _show_found, f"no texts to or from {to}")
    elif command == "cancel":
        out(args, await call(sock, "cancel", id=args.id), _show_message)
    else:  # pause, resume
        number = phone(args, args.number, option="NUMBER")
        out(args, await call(sock, command, number=number), _show_number)
    return 0


def _show_message(m: dict[str, Any]) -> None:
    reason = f" ({m['reason']})" if m.get("reason") else ""
    print(f"{m['id']}  {m['status']}{reason}  {m['from']} -> {m['to']}")


def _show_found(m: dict[str, Any]) -> None:
    """A found text: its line, then when it was accepted and last changed, and its body."""
    _show_message(m)
    print(f"  accepted {m['accepted_at']}, updated {m['updated_at']}")
    print(f"  {_quoted(m['body'])}")


def _quoted(body: str) -> str:
    """A body on one line: its line breaks and tabs shown escaped."""
    return body.replace("\\", "\\\\").translate(_ESCAPES)


_ESCAPES = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _show_view(v: dict[str, Any]) -> None:
    _show_message(v)
    print(f"  {v['explanation']}")
    print(f"  body ({v['segments']} segment{'s' if v['segments'] != 1 else ''}): "
          f"{_quoted(v['body'])}")  # fmt: skip
    print(f"  accepted {v['accepted_at']}, expires {v['expires_at'] or '-'}")
    for e in v["history"]:
        note = "" if e["applied"] else "  (kept, not applied)"
        reason = f" {e['reason']}" if e.get("reason") else ""
        code = f" code {e['provider_code']}" if e.get("provider_code") else ""
        print(f"  {e['at']}  {e['status']:<11}{reason}{code}  [{e['source']}]{note}")
    show_callbacks(v)


def _show_status(s: dict[str, Any]) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in s["counts"].items()) or "no messages"
    print(f"{counts}; in flight {s['in_flight']}")
    if store := s.get("store"):
        print(
            f"SENDING PAUSED: the store refuses writes since {store['since']} "
            f"({store['error']}); new work is refused until it takes writes again"
        )
    if calls := s.get("calls"):
        by_status = ", ".join(f"{k} {v}" for k, v in calls["counts"].items()) or "none"
        print(
            f"calls: {by_status}; queued {calls['queued']}, in flight {calls['in_flight']}, "
            f"{calls['calls_per_second']:g}/s, next slot {calls['next_slot_at'] or '-'}"
        )
    if emails := s.get("emails"):
        by_status = ", ".join(f"{k} {v}" for k, v in emails["counts"].items()) or "none"
        print(
            f"email: {by_status}; queued {emails['queued']}, in flight {emails['in_flight']}, "
            f"{emails['per_second']:g}/s, next slot {emails['next_slot_at'] or '-'}"
        )
    if s["numbers"]:
        shown = len(s["numbers"])
        total = s["numbers_total"]
        numbers = "sending number" if total == 1 else "sending numbers"
        queues = "queue" if shown == 1 else f"{shown} deepest queues"
        print(f"{total} {numbers}; the {queues}:")
        slot = f"{'next slot':<32}  owner" if s.get("shared") else "next slot"
        print(f"{'number':<16} {'depth':>6} {'in flight':>9}  {slot}")
    for n in s["numbers"]:
        paused = "  paused" if n["paused"] else ""
        slot = n["next_slot_at"] or "-"
        if s.get("shared"):  # several workers: the one holding the number's lease
            slot = f"{slot:<32}  {n.get('owner') or '- (no lease)'}"
        print(f"{n['number']:<16} {n['depth']:>6} {n['in_flight']:>9}  {slot}{paused}")


def _show_number(n: dict[str, Any]) -> None:
    state = "paused" if n["paused"] else "sending"
    print(f"{n['number']} {state}; {n['depth']} queued")
