"""The help of every command: what it does, and examples to copy.

:func:`finish` walks the built parser once: each command's ``--help`` starts with
the line the command list shows for it and ends with its examples from
:data:`EXAMPLES`; ``serve --help`` also lists every environment variable the
configuration reads, generated from the configuration's own sections
(:func:`environment`), so a key added there is listed here without a word changed.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator
from datetime import timedelta

from dispatcher.config import Config

TOP = (
    "dispatcher --config config/dispatcher.toml serve",
    'dispatcher send --from +15550000001 --to 555-010-0001 --body "Hello"',
    "dispatcher status",
    "dispatcher campaign --help",
)
"""Examples under the command list of ``dispatcher --help``."""

EXAMPLES: dict[str, tuple[str, ...]] = {
    "serve": (
        "dispatcher --config config/dispatcher.toml serve",
        "DISPATCHER_API_TOKEN=$(openssl rand -hex 32) dispatcher serve",
    ),
    "demo": ("dispatcher demo", "dispatcher demo --numbers 5 --texts 20"),
    "send": (
        'dispatcher send --from +15550000001 --to +15550100001 --body "Hello" --json',
        'dispatcher send --from 555-000-0001 --to "(555) 010-0001" --body "Hi" --priority bulk',
    ),
    "message": ("dispatcher message msg_3f2a...", "dispatcher message msg_3f2a... --json"),
    "status": ("dispatcher status", "dispatcher status --number +15550000001 --json"),
    "find": ("dispatcher find +15550100001", "dispatcher find 555-010-0001 --limit 5 --json"),
    "cancel": ("dispatcher cancel msg_3f2a...",),
    "pause": ("dispatcher pause +15550000001",),
    "resume": ("dispatcher resume +15550000001",),
    "ping": ("dispatcher ping",),
    "workers": ("dispatcher workers", "dispatcher workers --json"),
    "top": ("dispatcher top", "dispatcher top --once", "dispatcher top --interval 5"),
    "call place": (
        "dispatcher call place --from +15550000100 --to +15550200001 --script reminder",
        'dispatcher call place --from 555-000-0100 --to 555-020-0001 --say "Your order is ready"',
        "dispatcher call place --from +15550000100 --to +15550200001 --script-file steps.toml",
    ),
    "call show": ("dispatcher call show call_8e1c...",),
    "call find": ("dispatcher call find +15550200001 --json",),
    "call cancel": ("dispatcher call cancel call_8e1c...",),
    "email send": (
        "dispatcher email send --from news@example.com --to ann@example.org "
        '--subject "Your order" --text "It ships today."',
        "dispatcher email send --from news@example.com --to ann@example.org "
        '--subject "News" --text "Hi" --html news.html --priority bulk',
        "dispatcher email send --from news@example.com --to ann@example.org "
        '--subject "Receipt" --text "Thanks" --html receipt.html --no-track-opens',
    ),
    "email show": ("dispatcher email show eml_51c0...",),
    "email cancel": ("dispatcher email cancel eml_51c0...",),
    "email resend": ("dispatcher email resend eml_51c0...",),
    "email status": ("dispatcher email status --json",),
    "metrics": (
        "dispatcher metrics --since 24h --by campaign",
        'dispatcher metrics --campaign "Spring reminders" --json',
        "dispatcher metrics --sender +15550000001 --by automation --csv",
    ),
    "report": ("dispatcher report --out report.html --since 7d",),
    "backup": (
        "dispatcher backup /var/backups/dispatcher-$(date -u +%F).db",
        "dispatcher --home /var/lib/dispatcher backup copy.db --json",
    ),
    "campaign create": (
        'dispatcher campaign create --name "Spring reminders" --contacts contacts.csv '
        '--template "Hi {first_name|there}, see you on {Appointment Date}." '
        "--from +15550000201,+15550000202",
        "dispatcher campaign create --name Calls --contacts contacts.csv --template reminder "
        "--channel voice --from +15550000100 --send-window 09:00-18:00 --draft",
    ),
    "campaign list": ("dispatcher campaign list",),
    "campaign preview": (
        "dispatcher campaign preview cmp_7d2e...",
        "dispatcher campaign preview cmp_7d2e... --limit 10 --json",
    ),
    "campaign test": (
        "dispatcher campaign test cmp_7d2e... --to +15550100099",
        "dispatcher campaign test cmp_7d2e... --to 555-010-0099 --line 12",
    ),
    "campaign contacts": (
        "dispatcher campaign contacts cmp_7d2e...",
        "dispatcher campaign contacts cmp_7d2e... --state expired --state canceled",
        "dispatcher campaign contacts cmp_7d2e... --csv > results.csv",
    ),
    "campaign show": (
        "dispatcher campaign show cmp_7d2e...",
        "dispatcher campaign show cmp_7d2e... --follow",
    ),
    "campaign pause": ("dispatcher campaign pause cmp_7d2e...",),
    "campaign resume": ("dispatcher campaign resume cmp_7d2e...",),
    "campaign cancel": ("dispatcher campaign cancel cmp_7d2e...",),
    "dnt add": ('dispatcher dnt add +15550100001 --reason "asked by phone"',),
    "dnt remove": ("dispatcher dnt remove 555-010-0001",),
    "dnt check": ("dispatcher dnt check +15550100001",),
    "dnt list": ("dispatcher dnt list --json",),
    "consent check": (
        "dispatcher consent check +15550100001",
        "dispatcher consent check ann@example.org --channel email --json",
    ),
    "consent add": (
        'dispatcher consent add 555-010-0001 --channel voice --reason "asked by phone"',
        "dispatcher consent add ann@example.org --sender news.example.com",
    ),
    "consent remove": ("dispatcher consent remove +15550100001 --channel text",),
    "consent list": ("dispatcher consent list --channel email --json",),
    "consent history": ("dispatcher consent history +15550100001",),
    "consent import": ("dispatcher consent import opt-outs.csv",),
    "consent export": ("dispatcher consent export > consent.csv",),
}
"""Examples of each command, by its words after ``dispatcher``."""

ENVIRONMENT_ONLY: dict[str, str] = {
    "DISPATCHER_HOME": "the state folder (--home; default ./var)",
    "DISPATCHER_CONFIG": "the TOML configuration file (--config)",
    "DISPATCHER_API_TOKEN": "the HTTP API's bearer token; without it every /v1 request is 401",
    "DISPATCHER_LOG_FORMAT": "json: one JSON object a line (default: human lines)",
    "DISPATCHER_PROVIDER": "simulator or twilio (sets provider.url)",
    "DISPATCHER_DEFAULT_REGION": "campaigns.default_region: the region of national numbers",
    "DISPATCHER_PUBLIC_URL": "http.public_url: the HTTP app's address as Twilio reaches it",
    "TWILIO_ACCOUNT_SID": "the Twilio account (with provider twilio://)",
    "TWILIO_AUTH_TOKEN": "the Twilio auth token; also checks Twilio's signatures",
}
"""The variables read outside the configuration's ``DISPATCHER_<SECTION>_<KEY>`` form:
the process's own settings, the secrets, and the short names of common keys."""


