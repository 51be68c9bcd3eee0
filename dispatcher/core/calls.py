"""The pure core of voice calls: statuses, transitions, events and explanations.

Like :mod:`dispatcher.core.model` for texts, nothing here does I/O or reads a clock.

A call is Queued until its account's next slot (calls per second), Placing while
the provider call is in flight (the durable intent to call is written first),
Initiated once the provider took it, then Ringing, Answered (in progress) and one
of the ends: Completed (the script ran to its end), Hangup (the contact hung up
before the script finished), Busy, No answer, Failed or Canceled. Completed and
Hangup are only ever the end of a call that was answered: a call the carrier ended
without an answer (a crash cut it while it rang, say) is No answer, Busy, Failed
or Canceled, as the carrier says.

Besides its statuses a call records the results the voice metrics count:
answering-machine detection (Human or Machine) and every script step executed
(Say, Play, Gather, Prompt, ...), each as an event of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from dispatcher.core.model import Lane, Source
from dispatcher.core.status_step import StatusStep
from dispatcher.core.transitions import TransitionTable


class CallStatus(StrEnum):
    QUEUED = "Queued"
    PLACING = "Placing"
    INITIATED = "Initiated"
    RINGING = "Ringing"
    ANSWERED = "Answered"
    COMPLETED = "Completed"
    HANGUP = "Hangup"
    BUSY = "Busy"
    NO_ANSWER = "No answer"
    FAILED = "Failed"
    CANCELED = "Canceled"


_C = CallStatus
CALL_TERMINAL: frozenset[CallStatus] = frozenset(
    {_C.COMPLETED, _C.HANGUP, _C.BUSY, _C.NO_ANSWER, _C.FAILED, _C.CANCELED}
)
"""States a call never leaves."""

ACTIVE: frozenset[CallStatus] = frozenset({_C.INITIATED, _C.RINGING, _C.ANSWERED})
"""States of a call the provider is working on."""

_ENDS = frozenset(CALL_TERMINAL)
CALL_TRANSITIONS: dict[CallStatus, frozenset[CallStatus]] = {
    _C.QUEUED: frozenset({_C.PLACING, _C.CANCELED, _C.FAILED}),
    # Placing -> Queued is the one step back: the provider never got the attempt, or
    # asked us to try again later.
    _C.PLACING: frozenset({_C.QUEUED, _C.INITIATED, _C.RINGING, _C.ANSWERED}) | _ENDS,
    _C.INITIATED: frozenset({_C.RINGING, _C.ANSWERED}) | _ENDS,
    _C.RINGING: frozenset({_C.ANSWERED}) | _ENDS,
    _C.ANSWERED: frozenset({_C.COMPLETED, _C.HANGUP, _C.FAILED}),
}


CALL_TABLE: TransitionTable[CallStatus] = TransitionTable(CALL_TRANSITIONS, CALL_TERMINAL)
"""The calls' transition table: late, repeated and out-of-order reports merge without
moving a call backwards."""


class VoiceResult(StrEnum):
    """Results of a call other than its status, named as the voice metrics count them."""

    HUMAN = "Human"
    MACHINE = "Machine"
    SAY = "Say"
    PLAY = "Play"
    GATHER = "Gather"
    PROMPT = "Prompt"  # the digits or speech a Gather received
    PAUSE = "Pause"
    RECORD = "Record"
    DIAL = "Dial"
    CONFERENCE = "Conference"
    NOTIFY = "Notify"
    VOICEMAIL_DROP = "Voicemail Drop"
    PLAY_DROP = "Play Drop"
    ACTIVITY = "Activity"


class CallReason(StrEnum):
    ACCEPTED = "accepted"
    CANCELED = "canceled"
    RETRY = "retry"
    NOT_RECEIVED = "not_received_by_provider"
    PROVIDER_REJECTED = "provider_rejected"
    NOT_IN_SERVICE = "not_in_service"
    SCRIPT_UNFINISHED = "hung_up_before_the_script_finished"
    SCRIPT_FINISHED = "script_finished"
    ENDED_UNANSWERED = "ended_before_it_was_answered"
    SCRIPT_NOT_SERVED = "answered_but_the_script_was_not_served"
    NO_AUDIO = "no_audio"
    CARRIER_FAILED = "carrier_failed"
    EXPIRED = "expired"
    DO_NOT_CALL = "do_not_call"  # the contact opted out of calls (the consent ledger)


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """A voice call with its current, projected status."""

    id: str
    account: str  # the provider account whose calls-per-second pace it
    sender: str
    recipient: str
    script: str  # the validated script, as canonical JSON
    script_name: str | None
    lane: Lane
    status: CallStatus
    accepted_at: datetime
    updated_at: datetime
    seq: int = 0
    reason: str | None = None
    provider_code: str | None = None
    provider_id: str | None = None
    attempt_id: str | None = None
    placed_at: datetime | None = None  # when the provider call started (books the slot)
    answered_by: str | None = None  # "human" or "machine", from answering-machine detection
    script_done: bool = False
    idempotency_key: str | None = None
    fingerprint: str | None = None
    trigger: str | None = None  # what triggered it: an automation, another call's step
    campaign_id: str | None = None
    expires_at: datetime | None = None  # not placed after this (Canceled, expired)

    @property
    def terminal(self) -> bool:
        return self.status in CALL_TERMINAL


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEvent:
    """One appended step of a call's history: a status report, or a result (AMD, a
    script step executed, a prompt answered), or both."""

    call_id: str
    at: datetime
    status: CallStatus | None = None
    result: VoiceResult | None = None
    step: int | None = None  # the script step it concerns
    reason: str | None = None
    provider_code: str | None = None
    source: Source = Source.SCHEDULER
    applied: bool = True
    detail: str | None = None


call_status: StatusStep[Call, CallStatus, CallEvent] = StatusStep(CALL_TABLE, CallEvent, "call_id")
"""Judge a reported status against a call: the event to append and the call as
it is afterwards (unchanged unless the step applies)."""


def completed_status(call: Call) -> tuple[CallStatus, str]:
    """What the provider's "completed" means for ``call``: Completed when its script
    ran to the end, Hangup when the contact hung up before."""
    if call.script_done:
        return CallStatus.COMPLETED, CallReason.SCRIPT_FINISHED
    return CallStatus.HANGUP, CallReason.SCRIPT_UNFINISHED


def carrier_completed(call: Call, *, answered: bool | None) -> list[tuple[CallStatus, str | None]]:
    """The statuses the carrier's "completed" (the call ended) means for ``call``, in
    order. ``answered`` is the carrier's own word on whether the call was answered
    (None: it does not say).

    - A call answered here (its script was served): Completed or Hangup, as
      :func:`completed_status` says.
    - A call never answered here that the carrier says was answered (the service was
      not there to serve its script, e.g. during a restart): Answered, then Failed.
    - Otherwise the call ended without being answered: No answer, never Hangup.
    """
    if call.status is CallStatus.ANSWERED or call.terminal:
        return [completed_status(call)]  # an ended call: judged a repeat or stale
    if answered:
        return [(CallStatus.ANSWERED, None), (CallStatus.FAILED, CallReason.SCRIPT_NOT_SERVED)]
    return [(CallStatus.NO_ANSWER, CallReason.ENDED_UNANSWERED)]


_FAILED_BECAUSE: dict[str, str] = {
    CallReason.SCRIPT_NOT_SERVED: "Failed: {to} answered, but the script was not served (the "
    "service was not reachable at that moment).",
    CallReason.DO_NOT_CALL: "Not placed: {to} opted out of calls (the Do Not Call list; the "
    "history says who recorded it, when and why).",
}
"""What a Failed call's explanation says for the reasons that have their own words."""


