"""The ``dispatcher`` command.

``serve`` and ``demo`` run the service; every other command is a client of the
running service's control socket. State lives in ``--home`` (or
``DISPATCHER_HOME``, default ``./var``).

A client command stays light: it loads neither the service, its store nor its
carriers (no aiohttp, twilio or aiosqlite); ``serve`` imports them when it starts.

Exit codes: 0 done; 1 the service refused (not found, conflict, ...); 2 bad
input or configuration; 3 the service is not running.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import signal
import sys
import tomllib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dispatcher import logs, runtime
from dispatcher.cli import campaigns as campaign_cli
from dispatcher.config import Config, load_config
from dispatcher.control.client import call
from dispatcher.core import metrics, report
from dispatcher.errors import DispatcherError, InvalidInput, ServiceUnavailable

EXIT_REFUSED, EXIT_INPUT, EXIT_UNAVAILABLE = 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dispatcher", description="Paced, durable, auditable texts and calls."
    )
    parser.add_argument("--home", help="state folder (default $DISPATCHER_HOME or ./var)")
    parser.add_argument("--config", help="TOML configuration (default $DISPATCHER_CONFIG)")
    parser.add_argument("--version", action=_Version, help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("serve", help="run the service in the foreground (Ctrl-C drains and exits)")
    demo = sub.add_parser("demo", help="run a small campaign on the simulator and show it")
    demo.add_argument("--numbers", type=int, default=3, help="sending numbers (default 3)")
    demo.add_argument("--texts", type=int, default=12, help="texts per number (default 12)")

    send = sub.add_parser("send", help="submit a text")
    send.add_argument("--from", dest="sender", required=True, help="sending number, E.164")
    send.add_argument("--to", dest="recipient", required=True, help="recipient, E.164")
    send.add_argument("--body", required=True)
    send.add_argument("--priority", choices=["automation", "bulk"], default="automation")
    send.add_argument("--idempotency-key")
    _json_flag(send)

    message = sub.add_parser("message", help="a message's history and why it is in its state")
    message.add_argument("id")
    _json_flag(message)

    status = sub.add_parser("status", help="counts by status and the deepest queues")
    status.add_argument("--limit", type=int, default=100, help="numbers to show (default 100)")
    status.add_argument("--number", help="show this sending number only")
    _json_flag(status)

    find = sub.add_parser("find", help="messages to a recipient, newest first")
    find.add_argument("number")
    find.add_argument("--limit", type=int, default=20)
    _json_flag(find)

    cancel = sub.add_parser("cancel", help="cancel a message that has not started sending")
    cancel.add_argument("id")
    _json_flag(cancel)

    for verb in ("pause", "resume"):
        p = sub.add_parser(verb, help=f"{verb} a sending number")
        p.add_argument("number")
        _json_flag(p)

    sub.add_parser("ping", help="check that the service answers")

    top = sub.add_parser("top", help="a live view: queues, sends, campaigns, errors (q quits)")
    top.add_argument(
        "--interval", type=float, default=1.0, help="seconds between refreshes (default 1)"
    )
    top.add_argument("--once", action="store_true", help="print one frame and exit")

    _call_parser(sub)
    _metrics_parser(sub)
    _report_parser(sub)
    campaign_cli.add_parser(sub)

    dnt = sub.add_parser("dnt", help="the Do Not Text list")
    dnt_sub = dnt.add_subparsers(dest="dnt_command", required=True, metavar="ACTION")
    add = dnt_sub.add_parser("add", help="put a number on the list")
    add.add_argument("number")
    add.add_argument("--reason")
    add.add_argument("--by", default="operator", help="who asked (default operator)")
    for verb in ("remove", "check"):
        dnt_sub.add_parser(verb, help=f"{verb} a number").add_argument("number")
    dnt_sub.add_parser("list", help="every entry")
    for p in dnt_sub.choices.values():
        _json_flag(p)
    return parser


class _Version(argparse.Action):
    """``--version``: the installed version, read from the package's metadata only
    when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.update(nargs=0, default=argparse.SUPPRESS)
        super().__init__(option_strings, argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        from dispatcher import __version__  # noqa: PLC0415 - the metadata is read only here

        print(f"{parser.prog} {__version__}")
        parser.exit()


def _call_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    call = sub.add_parser("call", help="voice calls: place, show, find, cancel")
    call_sub = call.add_subparsers(dest="call_command", required=True, metavar="ACTION")
    place = call_sub.add_parser("place", help="place a call that runs a script")
    place.add_argument("--from", dest="sender", required=True, help="calling number, E.164")
    place.add_argument("--to", dest="recipient", required=True, help="contact, E.164")
    script = place.add_mutually_exclusive_group(required=True)
    script.add_argument("--script", help="the name of a script in the configuration")
    script.add_argument(
        "--script-file", help="a script: a JSON list of steps, or TOML with [[steps]] tables"
    )
    script.add_argument("--say", help="a one-step script that says this text")
    place.add_argument("--priority", choices=["automation", "bulk"], default="automation")
    place.add_argument("--idempotency-key")
    show = call_sub.add_parser("show", help="a call's statuses, the steps it ran, and why")
    show.add_argument("id")
    find_calls = call_sub.add_parser("find", help="calls to a contact, newest first")
    find_calls.add_argument("number")
    find_calls.add_argument("--limit", type=int, default=20)
    call_sub.add_parser("cancel", help="cancel a call that is still queued").add_argument("id")
    for p in call_sub.choices.values():
        _json_flag(p)


def _metrics_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("metrics", help="engagement counts by channel (voice and text)")
    parser.add_argument("--campaign", help="only this campaign's texts and calls")
    parser.add_argument("--sender", help="only texts and calls from this number")
    parser.add_argument("--automation", help="only what this automation made")
    when = "an ISO 8601 time, or a duration back from now (24h, 7d)"
    parser.add_argument("--since", help=f"from this time: {when}")
    parser.add_argument("--until", help=f"up to (not including) this time: {when}")
    parser.add_argument("--by", metavar="|".join(metrics.BY), help="one breakdown per key")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON")
    output.add_argument("--csv", action="store_true", help="print CSV rows")


def _report_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "report", help="write an HTML page of the engagement metrics: charts and their numbers"
    )
    parser.add_argument("--out", required=True, metavar="FILE.html", help="the page to write")
    parser.add_argument("--campaign", help="only this campaign's texts and calls")
    when = "an ISO 8601 time, or a duration back from now (24h, 7d)"
    parser.add_argument("--since", help=f"from this time: {when}")
    parser.add_argument("--until", help=f"up to (not including) this time: {when}")
    parser.add_argument(
        "--bucket",
        choices=list(report.BUCKETS),
        help="the step of the charts over time (default: hour when the events span up to "
        "7 days, else day)",
    )


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911 - one exit code per outcome
    args = build_parser().parse_args(argv)
    try:
        config_path = args.config or os.environ.get("DISPATCHER_CONFIG")
        config = load_config(
            Path(config_path) if config_path else None, env=os.environ, home=args.home
        )
        if args.command == "serve":
            return _serve(config)
        if args.command == "demo":
            from dispatcher.cli.demo import run_demo  # noqa: PLC0415 - rich loads only for the demo

            return run_demo(config, numbers=args.numbers, texts=args.texts)
        if args.command == "top":
            from dispatcher.cli.top import run_top  # noqa: PLC0415 - rich loads only for top

            return run_top(config.socket_path, interval=args.interval, once=args.once)
        return asyncio.run(_client_command(config, args))
    except ServiceUnavailable as exc:
        _fail(exc)
        return EXIT_UNAVAILABLE
    except InvalidInput as exc:
        _fail(exc)
        return EXIT_INPUT
    except DispatcherError as exc:
        _fail(exc)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return 130


