"""Walking a call's script into voice instructions, step by step.

Each request from the carrier is answered by walking the validated script
(:class:`~dispatcher.core.script_steps.Script`) from a position to its next voice step:
provider-neutral instructions (:class:`Say`, :class:`Gather`, :class:`Dial`, ...,
:data:`Instruction`) that a channel renders in its wire format (TwiML:
:mod:`dispatcher.channels.twiml`). Every step's instructions end with a redirect to
the next step, so each step executed reaches the service and is recorded
(:class:`Reached`). This module imports no provider SDK.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias, TypeVar

from msgspec import UnsetType

from dispatcher.core.calls import VoiceResult
from dispatcher.core.script_steps import (
    END,
    ConferenceStep,
    DialStep,
    GatherStep,
    NotifyStep,
    PauseStep,
    PlayDropStep,
    PlayStep,
    RecordStep,
    SayStep,
    Script,
    Step,
    VoicemailDropStep,
    is_url,
    normalise_answer,
)
from dispatcher.errors import InvalidInput


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