def explain_call(  # noqa: PLR0911 - one answer per status
    call: Call, *, ahead: int | None = None, next_slot_at: datetime | None = None
) -> str:
    """A plain-language answer to "why is this call in this state?"."""
    s = call.status
    code = f" (provider code {call.provider_code})" if call.provider_code else ""
    if s is CallStatus.QUEUED:
        behind = f" behind {ahead} call{'s' if ahead != 1 else ''}" if ahead is not None else ""
        slot = f"; next slot at {_t(next_slot_at)}" if next_slot_at else ""
        return f"Queued{behind} on account {call.account} (calls per second){slot}."
    if s is CallStatus.PLACING:
        return (
            f"Placing since {_t(call.updated_at)} (attempt {call.attempt_id}): the intent to "
            "call is recorded; waiting for the provider to confirm."
        )
    if s is CallStatus.INITIATED:
        return f"The provider took the call (id {call.provider_id}); dialling {call.recipient}."
    if s is CallStatus.RINGING:
        return f"Ringing {call.recipient} since {_t(call.updated_at)}."
    if s is CallStatus.ANSWERED:
        by = f" by a {call.answered_by}" if call.answered_by else ""
        return f"Answered{by} at {_t(call.updated_at)}; the script is running."
    if s is CallStatus.COMPLETED:
        by = f" ({call.answered_by} answered)" if call.answered_by else ""
        return f"Completed at {_t(call.updated_at)}: the script ran to its end{by}."
    if s is CallStatus.HANGUP:
        return f"Hangup: {call.recipient} hung up before the script finished."
    if s is CallStatus.BUSY:
        return f"Busy: {call.recipient}'s line was busy{code}."
    if s is CallStatus.NO_ANSWER and call.reason == CallReason.ENDED_UNANSWERED:
        return f"No answer: the call to {call.recipient} ended before it was answered{code}."
    if s is CallStatus.NO_ANSWER:
        return f"No answer from {call.recipient}{code}."
    if s is CallStatus.FAILED and (why := _FAILED_BECAUSE.get(call.reason or "")):
        return why.format(to=call.recipient)
    if s is CallStatus.CANCELED:
        return f"Canceled at {_t(call.updated_at)}."
    return f"Failed: {call.reason or 'the call could not be placed'}{code}."


def _t(at: datetime | None) -> str:
    return at.isoformat(timespec="milliseconds") if at else "?"