def _fail(exc: Exception) -> None:
    print(f"dispatcher: error: {exc}", file=sys.stderr)


# -- serve ---------------------------------------------------------------------------


def _serve(config: Config) -> int:
    logs.configure(config.service.log_level)
    runtime.tune()
    asyncio.run(serve(config))
    return 0


async def serve(config: Config, *, on_ready: Callable[[], None] | None = None) -> None:
    """Run the service and its control socket until SIGINT or SIGTERM, then drain."""
    # The service, its HTTP app and their peers load here, never for a client command.
    from dispatcher.compose import serving  # noqa: PLC0415

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with serving(
            config,
            api_token=os.environ.get("DISPATCHER_API_TOKEN"),
            twilio_auth_token=os.environ.get("TWILIO_AUTH_TOKEN"),
        ):
            if config.http.listen:
                print(f"dispatcher: HTTP app on {config.http.listen}", file=sys.stderr)
            print(f"dispatcher: serving; control socket {config.socket_path}", file=sys.stderr)
            if on_ready is not None:
                on_ready()
            await stop.wait()
            print("dispatcher: draining", file=sys.stderr)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    print("dispatcher: stopped", file=sys.stderr)


# -- client commands -----------------------------------------------------------------


async def _client_command(config: Config, args: argparse.Namespace) -> int:
    sock = config.socket_path
    command: str = args.command
    if command == "dnt":
        return await _dnt(sock, args)
    if command == "call":
        return await _call(sock, args)
    if command == "metrics":
        return await _metrics(sock, args)
    if command == "report":
        return await _report(sock, args)
    if command == "campaign":
        return await campaign_cli.run(sock, args)
    if command == "send":
        result = await call(
            sock, "submit", **{"from": args.sender}, to=args.recipient, body=args.body,
            priority=args.priority, idempotency_key=args.idempotency_key,
        )  # fmt: skip
        _out(args, {"id": result["id"], "status": result["status"], **result}, _show_message)
    elif command == "message":
        _out(args, await call(sock, "message", id=args.id), _show_view)
    elif command == "status":
        result = await call(sock, "status", limit=args.limit, number=args.number)
        _out(args, result, _show_status)
    elif command == "find":
        result = await call(sock, "find", to=args.number, limit=args.limit)
        _out(args, result, lambda r: _each(_show_message, r["messages"]))
    elif command == "cancel":
        _out(args, await call(sock, "cancel", id=args.id), _show_message)
    elif command in ("pause", "resume"):
        _out(args, await call(sock, command, number=args.number), _show_number)
    elif command == "ping":
        await call(sock, "ping")
        print("pong")
    return 0


