"""Call-script steps: one typed model per action, and the values a step may hold.

Each action has its model (:class:`SayStep`, :class:`GatherStep`, ...); msgspec checks
a step's values as it converts it, and each value's type says how a refusal is worded
(:func:`refusal`). What a type cannot say (numbers in E.164, a gather's answers, an
activity's options) each model checks itself (``Step.checked``). A validated
:class:`Script` is the steps with their labels; its JSON form is stored with each
call. Parsing and the rules across steps are in :mod:`dispatcher.core.scripts`.
"""

from __future__ import annotations

import functools
import json
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, Self, TypeAlias, TypeVar

import msgspec
from msgspec import UNSET, Meta, UnsetType

from dispatcher import jsonio
from dispatcher.core.calls import VoiceResult
from dispatcher.core.model import check_body
from dispatcher.core.numbers import e164
from dispatcher.errors import InvalidInput

MAX_TEXT = 4096
END = "end"
"""The label that ends a script: a ``goto`` or an answer may lead there."""

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


def is_label(text: str) -> bool:
    """A valid label (or script name): a letter then letters, digits, _ or -."""
    return _LABEL.fullmatch(text) is not None


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


def refusal(
    kind: type[Step], item: dict[str, Any], exc: msgspec.ValidationError
) -> tuple[str, str]:
    """What msgspec refused in a step of ``kind``, in the product's words: the option
    at fault and why. Unknown options first (every one, with those allowed), else the
    value at fault, worded by its type."""
    allowed = set(kind.__struct_encode_fields__)
    if unknown := sorted(set(item) - allowed):
        return unknown[0], (f"unknown option {', '.join(unknown)} "
                            f"(allowed: {', '.join(sorted(allowed - {kind.action}))})")  # fmt: skip
    found = jsonio.problem(exc)
    key = str(found.path[0])
    hint = _hints(kind)[key]
    if len(found.path) > 1:  # an item of a list: its own type words it
        hint = _item_of(hint)
    meta, why = _reason(hint)
    if found.kind == "missing" and why.missing:
        return key, why.missing
    return key, why.say(meta, jsonio.value_at(item, found.path))


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
