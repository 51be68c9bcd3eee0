"""Call scripts: validated up front, walked step by step into voice instructions.

A script is a list of steps, each a table with exactly one action key and its
options, in the configuration (``[[scripts.NAME]]`` tables) or in a request (a JSON
list)::

    [{"say": "Hi, this is Acme Dental."},
     {"gather": "Press 1 to confirm, 2 to speak to us.", "digits": 1,
      "on": {"1": "confirmed", "2": "desk"}},
     {"say": "We did not get that. Goodbye.", "goto": "end"},
     {"label": "confirmed", "say": "Thank you, see you tomorrow.", "goto": "end"},
     {"label": "desk", "dial": "+15550001111"}]

Steps run in order; ``goto`` jumps to a step's ``label`` (``"end"`` ends the script)
and a Gather's ``on`` table branches on the digits or words received. Actions:

- ``say`` text (``voice``, ``language``, ``loop``); ``play`` an audio URL (``loop``);
  ``pause`` seconds;
- ``gather`` a prompt, then digits or speech (``input``: dtmf, speech or "dtmf
  speech"; ``digits``; ``timeout``; ``on``; ``otherwise``): the answer is a Prompt;
- ``record`` up to N seconds (``beep``);
- ``dial`` a number (``timeout``, ``caller_id``); ``conference`` a room name;
  ``notify`` a list of collaborators, rung at once: the first to answer takes the
  call (``timeout``);
- ``voicemail_drop`` a message left after the beep when an answering machine
  answers (answering-machine detection waits for the end of the greeting); a
  human never hears it. It ends the call;
- ``play_drop`` a message, with ``agent``: the agent is connected, and when the
  agent drops off the message keeps playing to the contact;
- ``activity`` "text" (``body``, optional ``from``) or "call" (``script``, a named
  script; optional ``from``): another engagement, triggered when the step is reached.

A message (a prompt, a voicemail, a play drop) is spoken, or played when it is an
``http(s)://`` URL. Walking a script gives provider-neutral instructions (:class:`Say`,
:class:`Gather`, :class:`Dial`, ..., :data:`Instruction`); a channel renders them in
its wire format (TwiML: :mod:`dispatcher.channels.twiml`). Every step's instructions
end with a redirect to the next step, so each step executed reaches the service and
is recorded. This module imports no provider SDK.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from dispatcher.calls import VoiceResult
from dispatcher.errors import InvalidInput
from dispatcher.model import check_body
from dispatcher.numbers import e164

MAX_STEPS = 100
MAX_TEXT = 4096
END = "end"

ACTIONS: dict[str, VoiceResult] = {
    "say": VoiceResult.SAY,
    "play": VoiceResult.PLAY,
    "pause": VoiceResult.PAUSE,
    "gather": VoiceResult.GATHER,
    "record": VoiceResult.RECORD,
    "dial": VoiceResult.DIAL,
    "conference": VoiceResult.CONFERENCE,
    "notify": VoiceResult.NOTIFY,
    "voicemail_drop": VoiceResult.VOICEMAIL_DROP,
    "play_drop": VoiceResult.PLAY_DROP,
    "activity": VoiceResult.ACTIVITY,
}
_SPOKEN = {"voice", "language"}
OPTIONS: dict[str, frozenset[str]] = {
    "say": frozenset(_SPOKEN | {"loop"}),
    "play": frozenset({"loop"}),
    "pause": frozenset(),
    "gather": frozenset(_SPOKEN | {"input", "digits", "timeout", "on", "otherwise"}),
    "record": frozenset({"beep"}),
    "dial": frozenset({"timeout", "caller_id"}),
    "conference": frozenset(),
    "notify": frozenset({"timeout"}),
    "voicemail_drop": frozenset(_SPOKEN),
    "play_drop": frozenset(_SPOKEN | {"agent"}),
    "activity": frozenset({"body", "script", "from"}),
}
_COMMON = frozenset({"label", "goto"})
_LABEL = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_ROOM = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,127}")
_DIGITS = re.compile(r"[0-9*#]{1,20}")
_INPUTS = {"dtmf", "speech", "dtmf speech"}


@dataclass(frozen=True, slots=True)
class Step:
    """One validated step: its action, the action's value and options."""

    action: str
    value: Any
    options: Mapping[str, Any] = field(default_factory=dict)
    label: str | None = None
    goto: str | None = None

    @property
    def result(self) -> VoiceResult:
        return ACTIONS[self.action]


