"""Automation rules, the pure part: on a result, after an optional delay, an engagement.

Rules live in a TOML file (``automations.file``, e.g. ``config/automations.toml``)::

    [[automation]]
    name = "call-when-delivered"
    on = "text.delivered"          # the result that triggers it
    when = { campaign = "spring" } # optional filters: campaign (id or name), from, digits
    delay = "30s"                  # optional
    do = "call"                    # or "text", or "email"
    script = "reminder"            # a call's script (a configured name)
    # body = "..."                 # a text's body
    # from = "+15550000100"        # default: the number the result came from

An email (``do = "email"``) needs ``from`` (an address), ``subject`` and ``text`` (and
may have ``html``, and ``track_opens`` / ``track_clicks`` to override the ``[email]``
switches for its emails): templates filled with the triggering result's fields
(:data:`TRIGGER_FIELDS`, see :mod:`dispatcher.core.email_templates`), checked when the
rule is read. It goes to ``to``, or without one to the address of the email whose
result triggered it (a text's or call's contact is a phone number: there ``to`` is
required).

Results: ``text.sent``, ``text.delivered``, ``text.undelivered``, ``text.failed``;
``call.answered``, ``call.completed``, ``call.hangup``, ``call.busy``,
``call.no_answer``, ``call.failed``, ``call.canceled``, ``call.human``,
``call.machine``, ``call.prompt`` (``when.digits`` picks an answer);
``email.open``, ``email.click``, ``email.bounce``, ``email.unsubscribe``,
``email.complaint`` (a text or call needs a phone number: on an email's result the
action is an email).

A rule is checked against its typed model (:class:`NewAutomation`, the same for the
file and ``POST /v1/automations``), then for what a model cannot say; every error
names the rule and the key. :func:`matches` says whether a result fires a rule. The
engagement a rule makes carries a :class:`~dispatcher.core.results.Trigger`. Nothing
here stores, sends or reads a clock: the rule engine that does
(:mod:`dispatcher.engine.automations`) imports these.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from dispatcher import jsonio
from dispatcher.core.durations import parse_duration
from dispatcher.core.email_templates import render_email
from dispatcher.core.emails import address
from dispatcher.core.model import check_body
from dispatcher.core.numbers import e164
from dispatcher.core.results import RESULTS, Observed, Run
from dispatcher.core.wire import Body, Model, Written, wire
from dispatcher.errors import ConfigError, InvalidInput

if TYPE_CHECKING:
    _Result = str
else:
    _Result = Literal[tuple(sorted(RESULTS))]


class Action(StrEnum):
    """What a rule does: send a text or place a call to the contact, or send an email."""

    TEXT = "text"
    CALL = "call"
    EMAIL = "email"


class When(Model, frozen=True):
    """An automation's filters: every one given must match the result."""

    campaign: Annotated[str, Meta(description="a campaign's id or name")] | UnsetType = UNSET
    from_: Written | UnsetType = UNSET
    digits: Annotated[str, Meta(description="a prompt's answer")] | UnsetType = UNSET


class NewAutomation(Model, frozen=True):
    """An automation rule: on a result, after a delay, an engagement to the same contact
    (a ``[[automation]]`` table of the automations file, or ``POST /v1/automations``)."""

    name: Annotated[
        str,
        Meta(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$",
             description="a name is a letter then letters, digits, _ or -"),
    ]  # fmt: skip
    on: Annotated[_Result, Meta(description="the result that triggers it")]
    do: Annotated[Action, Meta(description="the engagement")]
    when: When | UnsetType = UNSET
    delay: Annotated[str, Meta(description="a duration such as 30s, 10m or 1h",
                               examples=["10m"])] | UnsetType = UNSET  # fmt: skip
    script: Annotated[str, Meta(description="a call's script (a configured name)")] | UnsetType = (
        UNSET
    )
    body: Body | UnsetType = UNSET
    from_: Annotated[str, Meta(description="a sending number with its country code, like "
                               "+14155550123 (a text or call; by default the number the "
                               "result came from), or an email's From address")] | UnsetType | (
        None
    ) = UNSET  # fmt: skip
    to: Annotated[str, Meta(description="an email's address (by default that of the email "
                            "whose result triggered it)")] | UnsetType = UNSET  # fmt: skip
    subject: Annotated[str, Meta(description="an email's subject: a template")] | UnsetType = UNSET
    text: Annotated[str, Meta(description="an email's text part: a template")] | UnsetType = UNSET
    html: Annotated[str, Meta(description="an email's HTML part: a template, autoescaped")] | (
        UnsetType
    ) = UNSET
    track_opens: Annotated[bool, Meta(description="an email's open pixel (true) or none "
                                      "(false); default: the [email] track_opens switch's")] | (
        UnsetType
    ) = UNSET  # fmt: skip
    track_clicks: Annotated[bool, Meta(description="an email's links through the click "
                                       "redirect (true) or as written (false); default: the "
                                       "[email] track_clicks switch's")] | (
        UnsetType
    ) = UNSET  # fmt: skip