async def _dnt(sock: Path, args: argparse.Namespace) -> int:
    action: str = args.dnt_command
    if action == "add":
        result = await call(sock, "dnt_add", number=args.number, reason=args.reason,
                            added_by=args.by)  # fmt: skip
        _out(args, result, _show_dnt)
    elif action == "remove":
        result = await call(sock, "dnt_remove", number=args.number)
        _out(
            args,
            result,
            lambda r: print(f"{r['number']} {'removed' if r['removed'] else 'was not listed'}"),
        )
    elif action == "check":
        result = await call(sock, "dnt_check", number=args.number)
        _out(args, result, _show_check)
        return 0
    else:
        result = await call(sock, "dnt_list")
        _out(args, result, lambda r: _each(_show_dnt, r["entries"]))
    return 0


async def _call(sock: Path, args: argparse.Namespace) -> int:
    action: str = args.call_command
    if action == "place":
        result = await call(
            sock, "call", **{"from": args.sender}, to=args.recipient,
            script=_script_arg(args), priority=args.priority,
            idempotency_key=args.idempotency_key,
        )  # fmt: skip
        _out(args, result, _show_call)
    elif action == "show":
        _out(args, await call(sock, "call_show", id=args.id), _show_call_view)
    elif action == "find":
        result = await call(sock, "call_find", to=args.number, limit=args.limit)
        _out(args, result, lambda r: _each(_show_call, r["calls"]))
    else:
        _out(args, await call(sock, "call_cancel", id=args.id), _show_call)
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