@dataclass(frozen=True, slots=True)
class Script:
    """A validated script. ``to_json`` is its canonical form, stored with each call."""

    steps: tuple[Step, ...]
    labels: Mapping[str, int]

    @property
    def detects_machine(self) -> bool:
        """A voicemail drop needs answering-machine detection (to the end of the greeting)."""
        return any(s.action == "voicemail_drop" for s in self.steps)

    def target(self, label: str) -> int:
        return len(self.steps) if label == END else self.labels[label]

    def after(self, index: int) -> int:
        """The step that follows step ``index`` (its ``goto``, else the next one)."""
        goto = self.steps[index].goto
        return self.target(goto) if goto else index + 1

    def to_json(self) -> str:
        return json.dumps([_raw(s) for s in self.steps], sort_keys=True, separators=(",", ":"))

    def named_scripts(self) -> set[str]:
        """Named scripts its ``activity`` steps place calls with."""
        return {s.options["script"] for s in self.steps if s.action == "activity" and
                s.value == "call"}  # fmt: skip


def _raw(step: Step) -> dict[str, Any]:
    raw: dict[str, Any] = {step.action: step.value, **step.options}
    if step.label:
        raw["label"] = step.label
    if step.goto:
        raw["goto"] = step.goto
    return raw


@functools.lru_cache(maxsize=1024)
def from_json(text: str) -> Script:
    """A stored script (validated when it was stored; validated again here)."""
    return parse_script(json.loads(text))


def parse_script(raw: object, *, known: Collection[str] | None = None) -> Script:
    """Validate a script from a request or the configuration. ``known`` is the set of
    named scripts an ``activity`` step may place a call with (None: not checked)."""
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("a script is a non-empty list of steps", field="script")
    if len(raw) > MAX_STEPS:
        raise InvalidInput(f"a script has at most {MAX_STEPS} steps, not {len(raw)}",
                           field="script")  # fmt: skip
    steps = [_step(i, item, known) for i, item in enumerate(raw)]
    labels: dict[str, int] = {}
    for i, step in enumerate(steps):
        if step.label is None:
            continue
        if step.label in labels or step.label == END:
            reason = (
                "is reserved" if step.label == END else f"is also step {labels[step.label] + 1}"
            )
            raise _bad(i, step.action, "label", f"label {step.label!r} {reason}")
        labels[step.label] = i
    for i, step in enumerate(steps):
        targets = [("goto", step.goto)] if step.goto else []
        if step.action == "gather":
            targets += [(f"on.{k}", v) for k, v in step.options.get("on", {}).items()]
            if "otherwise" in step.options:
                targets.append(("otherwise", step.options["otherwise"]))
        for where, label in targets:
            if label != END and label not in labels:
                raise _bad(i, step.action, where, f"no step has the label {label!r}")
    script = Script(steps=tuple(steps), labels=labels)
    _check_silent_loops(script)
    return script


_SILENT = {"activity", "voicemail_drop"}  # a human hears neither


def _check_silent_loops(script: Script) -> None:
    """A ``goto`` loop through steps a contact never hears would never end: refused."""
    for start, step in enumerate(script.steps):
        if step.action not in _SILENT:
            continue
        seen = {start}
        index = script.after(start)
        while index < len(script.steps) and script.steps[index].action in _SILENT:
            if index in seen:
                raise _bad(start, step.action, "goto", "its goto loops back through steps "
                           "the contact never hears, so the call would never go on")  # fmt: skip
            seen.add(index)
            index = script.after(index)


