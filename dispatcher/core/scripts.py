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

Each action has its model (:class:`SayStep`, :class:`GatherStep`, ...; msgspec checks
a step's values as it converts it); what a model cannot say (numbers, a gather's
answers, an activity's options) each model checks itself, and the rules across steps
(labels, where a ``goto`` or an answer leads, loops no one hears) are checked over the
typed steps.
"""

from __future__ import annotations

import functools
import json
import re
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, Self, TypeAlias, TypeVar

import msgspec
from msgspec import UNSET, Meta, UnsetType

from dispatcher import jsonio
from dispatcher.core.calls import VoiceResult
from dispatcher.core.model import check_body
from dispatcher.core.numbers import e164
from dispatcher.errors import InvalidInput

MAX_STEPS = 100
MAX_TEXT = 4096
END = "end"

# -- what a step's values must be ---------------------------------------------------
#
# Each value's type says what msgspec checks as it converts a step (its ``Meta``) and
# how a refusal is worded (its ``_Why``). Patterns are anchored with \A and \Z, since
# msgspec searches them and ``$`` would let a trailing newline through.


@dataclass(frozen=True, slots=True)
class _Why:
    """How a refused value is explained: ``say(meta, value)`` (``meta`` is the
    constraint of the value's type, if it has one); ``missing`` when a step lacks it."""

    say: Callable[[Meta | None, object], str]
    missing: str | None = None


def _text(meta: Meta | None, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        return "must be non-empty text"
    if len(value) > MAX_TEXT:
        return f"is {len(value)} characters; the limit is {MAX_TEXT}"
    return f"is over {meta.max_length if meta else MAX_TEXT} characters"


def _url(meta: Meta | None, value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
        return _text(meta, value)
    return f"must be an http(s):// URL, not {value!r}"


def _whole(meta: Meta | None, value: object) -> str:
    assert meta is not None  # every whole number has its bounds
    return f"must be a whole number from {meta.ge} to {meta.le}, not {value!r}"


def _number(_meta: Meta | None, value: object) -> str:
    return f"must be an E.164 number like +14155550123, not {value!r}"


def _label(_meta: Meta | None, value: object) -> str:
    return f"a label is a letter then letters, digits, _ or -, not {value!r}"


_URL_START = r"[hH][tT][tT][pP][sS]?://"
_LABEL_PATTERN = r"\A[A-Za-z][A-Za-z0-9_-]{0,63}\Z"
_LABEL = re.compile(_LABEL_PATTERN)
_DIGITS = re.compile(r"[0-9*#]{1,20}")
_IS_URL = re.compile(_URL_START)


def is_url(text: str) -> bool:
    """A message that is an audio URL (played) rather than text (spoken)."""
    return _IS_URL.match(text) is not None


def normalise_answer(answer: str) -> str:
    """Digits as pressed; speech lower-cased, without punctuation, spaces collapsed."""
    words = re.sub(r"[^\w*# ]+", " ", answer.lower())
    return " ".join(words.split())


Text = Annotated[str, Meta(pattern=r"\S", max_length=MAX_TEXT), _Why(_text)]
"""Non-empty text (not only spaces), at most 4096 characters."""
Name = Annotated[str, Meta(pattern=r"\S", max_length=64), _Why(_text)]
"""A voice, a language or a script's name: non-empty text of at most 64 characters."""
AudioUrl = Annotated[str, Meta(pattern=rf"\A{_URL_START}\S*\Z", max_length=MAX_TEXT), _Why(_url)]
"""An audio URL: http(s)://, no spaces."""
Message = Annotated[
    str,
    Meta(pattern=rf"\A(?:{_URL_START}\S*\Z|(?!{_URL_START})[\s\S]*?\S)", max_length=MAX_TEXT),
    _Why(_url),
]
"""Text to speak, or an audio URL to play (then with no spaces)."""
Label = Annotated[str, Meta(pattern=_LABEL_PATTERN), _Why(_label)]
Number = Annotated[str, _Why(_number)]
"""A phone number, normalised to E.164 once the step is converted."""
Loop = Annotated[int, Meta(ge=1, le=10), _Why(_whole)]
Seconds = Annotated[int, Meta(ge=1, le=600), _Why(_whole)]
Room = Annotated[
    str,
    Meta(pattern=r"\A[A-Za-z0-9][A-Za-z0-9 _.-]{0,127}\Z"),
    _Why(lambda _m, _v: "a room name is 1 to 128 letters, digits, spaces, _ . or -"),
]
Digits = Annotated[int, Meta(ge=1, le=20), _Why(_whole)]
Flag = Annotated[bool, _Why(lambda _m, v: f"must be true or false, not {v!r}")]
Input = Literal["dtmf", "speech", "dtmf speech"]
_INPUTS = typing.get_args(Input)
InputMode = Annotated[
    Input, _Why(lambda _m, v: f"must be one of {', '.join(sorted(_INPUTS))}, not {v!r}")
]
Branches = Annotated[
    dict[str, Any],
    Meta(min_length=1),
    _Why(lambda _m, _v: 'must be a table of answer = label, like {"1" = "confirmed"}'),
]
"""A gather's answers and the label each leads to (checked by :class:`GatherStep`)."""
Collaborators = Annotated[
    list[Number],
    Meta(min_length=1, max_length=10),
    _Why(lambda _m, _v: "must be a list of 1 to 10 collaborators' numbers"),
]
Agent = Annotated[Number, _Why(_number, "a play drop needs the agent's number in 'agent'")]
ActivityKind = Annotated[
    Literal["text", "call"], _Why(lambda _m, v: f'must be "text" or "call", not {v!r}')
]


# -- the steps: one model per action ------------------------------------------------


class Step(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One validated step: a model per action (:class:`SayStep`, ...), with what every
    step may have: a ``label`` to jump to and a ``goto``."""

    action: ClassVar[str]
    result: ClassVar[VoiceResult]

    label: Label | UnsetType = UNSET
    goto: Label | UnsetType = UNSET

    @property
    def value(self) -> Any:
        """The action's own value (the text said, the number dialled, ...)."""
        return getattr(self, self.action)

    @property
    def options(self) -> dict[str, Any]:
        """The options given, as written in the script (``from``, not ``from_``)."""
        raw: dict[str, Any] = msgspec.to_builtins(self)
        for key in (self.action, "label", "goto"):
            raw.pop(key, None)
        return raw

    def checked(self, fail: Fail) -> Self:
        """The step once the domain has checked what its model cannot say (numbers, a
        gather's answers, an activity's options), normalised; ``fail`` words a refusal."""
        return self


Fail: TypeAlias = Callable[[str, str], InvalidInput]
S = TypeVar("S", bound=Step)


class SayStep(Step, frozen=True):
    action = "say"
    result = VoiceResult.SAY
    say: Text
    voice: Name | UnsetType = UNSET
    language: Name | UnsetType = UNSET
    loop: Loop | UnsetType = UNSET


class PlayStep(Step, frozen=True):
    action = "play"
    result = VoiceResult.PLAY
    play: AudioUrl
    loop: Loop | UnsetType = UNSET


class PauseStep(Step, frozen=True):
    action = "pause"
    result = VoiceResult.PAUSE
    pause: Seconds


class GatherStep(Step, frozen=True):
    action = "gather"
    result = VoiceResult.GATHER
    gather: Message
    voice: Name | UnsetType = UNSET
    language: Name | UnsetType = UNSET
    input: InputMode | UnsetType = UNSET
    digits: Digits | UnsetType = UNSET
    timeout: Seconds | UnsetType = UNSET
    on: Branches | UnsetType = UNSET
    otherwise: Label | UnsetType = UNSET

    @property
    def mode(self) -> str:
        return self.input or "dtmf"

    def checked(self, fail: Fail) -> Self:
        """Answers normalised (digits, or words under speech input), each once, each
        leading to a label."""
        if not self.on:
            return self
        speech = "speech" in self.mode
        branches: dict[str, str] = {}
        for answer, label in self.on.items():
            normal = normalise_answer(answer)
            if not speech and not _DIGITS.fullmatch(normal):
                raise fail(f"on.{answer}", "keys are digits (or * and #) for dtmf input")
            if not normal:
                raise fail(f"on.{answer}", "an answer cannot be empty")
            if normal in branches:
                raise fail(f"on.{answer}", f"the answer {normal!r} is given twice")
            if not isinstance(label, str) or not _LABEL.search(label):
                raise fail(f"on.{answer}", _label(None, label))
            branches[normal] = label
        return msgspec.structs.replace(self, on=branches)


class RecordStep(Step, frozen=True):
    action = "record"
    result = VoiceResult.RECORD
    record: Annotated[int, Meta(ge=1, le=3600), _Why(_whole)]  # seconds
    beep: Flag | UnsetType = UNSET


class DialStep(Step, frozen=True):
    action = "dial"
    result = VoiceResult.DIAL
    dial: Number
    timeout: Seconds | UnsetType = UNSET
    caller_id: Number | UnsetType = UNSET

    def checked(self, fail: Fail) -> Self:
        return _numbers(self, fail, "dial", "caller_id")


class ConferenceStep(Step, frozen=True):
    action = "conference"
    result = VoiceResult.CONFERENCE
    conference: Room


class NotifyStep(Step, frozen=True):
    action = "notify"
    result = VoiceResult.NOTIFY
    notify: Collaborators
    timeout: Seconds | UnsetType = UNSET

    def checked(self, fail: Fail) -> Self:
        numbers = [_e164(number, "notify", fail) for number in self.notify]
        if len(set(numbers)) != len(numbers):
            raise fail("notify", "lists a number twice")
        return msgspec.structs.replace(self, notify=numbers)


class VoicemailDropStep(Step, frozen=True):
    action = "voicemail_drop"
    result = VoiceResult.VOICEMAIL_DROP
    voicemail_drop: Message
    voice: Name | UnsetType = UNSET
    language: Name | UnsetType = UNSET


class PlayDropStep(Step, frozen=True):
    action = "play_drop"
    result = VoiceResult.PLAY_DROP
    play_drop: Message
    agent: Agent
    voice: Name | UnsetType = UNSET
    language: Name | UnsetType = UNSET

    def checked(self, fail: Fail) -> Self:
        return _numbers(self, fail, "agent")


class ActivityStep(Step, frozen=True):
    action = "activity"
    result = VoiceResult.ACTIVITY
    activity: ActivityKind
    body: Text | UnsetType = UNSET
    script: Name | UnsetType = UNSET
    from_: Number | UnsetType = msgspec.field(default=UNSET, name="from")

    def checked(self, fail: Fail) -> Self:
        """A text needs its body (a text's length), a call the name of a script; neither
        takes the other's option."""
        step = _numbers(self, fail, "from_")
        extra = "script" if self.activity == "text" else "body"
        if getattr(self, extra):
            raise fail(extra, f"a {self.activity} activity has no {extra!r}")
        if self.activity == "text":
            if not self.body:
                raise fail("body", "a text activity needs its 'body'")
            try:
                check_body(self.body)
            except InvalidInput as exc:
                raise fail("body", str(exc)) from None
        elif not self.script:
            raise fail("script", "a call activity needs the name of a script in 'script'")
        return step


StepKind: TypeAlias = (
    SayStep | PlayStep | PauseStep | GatherStep | RecordStep | DialStep | ConferenceStep
    | NotifyStep | VoicemailDropStep | PlayDropStep | ActivityStep
)  # fmt: skip
KINDS: dict[str, type[StepKind]] = {kind.action: kind for kind in typing.get_args(StepKind)}
"""The model of each action, in the order the actions are listed to a user."""
ACTIONS: dict[str, VoiceResult] = {action: kind.result for action, kind in KINDS.items()}


def _e164(value: str, key: str, fail: Fail) -> str:
    try:
        return e164(value, field=key)
    except InvalidInput as exc:
        raise fail(key, str(exc)) from None


def _numbers(step: S, fail: Fail, *names: str) -> S:
    """``step`` with the numbers in fields ``names`` (those given) in E.164."""
    given = {n: getattr(step, n) for n in names if getattr(step, n)}
    return msgspec.structs.replace(
        step, **{n: _e164(v, n.removesuffix("_"), fail) for n, v in given.items()}
    )


@dataclass(frozen=True, slots=True)
class Script:
    """A validated script. ``to_json`` is its canonical form, stored with each call."""

    steps: tuple[StepKind, ...]
    labels: Mapping[str, int]

    @property
    def detects_machine(self) -> bool:
        """A voicemail drop needs answering-machine detection (to the end of the greeting)."""
        return any(isinstance(s, VoicemailDropStep) for s in self.steps)

    def target(self, label: str) -> int:
        return len(self.steps) if label == END else self.labels[label]

    def after(self, index: int) -> int:
        """The step that follows step ``index`` (its ``goto``, else the next one)."""
        goto = self.steps[index].goto
        return self.target(goto) if goto else index + 1

    def to_json(self) -> str:
        return json.dumps(msgspec.to_builtins(self.steps), sort_keys=True, separators=(",", ":"))

    def named_scripts(self) -> set[str]:
        """Named scripts its ``activity`` steps place calls with."""
        return {s.script for s in self.steps if isinstance(s, ActivityStep) and s.script}


@functools.lru_cache(maxsize=1024)
def from_json(text: str) -> Script:
    """A stored script (validated when it was stored; validated again here)."""
    return parse_script(json.loads(text))


def parse_script(raw: object, *, known: Collection[str] | None = None) -> Script:
    """Validate a script from a request or the configuration. ``known`` is the set of
    named scripts an ``activity`` step may place a call with (None: not checked).

    Each step is converted to its action's model (msgspec checks each value), then
    checked for what a model cannot say; the rules across steps (labels, where each
    ``goto`` and answer leads, loops no one hears) are checked last."""
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("a script is a non-empty list of steps", field="script")
    if len(raw) > MAX_STEPS:
        raise InvalidInput(f"a script has at most {MAX_STEPS} steps, not {len(raw)}",
                           field="script")  # fmt: skip
    steps = [_step(i, item, known) for i, item in enumerate(raw)]
    labels: dict[str, int] = {}
    for i, step in enumerate(steps):
        if not step.label:
            continue
        if step.label in labels or step.label == END:
            reason = (
                "is reserved" if step.label == END else f"is also step {labels[step.label] + 1}"
            )
            raise _bad(i, step.action, "label", f"label {step.label!r} {reason}")
        labels[step.label] = i
    for i, step in enumerate(steps):
        targets = [("goto", step.goto)] if step.goto else []
        if isinstance(step, GatherStep):
            targets += [(f"on.{k}", v) for k, v in (step.on or {}).items()]
            if step.otherwise:
                targets.append(("otherwise", step.otherwise))
        for where, label in targets:
            if label != END and label not in labels:
                raise _bad(i, step.action, where, f"no step has the label {label!r}")
    script = Script(steps=tuple(steps), labels=labels)
    _check_silent_loops(script)
    return script


_SILENT = (ActivityStep, VoicemailDropStep)  # a human hears neither


def _check_silent_loops(script: Script) -> None:
    """A ``goto`` loop through steps a contact never hears would never end: refused."""
    for start, step in enumerate(script.steps):
        if not isinstance(step, _SILENT):
            continue
        seen = {start}
        index = script.after(start)
        while index < len(script.steps) and isinstance(script.steps[index], _SILENT):
            if index in seen:
                raise _bad(start, step.action, "goto", "its goto loops back through steps "
                           "the contact never hears, so the call would never go on")  # fmt: skip
            seen.add(index)
            index = script.after(index)


def _bad(index: int, action: str, key: str, why: str) -> InvalidInput:
    return InvalidInput(f"script step {index + 1} ({action}): {why}",
                        field=f"script[{index}].{key}")  # fmt: skip


def _step(index: int, item: object, known: Collection[str] | None) -> StepKind:
    """Step ``index``: the model of its one action, converted, then checked."""
    if not isinstance(item, dict):
        raise InvalidInput(f"script step {index + 1}: a step is a table like "
                           '{"say": "Hello"}', field=f"script[{index}]")  # fmt: skip
    actions = [k for k in item if k in KINDS]
    if len(actions) != 1:
        found = ", ".join(actions) or "none"
        raise InvalidInput(
            f"script step {index + 1}: needs exactly one action of "
            f"{', '.join(KINDS)} (found {found})",
            field=f"script[{index}]",
        )
    kind = KINDS[actions[0]]
    try:
        step = msgspec.convert(item, kind)
    except msgspec.ValidationError as exc:
        raise _refused(index, kind, item, exc) from None
    step = step.checked(functools.partial(_bad, index, kind.action))
    if (
        isinstance(step, ActivityStep)
        and step.script
        and known is not None
        and (step.script not in known)
    ):
        raise _bad(index, kind.action, "script", f"no script is named {step.script!r}")
    return step


def _refused(
    index: int, kind: type[Step], item: dict[str, Any], exc: msgspec.ValidationError
) -> InvalidInput:
    """What msgspec refused in step ``index``, in the product's words: unknown options
    first (every one, with those allowed), else the value at fault."""
    allowed = set(kind.__struct_encode_fields__)
    if unknown := sorted(set(item) - allowed):
        return _bad(index, kind.action, unknown[0], f"unknown option {', '.join(unknown)} "
                    f"(allowed: {', '.join(sorted(allowed - {kind.action}))})")  # fmt: skip
    found = jsonio.problem(exc)
    key = str(found.path[0])
    hint = _hints(kind)[key]
    if len(found.path) > 1:  # an item of a list: its own type words it
        hint = _item_of(hint)
    meta, why = _reason(hint)
    if found.kind == "missing" and why.missing:
        return _bad(index, kind.action, key, why.missing)
    return _bad(index, kind.action, key, why.say(meta, jsonio.value_at(item, found.path)))


@functools.cache
def _hints(kind: type[Step]) -> dict[str, Any]:
    """The type of each field of ``kind``, by its name on the wire."""
    hints = typing.get_type_hints(kind, include_extras=True)
    fields = zip(kind.__struct_fields__, kind.__struct_encode_fields__, strict=True)
    return {wire: hints[name] for name, wire in fields}


def _reason(hint: Any) -> tuple[Meta | None, _Why]:
    """The constraint of a value's type, and how its refusal is worded."""
    metadata = [m for option in _options(hint) for m in _metadata(option)]
    meta = next((m for m in metadata if isinstance(m, Meta)), None)
    return meta, next(m for m in reversed(metadata) if isinstance(m, _Why))


def _item_of(hint: Any) -> Any:
    """The type of the items of a list type (annotated, or one of a union)."""
    for option in _options(hint):
        base = typing.get_args(option)[0] if typing.get_origin(option) is Annotated else option
        if typing.get_origin(base) is list:
            return typing.get_args(base)[0]
    return hint


def _options(hint: Any) -> tuple[Any, ...]:
    """The alternatives of a union (``Text | UnsetType``), or ``hint`` itself."""
    union = typing.get_origin(hint) in (typing.Union, UnionType)
    return typing.get_args(hint) if union else (hint,)


def _metadata(hint: Any) -> tuple[Any, ...]:
    """What ``Annotated`` adds to ``hint``, outermost last."""
    if typing.get_origin(hint) is not Annotated:
        return ()
    return typing.get_args(hint)[1:]


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
    nxt = url(str(script.after(index)) if script.after(index) < len(script.steps) else END)
    done = url(f"{index}.dialed")
    action: Instruction
    match step:
        case SayStep():
            action = Say(text=step.say, loop=_given(step.loop), voice=_given(step.voice),
                         language=_given(step.language))  # fmt: skip
        case PlayStep():
            action = Play(url=step.play, loop=_given(step.loop))
        case PauseStep():
            action = Pause(seconds=step.pause)
        case GatherStep():
            nxt = url(f"{index}.result")  # no answer: the same handler takes "otherwise"
            action = Gather(
                prompt=_message(step.gather, step), input=step.mode, timeout=step.timeout or 5,
                digits=_given(step.digits), then=nxt,
                speech_language=_given(step.language) if "speech" in step.mode else None,
            )  # fmt: skip
        case RecordStep():
            nxt = url(f"{index}.recorded")  # nothing recorded: the carrier goes on to here
            beep = step.beep if isinstance(step.beep, bool) else True
            action = Record(max_seconds=step.record, beep=beep, then=nxt)
        case DialStep():
            return [Dial(number=step.dial, timeout=_given(step.timeout),
                         caller_id=_given(step.caller_id), then=done)]  # fmt: skip
        case ConferenceStep():
            return [Conference(room=step.conference, then=done)]
        case NotifyStep():
            return [RingAll(numbers=tuple(step.notify), timeout=_given(step.timeout), then=done)]
        case VoicemailDropStep():
            action = _message(step.voicemail_drop, step)
            nxt = url(END)
        case PlayDropStep():
            # When the agent drops off, the carrier asks the drop URL what the contact
            # hears next: the message, then the rest of the script.
            return [Dial(number=step.agent, then=url(f"{index}.drop"))]
        case _:  # an activity is never a voice step
            raise AssertionError(step.action)
    return [action, Redirect(url=nxt)]


T = TypeVar("T")


def _given(value: T | UnsetType) -> T | None:
    """An option's value, None when the step does not give it."""
    return None if isinstance(value, UnsetType) else value


def _message(message: str, step: GatherStep | VoicemailDropStep | PlayDropStep) -> Say | Play:
    """A message is played when it is an audio URL, else spoken."""
    if is_url(message):
        return Play(url=message)
    return Say(text=message, voice=_given(step.voice), language=_given(step.language))


def answer(script: Script, index: int, digits: str | None, speech: str | None) -> tuple[str, int]:
    """The Prompt a Gather at ``index`` received and the step to go on with: its
    ``on`` branch for the answer, else ``otherwise``, else the next step."""
    step = script.steps[index]
    received = normalise_answer(digits or speech or "")
    gather = step if isinstance(step, GatherStep) else None
    branches: Mapping[str, str] = (gather and gather.on) or {}
    label = branches.get(received)
    if label is None and speech and not digits:  # a branch's words anywhere in the phrase
        padded = f" {received} "
        label = next((v for k, v in branches.items() if f" {k} " in padded), None)
    if label is None and gather and gather.otherwise:
        label = gather.otherwise
    return received, script.target(label) if label else script.after(index)


def drop(script: Script, index: int, *, machine: bool, url: Url, status: str | None) -> Served:
    """After a play drop's agent left: the message, then the rest of the script."""
    step = script.steps[index]
    assert isinstance(step, PlayDropStep)  # the service asks only a play drop's drop
    served = Served(instructions=[_message(step.play_drop, step)])
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