_KEYS = sorted(NewAutomation.__struct_encode_fields__)
_FILTERS = sorted(When.__struct_encode_fields__)
_ACTIONS = ", ".join(f'"{action}"' for action in Action)  # "text", "call", "email"
TRIGGER_FIELDS = ("contact", "sender", "result", "source_id")
"""The fields an automation's email is filled with: the triggering result's contact (a
number or an address), its sender (a number or a From address), its name
(``text.delivered``) and the id of its text, call or email."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailAction:
    """The email a rule sends: its templates, checked."""

    sender: str
    recipient: str | None  # None: the address of the email whose result triggered it
    subject: str
    text: str
    html: str | None = None
    track_opens: bool | None = None  # None: the [email] switch's
    track_clicks: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """A checked rule: its result, its filters, its delay and what it does."""

    name: str
    on: str
    do: Action
    delay: timedelta = timedelta(0)
    script: str | None = None
    body: str | None = None
    sender: str | None = None
    when: Mapping[str, str] | None = None
    email: EmailAction | None = None


def trigger_fields(run: Run) -> dict[str, str]:
    """What an automation's email is filled with (:data:`TRIGGER_FIELDS`)."""
    return {"contact": run.contact, "sender": run.sender, "result": run.result,
            "source_id": run.source_id}  # fmt: skip


def matches(rule: Rule, seen: Observed) -> bool:
    if rule.on != seen.result:
        return False
    when = rule.when or {}
    if "campaign" in when and when["campaign"] not in (seen.campaign_id, seen.campaign_name):
        return False
    if "from" in when and when["from"] != seen.sender:
        return False
    return "digits" not in when or when["digits"] == (seen.detail or "")


def load_rules(path: Path, *, scripts: Collection[str]) -> list[Rule]:
    """The rules of an automations file, each checked (errors name the rule and key)."""
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: the automations file does not exist",
                          field="automations.file") from None  # fmt: skip
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", field="automations.file") from exc
    if unknown := sorted(set(raw) - {"automation"}):
        raise ConfigError(f"{path}: unknown key {', '.join(unknown)} (rules are "
                          "[[automation]] tables)", field=unknown[0])  # fmt: skip
    items = raw.get("automation", [])
    if not isinstance(items, list):
        raise ConfigError(f"{path}: automation must be [[automation]] tables", field="automation")
    rules = [parse_rule(item, index, scripts=scripts, where=str(path)) for index, item in
             enumerate(items)]  # fmt: skip
    names = [r.name for r in rules]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise ConfigError(f"{path}: two automations are named {dupes[0]!r}", field="name")
    return rules


def parse_rule(item: object, index: int, *, scripts: Collection[str], where: str) -> Rule:
    """One rule, checked against its model (:class:`NewAutomation`), then for what a
    model cannot say: a delay's length, the numbers, a text's body, a call's script by
    name. Errors name the rule and the key."""

    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{where}: automation {index + 1}: {key}: {why}",
                           field=f"automation[{index}].{key}")  # fmt: skip

    if not isinstance(item, dict):
        raise bad("automation", "must be a table")
    try:
        spec = msgspec.convert(item, NewAutomation)
    except msgspec.ValidationError as exc:
        found = jsonio.problem(exc)
        key = str(found.path[0])
        raise bad(key, _why(found, item.get(key), scripts)) from None
    when = _filters(spec, bad)
    try:
        delay = (
            parse_duration(spec.delay, field="delay")
            if isinstance(spec.delay, str)
            else timedelta(0)
        )
    except InvalidInput as exc:
        raise bad("delay", str(exc)) from None
    if spec.on.startswith("email.") and spec.do is not Action.EMAIL:
        raise bad("do", f'a {spec.do} needs a phone number: on an email\'s result, do "email"')
    if spec.do is Action.EMAIL:
        return Rule(name=spec.name, on=spec.on, do=spec.do, delay=delay, when=when,
                    email=_email_action(spec, bad))  # fmt: skip
    for key in ("to", "subject", "text", "html", "track_opens", "track_clicks"):
        if getattr(spec, key) is not UNSET:
            raise bad(key, f"only an email automation has {key} (this one is a {spec.do})")
    try:
        sender = e164(spec.from_, field="from") if isinstance(spec.from_, str) else None
    except InvalidInput as exc:
        raise bad("from", str(exc)) from None
    if spec.do is Action.TEXT:
        if not isinstance(spec.body, str):
            raise bad("body", _why(None, None, scripts, key="body"))
        try:
            check_body(spec.body)
        except InvalidInput as exc:
            raise bad("body", str(exc)) from None
        return Rule(name=spec.name, on=spec.on, do=spec.do, delay=delay, body=spec.body,
                    sender=sender, when=when)  # fmt: skip
    script = spec.script if isinstance(spec.script, str) else None
    if script is None or script not in scripts:
        raise bad("script", _why(None, script, scripts, key="script"))
    return Rule(name=spec.name, on=spec.on, do=spec.do, delay=delay, script=script,
                sender=sender, when=when)  # fmt: skip