def _bad(index: int, action: str, key: str, why: str) -> InvalidInput:
    return InvalidInput(f"script step {index + 1} ({action}): {why}",
                        field=f"script[{index}].{key}")  # fmt: skip


def _step(index: int, item: object, known: Collection[str] | None) -> Step:
    if not isinstance(item, dict):
        raise InvalidInput(f"script step {index + 1}: a step is a table like "
                           '{"say": "Hello"}', field=f"script[{index}]")  # fmt: skip
    actions = [k for k in item if k in ACTIONS]
    if len(actions) != 1:
        found = ", ".join(actions) or "none"
        raise InvalidInput(
            f"script step {index + 1}: needs exactly one action of "
            f"{', '.join(ACTIONS)} (found {found})",
            field=f"script[{index}]",
        )
    action = actions[0]
    allowed = OPTIONS[action] | _COMMON | {action}
    if unknown := sorted(set(item) - allowed):
        raise _bad(index, action, unknown[0], f"unknown option {', '.join(unknown)} "
                   f"(allowed: {', '.join(sorted(allowed - {action}))})")  # fmt: skip
    check = _Checker(index, action, item)
    value = _VALUES[action](check, item[action])
    options = {k: _OPTION_CHECKS[k](check, v, k) for k, v in item.items() if k in OPTIONS[action]}
    if action == "play_drop" and "agent" not in options:
        raise _bad(index, action, "agent", "a play drop needs the agent's number in 'agent'")
    if action == "activity":
        _check_activity(check, value, options, known)
    label = check.label(item["label"], "label") if "label" in item else None
    goto = check.label(item["goto"], "goto") if "goto" in item else None
    return Step(action=action, value=value, options=options, label=label, goto=goto)


@dataclass(frozen=True, slots=True)
class _Checker:
    index: int
    action: str
    item: Mapping[str, Any]

    def fail(self, key: str, why: str) -> InvalidInput:
        return _bad(self.index, self.action, key, why)

    def text(self, value: object, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, "must be non-empty text")
        if len(value) > MAX_TEXT:
            raise self.fail(key, f"is {len(value)} characters; the limit is {MAX_TEXT}")
        return value

    def url(self, value: object, key: str) -> str:
        text = self.text(value, key)
        if not is_url(text) or any(c.isspace() for c in text):
            raise self.fail(key, f"must be an http(s):// URL, not {text!r}")
        return text

    def message(self, value: object, key: str) -> str:
        """Text to speak, or an audio URL to play."""
        text = self.text(value, key)
        return self.url(text, key) if is_url(text) else text

    def integer(self, value: object, key: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, f"must be a whole number from {low} to {high}, not {value!r}")
        return value

    def number(self, value: object, key: str) -> str:
        if not isinstance(value, str):
            raise self.fail(key, f"must be an E.164 number like +14155550123, not {value!r}")
        try:
            return e164(value, field=key)
        except InvalidInput as exc:
            raise self.fail(key, str(exc)) from None

    def label(self, value: object, key: str) -> str:
        if not isinstance(value, str) or not _LABEL.fullmatch(value):
            raise self.fail(key, f"a label is a letter then letters, digits, _ or -, "
                            f"not {value!r}")  # fmt: skip
        return value


def _gather_on(check: _Checker, value: object, key: str) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise check.fail(key, 'must be a table of answer = label, like {"1" = "confirmed"}')
    speech = "speech" in str(check.item.get("input", "dtmf"))
    branches: dict[str, str] = {}
    for answer, label in value.items():
        normal = normalise_answer(str(answer))
        if not speech and not _DIGITS.fullmatch(normal):
            raise check.fail(f"on.{answer}", "keys are digits (or * and #) for dtmf input")
        if not normal:
            raise check.fail(f"on.{answer}", "an answer cannot be empty")
        if normal in branches:
            raise check.fail(f"on.{answer}", f"the answer {normal!r} is given twice")
        branches[normal] = check.label(label, f"on.{answer}")
    return branches


def is_url(text: str) -> bool:
    """A message that is an audio URL (played) rather than text (spoken)."""
    return text[:8].lower().startswith(("https://", "http://"))


