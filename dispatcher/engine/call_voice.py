"""The carrier asks what to play: a call's script walked into its next instructions.

While a call is up, the carrier asks at each step what the call does next
(``POST /twilio/voice/{id}?at=N``, or the simulator in process), telling what it knows
in a provider-neutral :class:`~dispatcher.channels.VoiceTurn`. :class:`CallVoice`
answers with the provider-neutral instructions of the script's next step (walked by
:mod:`dispatcher.core.script_walk`; the channel's adapter renders them in its wire
format), records each step it ran as a result event (Say, Gather, Prompt, ...) and
triggers an ``activity`` step's text or call, once per call and step.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime

from dispatcher.channels import VoiceTurn
from dispatcher.clock import Clock
from dispatcher.core.calls import Call, CallEvent, CallReason, CallStatus, VoiceResult, call_status
from dispatcher.core.model import Lane, Source
from dispatcher.core.results import step_trigger
from dispatcher.core.scripts import (
    Hangup,
    Instruction,
    Reached,
    Script,
    Served,
    Step,
    answer,
    drop,
    from_json,
    parse_position,
    serve,
)
from dispatcher.engine.call_reports import answered_by
from dispatcher.engine.call_types import CallRequest, CallSubmission, Lock, Save, voice_url
from dispatcher.engine.intake import Submission, TextRequest
from dispatcher.errors import Conflict, DispatcherError, InvalidInput, NotFound
from dispatcher.store import CallStore

log = logging.getLogger(__name__)

SubmitText = Callable[[TextRequest], Awaitable[Submission]]
SubmitCall = Callable[[CallRequest], Awaitable[CallSubmission]]


class CallVoice:
    """Answers the carrier's requests for a call's next instructions. Owned by the
    calls desk, which hands it what it needs: where calls are read, the desk's lock for
    each call, how a changed call is saved, and how an activity's text or call is
    submitted."""

    def __init__(
        self,
        *,
        store: CallStore,
        clock: Clock,
        base_url: str,
        lock: Lock,
        save: Save,
        submit_text: SubmitText,
        submit_call: SubmitCall,
    ) -> None:
        self._store = store
        self._clock = clock
        self._base = base_url
        self._lock = lock
        self._save = save
        self._submit_text = submit_text
        self._submit_call = submit_call

    async def respond(self, call_id: str, at: str, turn: VoiceTurn) -> list[Instruction]:
        """The instructions for position ``at`` of the call's script, recording what it
        ran."""
        async with self._lock(call_id):
            call = await self._store.get_call(call_id)
            if call is None:
                raise NotFound(f"no call with id {call_id!r}")
            sid = turn.provider_id
            if sid and call.provider_id and sid != call.provider_id:
                raise Conflict(f"call {call_id} is {call.provider_id} at the carrier, not {sid}")
            script = from_json(call.script)
            index, phase = parse_position(at, script)
            if call.terminal:
                return [Hangup()]
            now = self._clock.now().wall
            events: list[CallEvent] = []
            after = call
            if phase == "start":
                if (by := turn.answered_by) and after.answered_by is None:
                    after, amd = answered_by(after, by, now)
                    events += amd
                event, after = call_status(after, CallStatus.ANSWERED, at=now,
                                           source=Source.PROVIDER)  # fmt: skip
                events.append(event)
            served = self._walk(
                script, index, phase=phase, call=after, turn=turn, events=events, now=now
            )
            details = {i: await self._activity(after, i, step) for i, step in served.activities}
            served.reached = [
                replace(r, detail=details[r.step]) if r.result is VoiceResult.ACTIVITY else r
                for r in served.reached
            ]
            events += [
                CallEvent(call_id=call.id, at=now, result=r.result, step=r.step, detail=r.detail,
                          source=Source.PROVIDER)
                for r in served.reached
            ]  # fmt: skip
            if served.done and not after.script_done:  # after the last steps it ran
                after = replace(after, script_done=True)
                events.append(CallEvent(call_id=call.id, at=now, source=Source.PROVIDER,
                                        reason=CallReason.SCRIPT_FINISHED,
                                        detail="the script reached its end"))  # fmt: skip
            await self._save(call, after, events)
            return served.instructions

    def _walk(
        self,
        script: Script,
        index: int,
        *,
        phase: str | None,
        call: Call,
        turn: VoiceTurn,
        events: list[CallEvent],
        now: datetime,
    ) -> Served:
        machine = call.answered_by == "machine"
        url = self._url_for(call.id)
        if phase in ("result", "recorded", "dialed", "drop"):
            step = script.steps[index] if index < len(script.steps) else None
            wanted = {"result": "gather", "recorded": "record", "drop": "play_drop"}.get(phase)
            if (
                step is None
                or (wanted and step.action != wanted)
                or (phase == "dialed" and step.action not in ("dial", "conference", "notify"))
            ):
                raise InvalidInput(f"step {index + 1} of call {call.id} has no {phase} phase",
                                   field="at")  # fmt: skip
        if phase == "result":
            received, nxt = answer(script, index, turn.digits, turn.speech)
            if received:
                served = serve(script, nxt, machine=machine, url=url)
                served.reached.insert(0, Reached(VoiceResult.PROMPT, index, received))
                return served
            events.append(CallEvent(call_id=call.id, at=now, step=index, source=Source.PROVIDER,
                                    detail="no answer to the prompt"))  # fmt: skip
            return serve(script, nxt, machine=machine, url=url)
        if phase == "recorded":
            seconds = turn.recording_seconds
            has_audio = bool(turn.recording_url) and bool(seconds)
            events.append(CallEvent(
                call_id=call.id, at=now, step=index, source=Source.PROVIDER,
                reason=None if has_audio else CallReason.NO_AUDIO,
                detail=f"recording {turn.recording_url} ({seconds} s)" if has_audio
                else "no audio was recorded",
            ))  # fmt: skip
            return serve(script, script.after(index), machine=machine, url=url)
        if phase == "dialed":
            status = turn.dialed.value if turn.dialed else "unknown"
            events.append(CallEvent(call_id=call.id, at=now, step=index, source=Source.PROVIDER,
                                    detail=f"dialled leg ended: {status}"))  # fmt: skip
            return serve(script, script.after(index), machine=machine, url=url)
        if phase == "drop":
            return drop(script, index, machine=machine, url=url,
                        status=turn.dialed and turn.dialed.value)  # fmt: skip
        return serve(script, index, machine=machine, url=url)

    def _url_for(self, call_id: str) -> Callable[[str], str]:
        base = self._base
        return lambda at: voice_url(base, call_id, at)

    async def _activity(self, call: Call, index: int, step: Step) -> str:
        """Trigger the engagement an ``activity`` step names, once per call and step."""
        key = step_trigger(call.id, index)
        sender = step.options.get("from", call.sender)
        try:
            if step.value == "text":
                text = await self._submit_text(TextRequest(
                    sender=sender, recipient=call.recipient, body=step.options["body"],
                    lane=Lane.AUTOMATION, idempotency_key=key, trigger=key,
                ))  # fmt: skip
                return f"text {text.message.id} {text.message.status.value}"
            placed = await self._submit_call(CallRequest(
                sender=sender, recipient=call.recipient, script_name=step.options["script"],
                idempotency_key=key, trigger=key,
            ))  # fmt: skip
        except DispatcherError as exc:
            log.warning("call.activity_failed", extra={"call_id": call.id, "error": exc})
            return f"not triggered: {exc}"
        return f"call {placed.call.id} {placed.call.status.value}"