def finish(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give every command of ``parser`` its description and examples; ``serve`` its
    environment variables."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "\n  ".join(("examples:", *TOP)) + "\n\nEach command's --help has its examples."
    for path, command, summary in _commands(parser, ()):
        name = " ".join(path)
        command.formatter_class = argparse.RawDescriptionHelpFormatter
        command.description = command.description or summary
        examples = EXAMPLES.get(name, ())
        if examples:
            heading = "example:" if len(examples) == 1 else "examples:"
            command.epilog = "\n  ".join((heading, *examples))
        if name == "serve":
            command.epilog = f"{command.epilog}\n\n{environment()}"
    return parser


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str | None]]:
    """Every command and group under ``parser``: its words, its parser and its summary."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            summaries = {a.dest: a.help for a in action._choices_actions}
            for name, command in action.choices.items():
                words = (*path, name)
                yield words, command, summaries.get(name)
                yield from _commands(command, words)


def environment() -> str:
    """Every environment variable the configuration reads, with its key's default: one
    per key of each section (``DISPATCHER_<SECTION>_<KEY>``), then the others."""
    lines = ["environment (each DISPATCHER_<SECTION>_<KEY> wins over the file's key):"]
    defaults = Config()
    for section in dataclasses.fields(Config):
        value = getattr(defaults, section.name)
        if not dataclasses.is_dataclass(value):
            continue
        for key in dataclasses.fields(value):
            var = f"DISPATCHER_{section.name}_{key.name}".upper()
            lines.append(f"  {var:<44} {_default(getattr(value, key.name), key)}")
    lines.append("and:")
    lines += [f"  {var:<44} {meaning}" for var, meaning in ENVIRONMENT_ONLY.items()]
    return "\n".join(lines)


def _default(value: object, key: dataclasses.Field[object]) -> str:
    if not key.repr:  # a secret: shown nowhere
        return "(secret; environment only)"
    if isinstance(value, timedelta):
        return f"default {_duration(value)}"
    if isinstance(value, (list, tuple, dict)) and not value:
        return "default none"
    if isinstance(value, bool):
        return f"default {str(value).lower()}"
    if isinstance(value, str):
        return f"default {_short(value)!r}"
    return f"default {value}"


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _duration(span: timedelta) -> str:
    """A duration as the configuration writes it: 500ms, 2s, 15m, 10h."""
    ms = round(span.total_seconds() * 1000)
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