def normalise_answer(answer: str) -> str:
    """Digits as pressed; speech lower-cased, without punctuation, spaces collapsed."""
    words = re.sub(r"[^\w*# ]+", " ", answer.lower())
    return " ".join(words.split())


def _input(check: _Checker, value: object, key: str) -> str:
    if value not in _INPUTS:
        raise check.fail(key, f"must be one of {', '.join(sorted(_INPUTS))}, not {value!r}")
    return str(value)


def _notify(check: _Checker, value: object) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= 10:
        raise check.fail("notify", "must be a list of 1 to 10 collaborators' numbers")
    numbers = [check.number(v, "notify") for v in value]
    if len(set(numbers)) != len(numbers):
        raise check.fail("notify", "lists a number twice")
    return numbers


def _activity(check: _Checker, value: object) -> str:
    if value not in ("text", "call"):
        raise check.fail("activity", f'must be "text" or "call", not {value!r}')
    return str(value)


def _check_activity(
    check: _Checker, kind: str, options: Mapping[str, Any], known: Collection[str] | None
) -> None:
    extra = "script" if kind == "text" else "body"
    if extra in options:
        raise check.fail(extra, f"a {kind} activity has no {extra!r}")
    if kind == "text":
        if "body" not in options:
            raise check.fail("body", "a text activity needs its 'body'")
        try:
            check_body(options["body"])
        except InvalidInput as exc:
            raise check.fail("body", str(exc)) from None
    elif "script" not in options:
        raise check.fail("script", "a call activity needs the name of a script in 'script'")
    elif known is not None and options["script"] not in known:
        raise check.fail("script", f"no script is named {options['script']!r}")


def _bool(check: _Checker, value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise check.fail(key, f"must be true or false, not {value!r}")
    return value


def _name(check: _Checker, value: object, key: str) -> str:
    text = check.text(value, key)
    if len(text) > 64:
        raise check.fail(key, "is over 64 characters")
    return text


def _room(check: _Checker, value: object) -> str:
    if not isinstance(value, str) or not _ROOM.fullmatch(value):
        raise check.fail("conference", "a room name is 1 to 128 letters, digits, spaces, "
                         "_ . or -")  # fmt: skip
    return value


_VALUES: dict[str, Callable[[_Checker, object], Any]] = {
    "say": lambda c, v: c.text(v, "say"),
    "play": lambda c, v: c.url(v, "play"),
    "pause": lambda c, v: c.integer(v, "pause", 1, 600),
    "gather": lambda c, v: c.message(v, "gather"),
    "record": lambda c, v: c.integer(v, "record", 1, 3600),
    "dial": lambda c, v: c.number(v, "dial"),
    "conference": _room,
    "notify": _notify,
    "voicemail_drop": lambda c, v: c.message(v, "voicemail_drop"),
    "play_drop": lambda c, v: c.message(v, "play_drop"),
    "activity": _activity,
}
_OPTION_CHECKS: dict[str, Callable[[_Checker, object, str], Any]] = {
    "voice": _name,
    "language": _name,
    "loop": lambda c, v, k: c.integer(v, k, 1, 10),
    "input": _input,
    "digits": lambda c, v, k: c.integer(v, k, 1, 20),
    "timeout": lambda c, v, k: c.integer(v, k, 1, 600),
    "on": _gather_on,
    "otherwise": lambda c, v, k: c.label(v, k),
    "beep": _bool,
    "caller_id": lambda c, v, k: c.number(v, k),
    "agent": lambda c, v, k: c.number(v, k),
    "body": lambda c, v, k: c.text(v, k),
    "script": _name,
    "from": lambda c, v, k: c.number(v, k),
}


def parse_scripts(table: object, *, where: str) -> dict[str, Script]:
    """The named scripts of the configuration (``[[scripts.NAME]]``), each validated,
    with ``activity`` steps checked against the other names."""
    if not isinstance(table, dict):
        raise InvalidInput(f"{where}: [scripts] must be a table of named scripts",
                           field="scripts")  # fmt: skip
    names = set(table)
    scripts: dict[str, Script] = {}
    for name, raw in table.items():
        if not _LABEL.fullmatch(name):
            raise InvalidInput(f"{where}: script name {name!r} must be a letter then "
                               "letters, digits, _ or -", field=f"scripts.{name}")  # fmt: skip
        try:
            scripts[name] = parse_script(raw, known=names)
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: scripts.{name}: {exc}",
                               field=f"scripts.{name}") from None  # fmt: skip
    return scripts


