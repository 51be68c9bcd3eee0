"""Twilio's voice wire, in and out: what its voice webhook posts, read into a
:class:`~dispatcher.channels.VoiceTurn`; its ``AnsweredBy`` values as human or machine;
answering-machine detection in its words; and the answer rendered as TwiML
(:mod:`dispatcher.channels.twiml`).

This module loads no REST client: the HTTP app reads Twilio's webhook with it, and the
simulator, which plays a call as Twilio does, reads its own.
"""

from __future__ import annotations

from collections.abc import Mapping

from dispatcher.channels import DialOutcome, MachineDetection, VoiceTurn
from dispatcher.channels.twiml import to_twiml

__all__ = ["MACHINE_DETECTION", "answered_by_of", "seconds_of", "to_twiml", "voice_turn_of"]

MACHINE_DETECTION: dict[MachineDetection, str | None] = {
    MachineDetection.OFF: None,
    MachineDetection.ANSWER: "Enable",
    MachineDetection.MESSAGE_END: "DetectMessageEnd",
}
"""Twilio's ``MachineDetection`` parameter for each kind of detection (None: not asked)."""


def answered_by_of(answered_by: str | None) -> str | None:
    """Twilio's ``AnsweredBy`` as human or machine (None when unknown)."""
    if not answered_by:
        return None
    if answered_by == "human":
        return "human"
    if answered_by.startswith("machine") or answered_by == "fax":
        return "machine"
    return None


def voice_turn_of(form: Mapping[str, str]) -> VoiceTurn:
    """What Twilio's request for a call's next TwiML tells about the call."""
    dialed = form.get("DialCallStatus") or None
    return VoiceTurn(
        provider_id=form.get("CallSid") or None,
        answered_by=answered_by_of(form.get("AnsweredBy")),
        digits=form.get("Digits") or None,
        speech=form.get("SpeechResult") or None,
        recording_url=form.get("RecordingUrl") or None,
        recording_seconds=seconds_of(form.get("RecordingDuration")),
        dialed=DialOutcome(dialed) if dialed in _DIAL_OUTCOMES else None,
    )


_DIAL_OUTCOMES = frozenset(DialOutcome)


def seconds_of(duration: object) -> int | None:
    """A duration as Twilio gives it (a string of whole seconds), if any."""
    try:
        return int(str(duration)) if duration not in (None, "") else None
    except ValueError:
        return None