def _out(args: argparse.Namespace, result: Any, human: Callable[[Any], object]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2))
    else:
        human(result)


def _each(show: Callable[[dict[str, Any]], None], items: list[dict[str, Any]]) -> None:
    for item in items:
        show(item)


def _show_message(m: dict[str, Any]) -> None:
    reason = f" ({m['reason']})" if m.get("reason") else ""
    print(f"{m['id']}  {m['status']}{reason}  {m['from']} -> {m['to']}")


def _show_view(v: dict[str, Any]) -> None:
    _show_message(v)
    print(f"  {v['explanation']}")
    for e in v["history"]:
        note = "" if e["applied"] else "  (kept, not applied)"
        reason = f" {e['reason']}" if e.get("reason") else ""
        code = f" code {e['provider_code']}" if e.get("provider_code") else ""
        print(f"  {e['at']}  {e['status']:<11}{reason}{code}  [{e['source']}]{note}")


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
    if s["numbers"]:
        shown = len(s["numbers"])
        total = s["numbers_total"]
        numbers = "sending number" if total == 1 else "sending numbers"
        queues = "queue" if shown == 1 else f"{shown} deepest queues"
        print(f"{total} {numbers}; the {queues}:")
        print(f"{'number':<16} {'depth':>6} {'in flight':>9}  next slot")
    for n in s["numbers"]:
        paused = "  paused" if n["paused"] else ""
        print(
            f"{n['number']:<16} {n['depth']:>6} {n['in_flight']:>9}  "
            f"{n['next_slot_at'] or '-'}{paused}"
        )


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


def _show_number(n: dict[str, Any]) -> None:
    state = "paused" if n["paused"] else "sending"
    print(f"{n['number']} {state}; {n['depth']} queued")


def _show_dnt(e: dict[str, Any]) -> None:
    reason = f": {e['reason']}" if e.get("reason") else ""
    print(f"{e['number']}  listed since {e['added_at']} by {e['added_by']}{reason}")


def _show_check(r: dict[str, Any]) -> None:
    if r["listed"]:
        _show_dnt(r["entry"])
    else:
        print(f"{r['number']} is not on the Do Not Text list")


async def _metrics(sock: Path, args: argparse.Namespace) -> int:
    names = ("since", "until", "campaign", "sender", "automation", "by")
    asked = {name: getattr(args, name) for name in names}
    metrics.request(now=datetime.now(UTC), prefix="--", **asked)  # bad input says so first
    result = await call(sock, "metrics", **asked)
    if args.csv:
        csv.writer(sys.stdout, lineterminator="\n").writerows(metrics.csv_rows(result))
    else:
        _out(args, result, _show_metrics)
    return 0


async def _report(sock: Path, args: argparse.Namespace) -> int:
    """Writes the page, and prints its absolute path."""
    asked = {name: getattr(args, name) for name in ("since", "until", "campaign")}
    metrics.request(now=datetime.now(UTC), prefix="--", **asked)  # bad input says so first
    out = _report_path(args.out)
    data = await call(sock, "report_data", bucket=args.bucket, **asked)
    _write_report(out, report.render(data))
    print(out)
    return 0


def _report_path(text: str) -> Path:
    """The absolute path of ``--out``, refused early when it cannot be a file."""
    out = Path(text).expanduser().resolve()
    if out.is_dir() or not out.parent.is_dir():
        where = "is a folder" if out.is_dir() else f"has no folder {out.parent}"
        raise InvalidInput(f"--out: cannot write {out}: it {where}", field="--out")
    return out


def _write_report(out: Path, page: str) -> None:
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(
            f"--out: cannot write {out}: {exc.strerror or exc}", field="--out"
        ) from exc


def _show_metrics(result: dict[str, Any]) -> None:
    """A table per channel: a column for the total, and one per key of a breakdown."""
    from rich.console import Console  # noqa: PLC0415 - rich loads only for tables
    from rich.table import Table  # noqa: PLC0415

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


if __name__ == "__main__":
    raise SystemExit(main())