# -- walking a script ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reached:
    """A step executed, to be recorded as a result event."""

    result: VoiceResult
    step: int
    detail: str | None = None


# -- voice instructions: what a call does next, in no provider's wire format --------


@dataclass(frozen=True, slots=True, kw_only=True)
class Say:
    """Speak ``text`` (``loop`` times)."""

    text: str
    voice: str | None = None
    language: str | None = None
    loop: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Play:
    """Play the audio at ``url`` (``loop`` times)."""

    url: str
    loop: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Pause:
    seconds: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Gather:
    """Play ``prompt`` and collect an answer (``input``: dtmf, speech or "dtmf speech"),
    then ask ``then`` what comes next, answer or not. ``speech_language`` is the language
    speech is recognised in (speech input only)."""

    prompt: Say | Play
    input: str
    timeout: int
    digits: int | None = None
    speech_language: str | None = None
    then: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """Record up to ``max_seconds``; ``then`` receives the recording."""

    max_seconds: int
    beep: bool
    then: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Dial:
    """Connect the call to ``number``; ``then`` learns how the dialled leg ended."""

    number: str
    timeout: int | None = None
    caller_id: str | None = None
    then: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Conference:
    """Put the call into the conference ``room``."""

    room: str
    then: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RingAll:
    """Ring ``numbers`` at once: the first to answer takes the call."""

    numbers: tuple[str, ...]
    timeout: int | None = None
    then: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Redirect:
    """Ask ``url`` for what comes next."""

    url: str
    method: str | None = "POST"


@dataclass(frozen=True, slots=True, kw_only=True)
class Hangup:
    """End the call."""


Instruction: TypeAlias = (
    Say | Play | Pause | Gather | Record | Dial | Conference | RingAll | Redirect | Hangup
)


@dataclass(slots=True)
class Served:
    """What one request from the carrier produced: the instructions to answer with,
    the steps reached, the activities to trigger and whether the script reached its
    end."""

    instructions: list[Instruction] = field(default_factory=list)
    reached: list[Reached] = field(default_factory=list)
    activities: list[tuple[int, Step]] = field(default_factory=list)
    done: bool = False


Url = Callable[[str], str]
"""Builds the URL of a position in the call's script (``"3"``, ``"3.result"``, ``"end"``)."""


def serve(
    script: Script, start: int, *, machine: bool, url: Url, served: Served | None = None
) -> Served:
    """Walk ``script`` from step ``start`` to its next voice step, and its instructions.

    Steps that need no instruction (an ``activity``; a ``voicemail_drop`` when no
    machine answered) are taken on the way; their own ``goto`` is followed. Reaching
    the end marks the script done and hangs up.
    """
    served = served or Served()
    out = served.instructions
    index = start
    for _ in range(len(script.steps) + 1):  # a goto loop of silent steps ends here
        if index >= len(script.steps):
            served.done = True
            out.append(Hangup())
            return served
        step = script.steps[index]
        if step.action == "voicemail_drop" and not machine:
            index = script.after(index)  # a human never hears the voicemail
            continue
        if step.action != "play_drop":  # a play drop counts when the agent drops off
            served.reached.append(Reached(step.result, index))
        if step.action == "activity":
            served.activities.append((index, step))
            index = script.after(index)
            continue
        out += _instructions(step, index, url, script)
        return served
    out.append(Redirect(url=url(str(index)), method=None))
    return served


