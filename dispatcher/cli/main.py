"""The ``dispatcher`` command.

``serve`` and ``demo`` run the service; every other command is a client of the
running service's control socket. State lives in ``--home`` (or
``DISPATCHER_HOME``, default ``./var``).

A client command stays light: it loads neither the service, its store nor its
carriers (no aiohttp, twilio or aiosqlite); ``serve`` imports them when it starts.

Exit codes: 0 done; 1 the service refused (not found, conflict, ...); 2 bad
input or configuration; 3 the service is not running; 141 the reader of the output
went away (``dispatcher status --json | head -2``): the command stops quietly, with
the status a Unix tool killed by SIGPIPE gives (128 + 13), so a pipeline under
``set -o pipefail`` treats it as it treats ``cat`` or ``seq``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from dispatcher import logs, runtime
from dispatcher.cli import (
    backup,
    calls,
    consent,
    dnt,
    emails,
    engagement,
    helptext,
    numbers,
    texts,
    workers,
)
from dispatcher.cli import campaigns as campaign_cli
from dispatcher.config import Config, load_config
from dispatcher.control.client import call
from dispatcher.errors import DispatcherError, InvalidInput, ServiceUnavailable

log = logging.getLogger(__name__)
EXIT_REFUSED, EXIT_INPUT, EXIT_UNAVAILABLE = 1, 2, 3
EXIT_PIPE = 128 + signal.SIGPIPE  # 141, as a command killed by SIGPIPE

ClientCommand = Callable[[Path, argparse.Namespace], Coroutine[Any, Any, int]]
"""A client command: it asks the service at the control socket, prints, and gives the
exit code. Each command's parser names its own (``set_defaults(run=...)``)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dispatcher", description="Paced, durable, auditable texts and calls."
    )
    parser.add_argument("--home", help="state folder (default $DISPATCHER_HOME or ./var)")
    parser.add_argument("--config", help="TOML configuration (default $DISPATCHER_CONFIG)")
    parser.add_argument("--version", action=_Version, help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser(
        "serve", help="run the service in the foreground (Ctrl-C drains and exits)",
        description="Run the service in the foreground: the control socket in the home "
        "folder, the HTTP app on http.listen. Ctrl-C or SIGTERM drains and exits. The "
        "options --home and --config go before the command.",
    )  # fmt: skip
    demo = sub.add_parser("demo", help="run a small campaign on the simulator and show it")
    demo.add_argument("--numbers", type=int, default=3, help="sending numbers (default 3)")
    demo.add_argument("--texts", type=int, default=12, help="texts per number (default 12)")

    texts.add_parsers(sub)
    sub.add_parser("ping", help="check that the service answers").set_defaults(run=_ping)

    top = sub.add_parser("top", help="a live view: queues, sends, campaigns, errors (q quits)")
    top.add_argument(
        "--interval", type=float, default=1.0, help="seconds between refreshes (default 1)"
    )
    top.add_argument("--once", action="store_true", help="print one frame and exit")

    calls.add_parser(sub)
    emails.add_parser(sub)
    engagement.add_parsers(sub)
    campaign_cli.add_parser(sub)
    dnt.add_parser(sub)
    consent.add_parser(sub)
    backup.add_parser(sub)
    workers.add_parser(sub)
    return helptext.finish(parser)


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


def main(argv: Sequence[str] | None = None) -> int:
    """The command: its exit code (see the module's doc). An output whose reader went
    away (a closed pipe) ends it quietly with :data:`EXIT_PIPE`, whatever wrote."""
    try:
        try:
            return _main(argv)
        finally:  # what is still buffered goes now, while a closed pipe can be told
            sys.stdout.flush()
    except BrokenPipeError:
        # The control socket's broken pipes are ServiceUnavailable: this is an output.
        # Later writes (and the interpreter's last flush) go nowhere, without a word.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_PIPE


def _main(argv: Sequence[str] | None) -> int:  # noqa: PLR0911 - one exit code per outcome
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
        if args.command == "backup":
            return backup.run_backup(config, args)
        if args.command == "top":
            from dispatcher.cli.top import run_top  # noqa: PLC0415 - rich loads only for top

            return run_top(config.socket_path, interval=args.interval, once=args.once)
        run: ClientCommand = args.run
        setattr(args, numbers.REGION, config.campaigns.default_region)
        return asyncio.run(run(config.socket_path, args))
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
    logs.configure(config.service.log_level, os.environ.get("DISPATCHER_LOG_FORMAT", ""))
    runtime.tune()
    runtime.run(serve(config), loop=config.performance.loop)
    return 0


async def serve(config: Config, *, on_ready: Callable[[], None] | None = None) -> None:
    """Run the service and its control socket until SIGINT or SIGTERM, then drain."""
    # The service, its HTTP app and their peers load here, never for a client command.
    from dispatcher.compose import serving  # noqa: PLC0415

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    api_token = os.environ.get("DISPATCHER_API_TOKEN") or None
    try:
        async with serving(
            config,
            api_token=api_token,
            twilio_auth_token=os.environ.get("TWILIO_AUTH_TOKEN"),
        ):
            if config.http.listen:
                print(f"dispatcher: HTTP app on {config.http.listen}", file=sys.stderr)
                if api_token is None:
                    _warn_no_token(config)
            print(f"dispatcher: serving; control socket {config.socket_path}", file=sys.stderr)
            if on_ready is not None:
                on_ready()
            await stop.wait()
            print("dispatcher: draining", file=sys.stderr)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    print("dispatcher: stopped", file=sys.stderr)


def _warn_no_token(config: Config) -> None:
    """Say it loudly, in the log and on stderr: without a token the API refuses all."""
    metrics = " (and GET /metrics)" if not config.http.metrics_public else ""
    log.warning("http.no_api_token", extra={
        "listen": config.http.listen,
        "effect": f"every /v1 request{metrics} is refused with 401",
        "fix": "set DISPATCHER_API_TOKEN",
    })  # fmt: skip
    print(
        f"dispatcher: WARNING: DISPATCHER_API_TOKEN is not set: every /v1 request{metrics} "
        "is refused with 401 Unauthorized. Set it to a long random secret and restart.",
        file=sys.stderr,
    )


async def _ping(sock: Path, _: argparse.Namespace) -> int:
    await call(sock, "ping")
    print("pong")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
