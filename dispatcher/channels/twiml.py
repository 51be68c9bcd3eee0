"""TwiML: a call script's voice instructions in Twilio's wire format.

Twilio asks the service what a call does next and reads the answer as TwiML; the
simulator speaks the same format, so both carriers hear one rendering. The walk of a
script (:mod:`dispatcher.core.scripts`) gives provider-neutral instructions; this module
alone turns them into TwiML, with the twilio SDK's ``VoiceResponse``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twilio.twiml.voice_response import VoiceResponse

from dispatcher.core.scripts import (
    Conference,
    Dial,
    Gather,
    Hangup,
    Instruction,
    Pause,
    Play,
    Record,
    Redirect,
    RingAll,
    Say,
)


def to_twiml(instructions: Iterable[Instruction]) -> str:
    """The TwiML document that answers with ``instructions``, in order."""
    response = VoiceResponse()
    for instruction in instructions:
        _add(response, instruction)
    return str(response)


def _add(parent: Any, instruction: Instruction) -> None:
    # ``parent`` is the SDK's untyped VoiceResponse, or a Gather for its prompt.
    match instruction:
        case Say(text=text, voice=voice, language=language, loop=loop):
            parent.say(text, voice=voice, language=language, loop=loop)
        case Play(url=url, loop=loop):
            parent.play(url, loop=loop)
        case Pause(seconds=seconds):
            parent.pause(length=seconds)
        case Gather():
            speech = "speech" in instruction.input
            gather = parent.gather(
                input=instruction.input, action=instruction.then, method="POST",
                timeout=instruction.timeout, num_digits=instruction.digits,
                speech_timeout="auto" if speech else None,
                language=instruction.speech_language,
            )  # fmt: skip
            _add(gather, instruction.prompt)
        case Record(max_seconds=seconds, beep=beep, then=then):
            parent.record(max_length=seconds, play_beep=beep, action=then, method="POST")
        case Dial(number=number, timeout=timeout, caller_id=caller_id, then=then):
            parent.dial(number, timeout=timeout, caller_id=caller_id, action=then, method="POST")
        case Conference(room=room, then=then):
            parent.dial(action=then, method="POST").conference(room)
        case RingAll(numbers=numbers, timeout=timeout, then=then):
            dial = parent.dial(timeout=timeout, action=then, method="POST")
            for number in numbers:
                dial.number(number)
        case Redirect(url=url, method=method):
            parent.redirect(url, method=method)
        case Hangup():
            parent.hangup()
