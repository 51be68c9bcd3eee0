"""``dispatcher email ...``: send an email, show one, cancel or resend one, the relay's
summary. A client of the running service's control socket."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dispatcher.cli.output import json_flag, out, show_callbacks, submission, tracking
from dispatcher.control.client import call
from dispatcher.errors import InvalidInput

EMAIL_ID = "the email's id (eml_...)"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    emails = sub.add_parser("email", help="email: send, show, cancel, resend, status")
    emails.set_defaults(run=run)
    email_sub = emails.add_subparsers(dest="email_command", required=True, metavar="ACTION")
    send = email_sub.add_parser("send", help="send an email (paced per relay)")
    send.add_argument("--from", dest="sender", required=True, help="sending address")
    send.add_argument("--to", dest="recipient", required=True, help="recipient address")
    send.add_argument("--subject", required=True, help="one line")
    send.add_argument("--text", required=True, help="the plain-text part")
    send.add_argument("--html", metavar="FILE", help="a file with the HTML part (UTF-8)")
    submission(send, lanes="bulk email carries List-Unsubscribe")
    send.add_argument("--field", dest="fields", action="append", metavar="KEY=VALUE",
                      help="a per-contact field: subject, text and HTML become templates "
                           "({{ key }}) filled at submission (repeat it)")  # fmt: skip
    tracking(send)
    show = email_sub.add_parser("show", help="an email's statuses, and why it is in its state")
    show.add_argument("id", help=EMAIL_ID)
    email_sub.add_parser("cancel", help="cancel a Queued or Unconfirmed email").add_argument(
        "id", help=EMAIL_ID
    )
    email_sub.add_parser(
        "resend", help="send an Unconfirmed email again (the contact may get it twice)"
    ).add_argument("id", help=EMAIL_ID)
    email_sub.add_parser("status", help="the relay: emails by status, its queue and next slot")
    for p in email_sub.choices.values():
        json_flag(p)


async def run(sock: Path, args: argparse.Namespace) -> int:
    action: str = args.email_command
    if action == "send":
        result = await call(
            sock, "email_submit", **{"from": args.sender}, to=args.recipient,
            subject=args.subject, text=args.text, html=_html(args.html),
            priority=args.priority, idempotency_key=args.idempotency_key,
            status_callback=args.status_callback, fields=_fields(args.fields),
            track_opens=args.track_opens, track_clicks=args.track_clicks,
        )  # fmt: skip
        out(args, result, _show_email)
    elif action == "show":
        out(args, await call(sock, "email_show", id=args.id), _show_view)
    elif action in ("cancel", "resend"):
        out(args, await call(sock, f"email_{action}", id=args.id), _show_email)
    else:
        out(args, await call(sock, "email_status"), _show_status)
    return 0


def _html(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"html: cannot read {path}: {exc}", field="html") from exc


def _fields(given: list[str] | None) -> dict[str, str] | None:
    """``--field key=value`` as a mapping (None without one: the parts are no templates)."""
    if given is None:
        return None
    fields: dict[str, str] = {}
    for item in given:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise InvalidInput(f"--field: write KEY=VALUE, not {item!r}", field="fields")
        fields[key] = value
    return fields


def _show_email(e: dict[str, Any]) -> None:
    reason = f" ({e['reason']})" if e.get("reason") else ""
    print(f"{e['id']}  {e['status']}{reason}  {e['from']} -> {e['to']}  {e['subject']!r}")


def _show_view(v: dict[str, Any]) -> None:
    _show_email(v)
    print(f"  {v['explanation']}")
    own = [f"{what} {'on' if v[key] else 'off'}"
           for what, key in (("opens", "track_opens"), ("clicks", "track_clicks"))
           if v.get(key) is not None]  # fmt: skip
    if own:
        print(f"  its own tracking: {', '.join(own)} (the rest as [email] says)")
    for e in v["history"]:
        what = e["status"] or e.get("result") or "note"
        code = f" {e['provider_code']}" if e.get("provider_code") else ""
        note = "" if e["applied"] else "  (kept, not applied)"
        detail = f" {e['detail']}" if e.get("detail") else ""
        print(f"  {e['at']}  {what:<12}{code}{detail}  [{e['source']}]{note}")
    show_callbacks(v)


def _show_status(s: dict[str, Any]) -> None:
    counts = ", ".join(f"{status} {n}" for status, n in s["counts"].items()) or "none yet"
    slot = f", next slot {s['next_slot_at']}" if s.get("next_slot_at") else ""
    print(f"relay {s['relay']} ({s['per_second']}/s): {counts}; queued {s['queued']}, "
          f"in flight {s['in_flight']}{slot}")  # fmt: skip