def _filters(spec: NewAutomation, bad: Callable[[str, str], ConfigError]) -> dict[str, str]:
    """A rule's filters, checked: digits for a prompt only, ``from`` a number (or, on an
    email's result, its From address)."""
    when = {wire(k): v for k, v in msgspec.structs.asdict(spec.when).items()
            if v is not UNSET} if spec.when else {}  # fmt: skip
    if "digits" in when and spec.on != "call.prompt":
        raise bad("when", "digits only filter call.prompt")
    try:
        if "from" in when and spec.on.startswith("email."):  # as the email stores it
            when["from"] = address(when["from"], field="when.from", display_name=True)
        elif "from" in when:
            when["from"] = e164(when["from"], field="when.from")
    except InvalidInput as exc:
        raise bad("from", str(exc)) from None
    return when


def _email_action(spec: NewAutomation, bad: Callable[[str, str], ConfigError]) -> EmailAction:
    """A rule's email, checked: its addresses, and its templates filled with sample
    trigger fields (a template that does not parse, or uses another field, is refused
    here, naming the key and its line)."""
    for key in ("body", "script"):
        if getattr(spec, key) is not UNSET:
            raise bad(key, f"an email automation has no {key} (it has subject, text, html)")
    if not isinstance(spec.from_, str):
        raise bad("from", "an email automation needs its From address")
    if not isinstance(spec.to, str) and not spec.on.startswith("email."):
        raise bad("to", f"on {spec.on} the contact is a phone number: give the address "
                        "to email")  # fmt: skip
    for key in ("subject", "text"):
        if not isinstance(getattr(spec, key), str):
            raise bad(key, f"an email automation needs its {key}")
    html = spec.html if isinstance(spec.html, str) else None
    subject, text = str(spec.subject), str(spec.text)
    try:
        sender = address(spec.from_, field="from", display_name=True)
        recipient = address(spec.to, field="to") if isinstance(spec.to, str) else None
        render_email(subject=subject, text=text, html=html,
                     fields=dict.fromkeys(TRIGGER_FIELDS, "x"))  # fmt: skip
    except InvalidInput as exc:
        raise bad(exc.field or "text", str(exc)) from None
    return EmailAction(
        sender=sender, recipient=recipient, subject=subject, text=text, html=html,
        track_opens=None if isinstance(spec.track_opens, UnsetType) else spec.track_opens,
        track_clicks=None if isinstance(spec.track_clicks, UnsetType) else spec.track_clicks,
    )  # fmt: skip


def _why(
    found: jsonio.Problem | None, value: object, scripts: Collection[str], *, key: str = ""
) -> str:
    """What is wrong with a rule's ``key`` (or the key ``found`` names) holding ``value``."""
    key = str(found.path[0]) if found else key
    if found and found.kind == "unknown":
        if len(found.path) == 1:
            return f"unknown key (known: {', '.join(_KEYS)})"
        return f"unknown filter {found.path[-1]} (known: {', '.join(_FILTERS)})"
    known = ", ".join(sorted(scripts)) or "none are configured"
    special = {
        "on": f"{value!r} is not a result; use one of {', '.join(sorted(RESULTS))}",
        "do": f"must be one of {_ACTIONS}, not {value!r}",
        "when": "a table of filters with text values",
        "body": "a text automation needs its body",
        "script": f"no call script is named {value!r} (known: {known})",
    }
    if key in special:
        return special[key]
    return jsonio.description(NewAutomation, (key,)) or (found.detail if found else "invalid")