def _instructions(step: Step, index: int, url: Url, script: Script) -> list[Instruction]:
    """One voice step's instructions: the step, then a redirect to what follows it
    (none after a dial: the dialled leg's end asks what comes next)."""
    o = step.options
    nxt = url(str(script.after(index)) if script.after(index) < len(script.steps) else END)
    done = url(f"{index}.dialed")
    action: Instruction
    match step.action:
        case "say":
            action = Say(text=step.value, loop=o.get("loop"), voice=o.get("voice"),
                         language=o.get("language"))  # fmt: skip
        case "play":
            action = Play(url=step.value, loop=o.get("loop"))
        case "pause":
            action = Pause(seconds=step.value)
        case "gather":
            nxt = url(f"{index}.result")  # no answer: the same handler takes "otherwise"
            mode = o.get("input", "dtmf")
            action = Gather(
                prompt=_message(step.value, o), input=mode, timeout=o.get("timeout", 5),
                digits=o.get("digits"), then=nxt,
                speech_language=o.get("language") if "speech" in mode else None,
            )  # fmt: skip
        case "record":
            nxt = url(f"{index}.recorded")  # nothing recorded: the carrier goes on to here
            action = Record(max_seconds=step.value, beep=o.get("beep", True), then=nxt)
        case "dial":
            return [Dial(number=step.value, timeout=o.get("timeout"),
                         caller_id=o.get("caller_id"), then=done)]  # fmt: skip
        case "conference":
            return [Conference(room=step.value, then=done)]
        case "notify":
            return [RingAll(numbers=tuple(step.value), timeout=o.get("timeout"), then=done)]
        case "voicemail_drop":
            action = _message(step.value, o)
            nxt = url(END)
        case "play_drop":
            # When the agent drops off, the carrier asks the drop URL what the contact
            # hears next: the message, then the rest of the script.
            return [Dial(number=o["agent"], then=url(f"{index}.drop"))]
        case _:  # an activity is never a voice step
            raise AssertionError(step.action)
    return [action, Redirect(url=nxt)]


def _message(message: str, options: Mapping[str, Any]) -> Say | Play:
    """A message is played when it is an audio URL, else spoken."""
    if is_url(message):
        return Play(url=message)
    return Say(text=message, voice=options.get("voice"), language=options.get("language"))


def answer(script: Script, index: int, digits: str | None, speech: str | None) -> tuple[str, int]:
    """The Prompt a Gather at ``index`` received and the step to go on with: its
    ``on`` branch for the answer, else ``otherwise``, else the next step."""
    step = script.steps[index]
    received = normalise_answer(digits or speech or "")
    branches: Mapping[str, str] = step.options.get("on", {})
    label = branches.get(received)
    if label is None and speech and not digits:  # a branch's words anywhere in the phrase
        padded = f" {received} "
        label = next((v for k, v in branches.items() if f" {k} " in padded), None)
    if label is None and "otherwise" in step.options:
        label = step.options["otherwise"]
    return received, script.target(label) if label else script.after(index)


def drop(script: Script, index: int, *, machine: bool, url: Url, status: str | None) -> Served:
    """After a play drop's agent left: the message, then the rest of the script."""
    step = script.steps[index]
    served = Served(instructions=[_message(step.value, step.options)])
    served.reached.append(Reached(VoiceResult.PLAY_DROP, index, status))
    return serve(script, script.after(index), machine=machine, url=url, served=served)


def parse_position(at: str, script: Script) -> tuple[int, str | None]:
    """``"start"`` / ``"3"`` / ``"3.result"`` / ``"end"`` -> (step, phase)."""
    if at == "start":
        return 0, "start"
    if at == END:
        return len(script.steps), None
    match = _POSITION.fullmatch(at)
    if match is None:
        raise InvalidInput(f"{at!r} is not a position in a script", field="at")
    index, phase = int(match[1]), match[2]
    if index > len(script.steps):
        raise InvalidInput(f"the script has no step {index + 1}", field="at")
    return index, phase


_POSITION = re.compile(r"([0-9]{1,3})(?:\.(result|recorded|dialed|drop))?")
