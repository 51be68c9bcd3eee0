"""Voice calls, end to end through the service, on a clock that only moves when told.

Each test builds a ``Dispatcher`` over the in-memory store and the simulator, both on a
``FakeClock``. The simulator rings, answers (a person or a machine, by the recipient
rules of its configuration), asks the service for the script's TwiML in process and
follows it like Twilio does. Its call log, ``simulator-calls.jsonl``, is the ground
truth of what was placed and when. No real sleeps, no wall time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from dispatcher import testing
from dispatcher.channels import CallReport, PlaceCall, VoiceTurn
from dispatcher.channels.simulator import Simulator
from dispatcher.clock import FakeClock
from dispatcher.config import (
    AutomationsConfig,
    Config,
    PacingConfig,
    SimulatorConfig,
    VoiceConfig,
)
from dispatcher.core.calls import (
    Call,
    CallEvent,
    CallReason,
    CallStatus,
    VoiceResult,
    call_status,
    carrier_completed,
)
from dispatcher.core.model import Lane, Source, TextStatus
from dispatcher.core.scripts import parse_scripts
from dispatcher.engine.calls import CallsSummary
from dispatcher.engine.delivery import ERROR_BACKOFF
from dispatcher.errors import Conflict, InvalidInput, NotFound
from dispatcher.service import CallRequest, CallSubmission, TextRequest
from dispatcher.store import Store
from dispatcher.store.memory import MemoryStore
from dispatcher.testing import CallRecord, advance_until, running_service

S = CallStatus
R = VoiceResult
SENDER = "+14155550100"
HUMAN = "+16505550001"
MACHINE = "+16505550002"
BUSY = "+16505550003"
NO_ANSWER = "+16505550004"
BROKEN = "+16505550005"
HANGS_UP = "+16505550006"
PRESSES_1 = "+16505550011"
PRESSES_2 = "+16505550012"
PRESSES_9 = "+16505550019"
SAYS_YES = "+16505550020"
GUARD = PacingConfig().guard.total_seconds()

HELLO: list[dict[str, Any]] = [{"say": "Hello, this is Acme Dental."}, {"say": "Goodbye."}]
VOICEMAIL: list[dict[str, Any]] = [
    {"voicemail_drop": "Sorry we missed you. Please call us back."},
    {"say": "Hello, this is Acme Dental."},
    {"pause": 1},
    {"say": "Goodbye."},
]
CONFIRM: list[dict[str, Any]] = [
    {"gather": "Press 1 to confirm, 2 for the desk.", "digits": 1,
     "on": {"1": "confirmed", "2": "desk"}},
    {"say": "We did not get that. Goodbye.", "goto": "end"},
    {"label": "confirmed", "say": "Thank you, see you tomorrow.", "goto": "end"},
    {"label": "desk", "say": "Connecting you to the desk."},
]  # fmt: skip
SPEECH: list[dict[str, Any]] = [
    {"gather": "Will you come? You can also say desk.", "input": "speech",
     "on": {"yes": "confirmed", "desk": "desk"}},
    *CONFIRM[1:],
]  # fmt: skip
CONFIRM_OTHERWISE: list[dict[str, Any]] = [
    {**CONFIRM[0], "otherwise": "desk"},
    *CONFIRM[1:],
]
FOLLOW_UP: list[dict[str, Any]] = [
    {"say": "Hi, your appointment is tomorrow."},
    {"activity": "text", "body": "Your appointment is tomorrow at 9."},
    {"activity": "call", "script": "reminder"},
    {"say": "Goodbye."},
]
NAMED = {"reminder": [{"say": "This is your reminder call."}]}


def recipient(index: int) -> str:
    """A contact the simulator answers as a person."""
    return f"+1650556{index:04d}"


CARRIER = SimulatorConfig(
    # No latency, no jitter, no reordering: what the simulator does is fixed by the test.
    latency=timedelta(0),
    latency_jitter=timedelta(0),
    receipt_delay=timedelta(milliseconds=200),
    receipt_jitter=timedelta(0),
    reorder_rate=0.0,
    ring=timedelta(milliseconds=300),
    machine=[MACHINE],
    busy=[BUSY],
    no_answer=[NO_ANSWER],
    call_failed=[BROKEN],
    hangs_up=[HANGS_UP],
    gather_input={PRESSES_1: "1", PRESSES_2: "2", PRESSES_9: "9", SAYS_YES: "Yes, please!"},
)


def slow_carrier(*, ring: float, latency: float = 0.0) -> SimulatorConfig:
    """The carrier, taking ``latency`` seconds to take a call and ringing ``ring`` seconds."""
    return replace(CARRIER, ring=timedelta(seconds=ring), latency=timedelta(seconds=latency))


Placed = CallRecord


class YieldingStore(MemoryStore):
    """The in-memory store, yielding to the loop on every call read, as a real one does:
    concurrent requests interleave."""

    async def call_by_idempotency_key(self, key: str) -> Call | None:
        await asyncio.sleep(0)
        return await super().call_by_idempotency_key(key)

    async def insert_call(self, call: Call, events: Sequence[CallEvent]) -> Call:
        await asyncio.sleep(0)
        return await super().insert_call(call, events)


class LockedOnceStore(MemoryStore):
    """The in-memory store, failing the first write of the intent to call (Placing),
    as a busy database might."""

    failed = False

    async def update_call(
        self,
        call: Call,
        events: Sequence[CallEvent],
        slot: tuple[str, datetime] | None = None,
    ) -> None:
        if call.status is CallStatus.PLACING and not self.failed:
            self.failed = True
            raise OSError("database is locked")
        await super().update_call(call, events, slot)


class Harness(testing.Harness):
    """The running service, with this module's helpers for calls."""

    @property
    def start(self) -> float:
        return self.started.mono

    def placed(self) -> list[Placed]:
        return self.placed_calls()

    def placed_ids(self) -> list[str]:
        return [p.call_id for p in self.placed()]

    def text_monos(self) -> list[float]:
        return [s.mono for s in self.sent_texts()]

    async def call(self, to: str, script: object = None, *, lane: Lane = Lane.AUTOMATION) -> Call:
        return (await self.submit(to, script, lane=lane)).call

    async def submit(
        self,
        to: str,
        script: object = None,
        *,
        name: str | None = None,
        lane: Lane = Lane.AUTOMATION,
        key: str | None = None,
    ) -> CallSubmission:
        if script is None and name is None:
            script = HELLO
        request = CallRequest(
            sender=SENDER, recipient=to, script=script, script_name=name, lane=lane,
            idempotency_key=key,
        )  # fmt: skip
        return await self.service.submit_call(request)

    async def summary(self) -> CallsSummary:
        summary = (await self.service.status()).calls
        assert summary is not None
        return summary

    async def get(self, call_id: str) -> Call:
        return (await self.service.call(call_id)).call

    async def history(self, call_id: str) -> list[CallEvent]:
        return (await self.service.call(call_id)).history

    async def statuses(self, call_id: str) -> list[CallStatus]:
        """The statuses the call went through (applied reports only)."""
        return [e.status for e in await self.history(call_id) if e.status and e.applied]

    async def results(self, call_id: str) -> list[tuple[VoiceResult, int | None]]:
        return [(e.result, e.step) for e in await self.history(call_id) if e.result]

    async def until_ended(self, *calls: Call, step: float = 0.25, max_steps: int = 200) -> None:
        async def done() -> bool:
            return all([(await self.get(c.id)).terminal for c in calls])

        await self.advance_until(done, step=step, max_steps=max_steps)


def config_for(
    home: Path, *, voice: VoiceConfig | None = None, simulator: SimulatorConfig = CARRIER
) -> Config:
    return Config(
        home=home,
        voice=voice or VoiceConfig(),
        simulator=simulator,
        scripts=parse_scripts(NAMED, where="test"),
    )


@asynccontextmanager
async def running(
    home: Path,
    *,
    voice: VoiceConfig | None = None,
    simulator: SimulatorConfig = CARRIER,
    store: Store | None = None,
    clock: FakeClock | None = None,
    rules: str | None = None,
) -> AsyncIterator[Harness]:
    config = config_for(home, voice=voice, simulator=simulator)
    if rules is not None:
        (home / "automations.toml").write_text(rules)
        config = replace(config, automations=AutomationsConfig(file=str(home / "automations.toml")))
    async with running_service(home, config=config, store=store, clock=clock) as harness:
        yield Harness.of(harness)


def gaps(monos: list[float]) -> list[float]:
    return [b - a for a, b in pairwise(monos)]


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running(tmp_path) as harness:
        yield harness


# -- pacing ------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [1.0, 2.0, 4.0])
async def test_calls_are_placed_one_slot_apart_per_account(tmp_path: Path, rate: float) -> None:
    async with running(tmp_path, voice=VoiceConfig(calls_per_second=rate)) as h:
        calls = [await h.call(recipient(i)) for i in range(5)]
        await h.clock.advance(0)
        assert h.placed_ids() == [calls[0].id]  # the account was idle: the first goes at once

        await h.until_ended(*calls, step=0.1, max_steps=400)
        placed = h.placed()
        assert [p.call_id for p in placed] == [c.id for c in calls]  # FIFO
        assert placed[0].mono == h.start
        spacing = gaps([p.mono for p in placed])
        assert all(1 / rate <= g <= 1 / rate + 2 * GUARD for g in spacing), spacing
        for call, p in zip(calls, placed, strict=True):
            stored = await h.get(call.id)
            assert stored.status is S.COMPLETED
            assert stored.provider_id == p.provider_id
            assert stored.attempt_id == p.attempt_id
            assert stored.placed_at is not None
            assert (stored.placed_at - calls[0].accepted_at).total_seconds() == pytest.approx(
                p.mono - h.start
            )


async def test_the_next_call_is_booked_from_the_moment_the_carrier_got_the_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every other call reaches the carrier 5 ms after the service read its clock, as
    when the process loses the CPU between the two reads: the account's next call is
    still at least one slot after the carrier got the previous one."""
    clock = FakeClock()
    place = Simulator.place_call
    placed = 0

    async def preempted(self: Simulator, request: PlaceCall) -> Any:
        nonlocal placed
        placed += 1
        if placed % 2:
            clock.stall(0.005)
        return await place(self, request)

    monkeypatch.setattr(Simulator, "place_call", preempted)
    async with running(tmp_path, clock=clock) as h:
        calls = [await h.call(recipient(i)) for i in range(4)]
        await h.until_ended(*calls, step=0.1, max_steps=400)
        spacing = gaps([p.mono for p in h.placed()])
    assert len(spacing) == 3
    assert min(spacing) >= 1.0, spacing


async def test_automation_calls_go_before_bulk_calls_submitted_earlier(h: Harness) -> None:
    bulk = [await h.call(recipient(i), lane=Lane.BULK) for i in range(3)]
    await h.clock.advance(0)
    assert h.placed_ids() == [bulk[0].id]

    auto = [await h.call(recipient(10 + i), lane=Lane.AUTOMATION) for i in range(2)]
    await h.until_ended(*bulk, *auto)
    assert h.placed_ids() == [bulk[0].id, auto[0].id, auto[1].id, bulk[1].id, bulk[2].id]
    assert all(g >= 1.0 for g in gaps([p.mono for p in h.placed()]))


async def test_texts_and_calls_from_one_number_are_paced_apart(h: Harness) -> None:
    for i in range(2):
        text = TextRequest(sender=SENDER, recipient=recipient(20 + i), body="See you at 9.")
        await h.service.submit(text)
        await h.call(recipient(30 + i))
    await h.clock.advance(0)
    # The text and the call from the same number leave in the same instant.
    assert h.text_monos() == [h.start]
    assert [p.mono for p in h.placed()] == [h.start]

    await h.clock.advance(1.5)
    assert [t - h.start for t in h.text_monos()] == [0, pytest.approx(1.0 + GUARD)]
    assert [p.mono - h.start for p in h.placed()] == [0, pytest.approx(1.0 + GUARD)]


# -- outcomes --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ending:
    """How a call to ``to`` with ``script`` goes: the statuses it passes, the results
    recorded (with their steps) and the reason it ends with."""

    to: str
    statuses: list[CallStatus]
    results: list[tuple[VoiceResult, int]]
    reason: str | None
    script: list[dict[str, Any]] = field(default_factory=lambda: HELLO)


_SAYS = [(R.SAY, 0), (R.SAY, 1)]
_PLACED = [S.QUEUED, S.PLACING, S.INITIATED, S.RINGING]
_ANSWERED = [*_PLACED, S.ANSWERED]
_UNFINISHED = CallReason.SCRIPT_UNFINISHED


@pytest.mark.parametrize(
    "ending",
    [
        Ending(HUMAN, [*_ANSWERED, S.COMPLETED], _SAYS, CallReason.SCRIPT_FINISHED),
        Ending(HANGS_UP, [*_ANSWERED, S.HANGUP], _SAYS[:1], _UNFINISHED),
        # The prompt of a Gather is the first thing heard.
        Ending(HANGS_UP, [*_ANSWERED, S.HANGUP], [(R.GATHER, 0)], _UNFINISHED, CONFIRM),
        Ending(BUSY, [*_PLACED, S.BUSY], [], None),
        Ending(NO_ANSWER, [*_PLACED, S.NO_ANSWER], [], None),
        Ending(BROKEN, [*_PLACED, S.FAILED], [], CallReason.CARRIER_FAILED),
    ],
    ids=lambda e: f"{e.to}-{e.statuses[-1].value}-{len(e.script)}",
)
async def test_the_recipient_decides_how_a_call_ends(h: Harness, ending: Ending) -> None:
    to, statuses, results, reason = ending.to, ending.statuses, ending.results, ending.reason
    call = await h.call(to, ending.script)
    await h.until_ended(call)
    await h.clock.advance(1)  # anything late arrives

    ended = await h.get(call.id)
    assert ended.status is statuses[-1]
    assert ended.reason == reason
    assert ended.script_done is (statuses[-1] is S.COMPLETED)
    assert ended.answered_by is None  # no answering-machine detection was asked for
    assert await h.statuses(call.id) == statuses
    assert await h.results(call.id) == results
    history = await h.history(call.id)
    assert [e.at for e in history] == sorted(e.at for e in history)
    assert h.placed_ids() == [call.id]
    assert h.placed()[0].machine_detection is None


@dataclass(frozen=True, slots=True)
class Detection:
    """Answering-machine detection: asked for by a voicemail drop (to the end of the
    greeting) or by ``voice.detect_machine``; who answered and what the call ran."""

    to: str
    script: list[dict[str, Any]]
    results: list[tuple[VoiceResult, int | None]]
    configured: bool = False

    @property
    def answered_by(self) -> str:
        return "machine" if self.to == MACHINE else "human"


@pytest.mark.parametrize(
    "case",
    [
        # A voicemail drop is left for a machine and never heard by a person.
        Detection(MACHINE, VOICEMAIL, [(R.MACHINE, None), (R.VOICEMAIL_DROP, 0)]),
        Detection(HUMAN, VOICEMAIL, [(R.HUMAN, None), (R.SAY, 1), (R.PAUSE, 2), (R.SAY, 3)]),
        # Detection configured for every call: recorded; the script is the same for both.
        Detection(MACHINE, HELLO, [(R.MACHINE, None), *_SAYS], configured=True),
        Detection(HUMAN, HELLO, [(R.HUMAN, None), *_SAYS], configured=True),
    ],
    ids=lambda c: f"{c.answered_by}-{len(c.script)}-{c.configured}",
)
async def test_answering_machine_detection_decides_what_is_played(
    tmp_path: Path, case: Detection
) -> None:
    async with running(tmp_path, voice=VoiceConfig(detect_machine=case.configured)) as h:
        call = await h.call(case.to, case.script)
        await h.until_ended(call)
        await h.clock.advance(1)

        ended = await h.get(call.id)
        assert (ended.status, ended.script_done) == (S.COMPLETED, True)
        assert ended.answered_by == case.answered_by
        assert await h.results(call.id) == case.results
        wanted = "Enable" if case.configured else "DetectMessageEnd"
        assert h.placed()[0].machine_detection == wanted
        view = await h.service.call(call.id)
        assert f"({case.answered_by} answered)" in view.explanation


@pytest.mark.parametrize(
    ("script", "ran"),
    [
        (VOICEMAIL, [R.HUMAN, R.SAY, R.PAUSE, R.SAY]),
        (CONFIRM, [R.GATHER, "no answer to the prompt", R.SAY]),
        (FOLLOW_UP[:2], [R.SAY, R.ACTIVITY]),  # the last step is silent
    ],
)
async def test_the_script_runs_in_order_and_its_end_is_recorded_last(
    h: Harness, script: list[dict[str, Any]], ran: list[str]
) -> None:
    call = await h.call(HUMAN, script)
    await h.until_ended(call)

    history = await h.history(call.id)
    steps = [e.result or e.reason or e.detail for e in history
             if e.source is Source.PROVIDER and e.status is None]  # fmt: skip
    assert steps == [*ran, CallReason.SCRIPT_FINISHED]
    assert (history[-1].status, history[-1].applied) == (S.COMPLETED, True)
    assert (await h.get(call.id)).script_done


# -- gather ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "to", "prompt", "then"),
    [
        (CONFIRM, PRESSES_1, "1", 2),
        (CONFIRM, PRESSES_2, "2", 3),
        (CONFIRM, PRESSES_9, "9", 1),  # no branch for 9: the next step
        (CONFIRM, HUMAN, None, 1),  # nothing pressed: the next step
        (CONFIRM_OTHERWISE, PRESSES_9, "9", 3),  # no branch: "otherwise"
        (CONFIRM_OTHERWISE, HUMAN, None, 3),
        (SPEECH, SAYS_YES, "yes please", 2),  # a branch's word in what was said
        (SPEECH, HUMAN, None, 1),
    ],
)
async def test_a_gather_branches_on_what_the_contact_pressed(
    h: Harness, script: list[dict[str, Any]], to: str, prompt: str | None, then: int
) -> None:
    call = await h.call(to, script)
    await h.until_ended(call)

    assert (await h.get(call.id)).status is S.COMPLETED
    history = await h.history(call.id)
    answered = [(e.result, e.step, e.detail) for e in history if e.result]
    heard: list[tuple[VoiceResult, int, str | None]] = [(R.GATHER, 0, None)]
    if prompt is not None:
        heard.append((R.PROMPT, 0, prompt))
    else:
        assert any(e.detail == "no answer to the prompt" and e.step == 0 for e in history)
    assert answered == [*heard, (R.SAY, then, None)]


# -- activities -------------------------------------------------------------------------


async def test_activity_steps_send_a_text_and_place_a_named_call(h: Harness) -> None:
    call = await h.call(HUMAN, FOLLOW_UP)
    await h.until_ended(call)
    calls = await h.service.find_calls(HUMAN)
    assert len(calls) == 2
    follow_up = next(c for c in calls if c.id != call.id)
    await h.until_ended(follow_up)

    assert await h.results(call.id) == [(R.SAY, 0), (R.ACTIVITY, 1), (R.ACTIVITY, 2), (R.SAY, 3)]
    [text] = await h.service.find(HUMAN)
    assert text.body == "Your appointment is tomorrow at 9."
    assert text.sender == SENDER
    assert text.idempotency_key == f"{call.id}:step1"
    details = {e.step: e.detail for e in await h.history(call.id) if e.result is R.ACTIVITY}
    assert details[1] == f"text {text.id} Queued"
    assert details[2] == f"call {follow_up.id} Queued"

    ended = await h.get(follow_up.id)
    assert (ended.script_name, ended.trigger, ended.status) == (
        "reminder",
        f"{call.id}:step2",
        S.COMPLETED,
    )
    assert await h.results(follow_up.id) == [(R.SAY, 0)]
    assert h.placed_ids() == [call.id, follow_up.id]
    await advance_until(h.clock, lambda: _text_is(h, text.id, TextStatus.DELIVERED), max_steps=20)

    # The carrier asking again for a step already run triggers nothing new.
    await h.service.voice(call.id, "1", VoiceTurn())
    assert len(await h.service.find(HUMAN)) == 1
    assert len(await h.service.find_calls(HUMAN)) == 2


async def _text_is(h: Harness, message_id: str, status: TextStatus) -> bool:
    message = await h.service.store.get(message_id)
    return message is not None and message.status is status


async def test_a_repeated_webhook_request_triggers_an_activity_once(tmp_path: Path) -> None:
    # A long ring: the call is up (Initiated) while the webhook is asked for by hand.
    async with running(tmp_path, simulator=slow_carrier(ring=5)) as h:
        call = await h.call(HUMAN, FOLLOW_UP)
        await h.clock.advance(0)
        assert (await h.get(call.id)).status is S.INITIATED

        first = await h.service.voice(call.id, "1", VoiceTurn())
        again = await h.service.voice(call.id, "1", VoiceTurn())
        assert first == again
        assert len(await h.service.find(HUMAN)) == 1
        assert len(await h.service.find_calls(HUMAN)) == 2

        # The simulator answers and runs the whole script: still one of each.
        await h.until_ended(call, step=1.0)
        calls = await h.service.find_calls(HUMAN)
        await h.until_ended(*calls, step=1.0)
        assert len(await h.service.find(HUMAN)) == 1
        assert len(calls) == 2
        assert len(h.placed()) == 2
        activities = [e for e in await h.history(call.id) if e.result is R.ACTIVITY]
        assert [e.step for e in activities] == [1, 2, 1, 2, 1, 2]
        # Each names the one text and the one call triggered the first time.
        assert len({(e.detail or "").rsplit(" ", 1)[0] for e in activities}) == 2


# -- idempotency -------------------------------------------------------------------------


@pytest.mark.parametrize("store", [MemoryStore, YieldingStore])
async def test_one_idempotency_key_is_one_call(tmp_path: Path, store: type[MemoryStore]) -> None:
    async with running(tmp_path, store=store()) as h:
        results = await asyncio.gather(*(h.submit(HUMAN, key="appt-42") for _ in range(20)))
        assert len({r.call.id for r in results}) == 1
        assert [r.created for r in results].count(True) == 1

        with pytest.raises(Conflict):
            await h.submit(HUMAN, CONFIRM, key="appt-42")
        with pytest.raises(Conflict):
            await h.submit(HUMAN, name="reminder", key="appt-42")

        call = results[0].call
        await h.until_ended(call)
        late = await h.submit(HUMAN, key="appt-42")
        assert (late.created, late.call.id, late.call.status) == (False, call.id, S.COMPLETED)
        assert len(await h.service.find_calls(HUMAN)) == 1
        assert h.placed_ids() == [call.id]


# -- cancel ------------------------------------------------------------------------------


async def test_cancel_a_queued_call_but_not_a_placed_one(h: Harness) -> None:
    first = await h.call(recipient(0))
    second = await h.call(recipient(1))
    third = await h.call(recipient(2))
    await h.clock.advance(0)

    canceled = await h.service.cancel_call(second.id)
    assert (canceled.status, canceled.reason) == (S.CANCELED, CallReason.CANCELED)
    again = await h.service.cancel_call(second.id)
    assert again.status is S.CANCELED
    assert (await h.service.call(second.id)).explanation.startswith("Canceled")
    with pytest.raises(Conflict):
        await h.service.cancel_call(first.id)  # being placed

    await h.until_ended(first, third)
    with pytest.raises(Conflict):
        await h.service.cancel_call(first.id)  # ended
    with pytest.raises(NotFound):
        await h.service.cancel_call("call_nope")
    await h.clock.advance(2)

    assert h.placed_ids() == [first.id, third.id]
    # The cancelled call gave its slot to the next one.
    assert gaps([p.mono for p in h.placed()]) == [pytest.approx(1.0 + GUARD)]
    assert await h.statuses(second.id) == [S.QUEUED, S.CANCELED]
    assert (await h.history(second.id))[-1].source is Source.OPERATOR


# -- reports ---------------------------------------------------------------------------


def report(provider_id: str, status: CallStatus, at: datetime, **extra: Any) -> CallReport:
    return CallReport(provider_id=provider_id, status=status, at=at, **extra)


async def test_late_and_repeated_reports_never_move_an_ended_call_back(h: Harness) -> None:
    call = await h.call(HUMAN, VOICEMAIL)  # with answering-machine detection
    await h.until_ended(call)
    ended = await h.get(call.id)
    assert (ended.status, ended.answered_by) == (S.COMPLETED, "human")
    assert ended.provider_id is not None
    before = await h.history(call.id)

    at = h.clock.now().wall
    late = [S.RINGING, S.ANSWERED, S.COMPLETED, S.BUSY, S.FAILED, S.COMPLETED]
    for status in late:
        h.service.report_call(report(ended.provider_id, status, at, answered_by="machine"))
    await h.clock.advance(0)

    assert await h.get(call.id) == ended
    added = (await h.history(call.id))[len(before) :]
    assert [(e.status, e.applied, e.detail) for e in added] == [
        (S.RINGING, False, "stale"),
        (S.ANSWERED, False, "stale"),
        (S.COMPLETED, False, "duplicate"),
        (S.BUSY, False, "stale"),
        (S.FAILED, False, "stale"),
        (S.COMPLETED, False, "duplicate"),
    ]
    assert all(e.source is Source.RECEIPT for e in added)
    assert [e.result for e in await h.history(call.id) if e.result in (R.HUMAN, R.MACHINE)] == [
        R.HUMAN
    ]


async def test_reports_out_of_order_while_the_call_is_up(tmp_path: Path) -> None:
    # A long ring: the reports arrive by hand before the simulator's own.
    async with running(tmp_path, simulator=slow_carrier(ring=10)) as h:
        call = await h.call(HUMAN)
        await h.clock.advance(0)
        placed = await h.get(call.id)
        assert placed.status is S.INITIATED
        assert placed.provider_id is not None
        at = h.clock.now().wall

        steps = [
            (S.ANSWERED, S.ANSWERED, True),
            (S.RINGING, S.ANSWERED, False),  # late: Answered stays
            (S.ANSWERED, S.ANSWERED, False),  # repeated
            (S.BUSY, S.ANSWERED, False),  # an answered call was not busy
            (S.COMPLETED, S.HANGUP, True),  # ended before the script did: Hangup
            (S.ANSWERED, S.HANGUP, False),
        ]
        for reported, status, applied in steps:
            h.service.report_call(report(placed.provider_id, reported, at))
            await h.clock.advance(0)
            assert (await h.get(call.id)).status is status
            last = (await h.history(call.id))[-1]
            assert (last.applied, last.source) == (applied, Source.RECEIPT)

        await h.clock.advance(12)  # the simulator rings, answers and hangs up late
        ended = await h.get(call.id)
        assert (ended.status, ended.script_done) == (S.HANGUP, False)
        assert await h.results(call.id) == []  # the script never ran on an ended call
        assert await h.statuses(call.id) == [*_PLACED[:3], S.ANSWERED, S.HANGUP]


# -- crash safety ------------------------------------------------------------------------


async def test_a_call_whose_intent_could_not_be_written_keeps_its_place(tmp_path: Path) -> None:
    store = LockedOnceStore()
    async with running(tmp_path, store=store) as h:
        first = await h.call(recipient(0))
        await h.clock.advance(0)
        assert store.failed
        assert (await h.get(first.id)).status is S.QUEUED
        summary = await h.summary()
        assert summary.queued == 1  # still in line, not lost until a restart

        second = await h.call(recipient(1))
        await h.until_ended(first, second)
        assert h.placed_ids() == [first.id, second.id]
        assert h.placed()[0].mono - h.start == pytest.approx(ERROR_BACKOFF)


@asynccontextmanager
async def recovered(
    home: Path,
    *,
    reached: bool,
    up: Sequence[CallStatus] = (),
    to: str = HUMAN,
    rules: str | None = None,
) -> AsyncIterator[tuple[Harness, Call]]:
    """The service started on a store holding a call a crashed run left Placing, or in
    the last of ``up`` (statuses the carrier reported after it took the call);
    ``reached``: the simulator logged the attempt before the crash."""
    clock = FakeClock()
    store = MemoryStore()
    now = clock.now().wall
    call = Call(
        id="call_crashed", account="simulator", sender=SENDER, recipient=to,
        script=json.dumps(HELLO), script_name=None, lane=Lane.AUTOMATION,
        status=S.PLACING, accepted_at=now, updated_at=now, attempt_id="att_crashed",
    )  # fmt: skip
    events = [
        CallEvent(call_id=call.id, at=now, status=S.QUEUED, source=Source.API),
        CallEvent(call_id=call.id, at=now, status=S.PLACING, source=Source.SCHEDULER),
    ]
    await store.insert_call(call, events)
    if reached:
        log = config_for(home).simulator_log
        async with Simulator(config=CARRIER, log_path=log, clock=clock) as simulator:
            taken = await simulator.place_call(
                PlaceCall(call_id=call.id, attempt_id="att_crashed", sender=SENDER,
                          recipient=to, voice_url="http://x/v", status_callback_url="http://x/s")
            )  # fmt: skip
        for status in up:  # what the crashed run had recorded of the call
            event, after = call_status(call, status, at=now, source=Source.RECEIPT)
            call = replace(after, provider_id=taken.provider_id)
            await store.update_call(call, [event])
    async with running(home, store=store, clock=clock, rules=rules) as h:
        yield h, call


async def reconciled(h: Harness, call: Call) -> list[CallEvent]:
    return [e for e in await h.history(call.id) if e.source is Source.RECONCILE]


async def test_a_call_the_carrier_got_before_a_crash_is_not_dialled_again(tmp_path: Path) -> None:
    async with recovered(tmp_path, reached=True) as (h, call):
        [earlier] = h.placed()
        assert [e.status for e in await reconciled(h, call)] == [S.INITIATED]
        taken = await h.get(call.id)
        assert (taken.provider_id, taken.placed_at) == (earlier.provider_id, call.accepted_at)

        await h.until_ended(call)
        await h.clock.advance(3)
        assert h.placed() == [earlier]
        # The call's end is learned by asking the carrier: it ended with the old run,
        # never answered (a crash cut it while it rang): No answer, not Hangup.
        ended = await h.get(call.id)
        assert (ended.status, ended.provider_id) == (S.NO_ANSWER, earlier.provider_id)
        assert ended.reason == CallReason.ENDED_UNANSWERED


async def test_a_call_the_carrier_never_got_is_queued_again_and_placed_once(
    tmp_path: Path,
) -> None:
    async with recovered(tmp_path, reached=False) as (h, call):
        assert h.placed() == []
        [queued] = await reconciled(h, call)
        assert (queued.status, queued.reason) == (S.QUEUED, CallReason.NOT_RECEIVED)
        later = await h.call(recipient(1))
        view = await h.service.call(later.id)
        assert "behind 1 call " in view.explanation  # the one call queued again
        assert (await h.summary()).queued == 2

        await h.until_ended(call, later)
        await h.clock.advance(2)
        assert h.placed_ids() == [call.id, later.id]
        placed = h.placed()[0]
        assert placed.attempt_id != "att_crashed"
        assert placed.mono - h.start == pytest.approx(1.0 + GUARD)  # a full slot after start
        ended = await h.get(call.id)
        assert (ended.status, ended.provider_id) == (S.COMPLETED, placed.provider_id)


ON_ENDS = "".join(
    f'[[automation]]\nname = "on-{end}"\non = "call.{end}"\ndo = "text"\nbody = "x"\n'
    for end in ("hangup", "no_answer", "busy", "failed")
)


@pytest.mark.parametrize(
    ("up", "to", "ends", "reason"),
    [
        # Cut while it rang: the carrier says it ended, and it was never answered.
        ([S.INITIATED], HUMAN, S.NO_ANSWER, CallReason.ENDED_UNANSWERED),
        ([S.INITIATED, S.RINGING], HUMAN, S.NO_ANSWER, CallReason.ENDED_UNANSWERED),
        # The carrier says how it ended: as it says.
        ([S.INITIATED, S.RINGING], BUSY, S.BUSY, None),
        ([S.INITIATED], BROKEN, S.FAILED, CallReason.CARRIER_FAILED),
        # Answered before the crash: the contact was cut off before the script ended.
        ([S.INITIATED, S.RINGING, S.ANSWERED], HUMAN, S.HANGUP, CallReason.SCRIPT_UNFINISHED),
    ],
    ids=lambda v: v[-1].value if isinstance(v, list) else str(v),
)
async def test_a_call_up_when_the_service_died_ends_as_it_did_at_the_carrier(
    tmp_path: Path, up: list[CallStatus], to: str, ends: CallStatus, reason: str | None
) -> None:
    async with recovered(tmp_path, reached=True, up=up, to=to, rules=ON_ENDS) as (h, call):
        await h.until_ended(call)
        await h.clock.advance(3)
        ended = await h.get(call.id)
        statuses = await h.statuses(call.id)
        view = await h.service.call(call.id)
        runs = await h.service.store.list_runs(10)
    assert (ended.status, ended.reason) == (ends, reason)
    # The automations see the end the call had: a Hangup only for an answered call.
    assert [r.result for r in runs] == [f"call.{ends.value.lower().replace(' ', '_')}"]
    assert statuses == [S.QUEUED, S.PLACING, *up, ends]
    assert (S.HANGUP in statuses) is (S.ANSWERED in statuses)  # Hangup only once answered
    assert len(h.placed()) == 1  # asked about, never dialled again
    if reason == CallReason.ENDED_UNANSWERED:
        assert "ended before it was answered" in view.explanation


def test_the_carriers_completed_is_hangup_only_for_a_call_answered_here() -> None:
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    call = Call(id="c", account="a", sender=SENDER, recipient=HUMAN, script="[]",
                script_name=None, lane=Lane.AUTOMATION, status=S.RINGING, accepted_at=now,
                updated_at=now)  # fmt: skip
    unanswered = [(S.NO_ANSWER, CallReason.ENDED_UNANSWERED)]
    assert carrier_completed(call, answered=None) == unanswered
    assert carrier_completed(call, answered=False) == unanswered
    assert carrier_completed(call, answered=True) == [
        (S.ANSWERED, None), (S.FAILED, CallReason.SCRIPT_NOT_SERVED),
    ]  # fmt: skip
    up = replace(call, status=S.ANSWERED)
    assert carrier_completed(up, answered=None) == [(S.HANGUP, CallReason.SCRIPT_UNFINISHED)]
    done = replace(up, script_done=True)
    assert carrier_completed(done, answered=True) == [(S.COMPLETED, CallReason.SCRIPT_FINISHED)]


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        CallRequest(sender="12", recipient=HUMAN, script=HELLO),
        CallRequest(sender=SENDER, recipient="not a number", script=HELLO),
        CallRequest(sender=SENDER, recipient=HUMAN, script=[]),
        CallRequest(sender=SENDER, recipient=HUMAN, script="say hello"),
        CallRequest(sender=SENDER, recipient=HUMAN, script=[{"say": ""}]),
        CallRequest(sender=SENDER, recipient=HUMAN, script=[{"say": "hi", "play": "x"}]),
        CallRequest(sender=SENDER, recipient=HUMAN, script=[{"say": "hi", "goto": "nowhere"}]),
        CallRequest(sender=SENDER, recipient=HUMAN, script=[{"activity": "call", "script": "x"}]),
        CallRequest(sender=SENDER, recipient=HUMAN, script=HELLO, script_name="reminder"),
        CallRequest(sender=SENDER, recipient=HUMAN),
        CallRequest(sender=SENDER, recipient=HUMAN, script_name="no-such-script"),
        CallRequest(sender=SENDER, recipient=HUMAN, script=HELLO, idempotency_key=""),
    ],
)
async def test_bad_requests_are_refused_and_nothing_is_stored(
    h: Harness, request_: CallRequest
) -> None:
    with pytest.raises(InvalidInput):
        await h.service.submit_call(request_)
    await h.clock.advance(1)
    assert await h.service.find_calls(HUMAN) == []
    assert h.placed() == []
    assert (await h.summary()).counts == {}


@pytest.mark.parametrize("at", ["junk", "", "1.bogus", "99", "-1", "0.result", "1.dialed"])
async def test_the_voice_webhook_refuses_a_position_not_in_the_script(h: Harness, at: str) -> None:
    call = await h.call(HUMAN)
    with pytest.raises(InvalidInput):
        await h.service.voice(call.id, at, VoiceTurn())
    assert await h.results(call.id) == []


async def test_the_voice_webhook_for_an_unknown_call_is_not_found(h: Harness) -> None:
    with pytest.raises(NotFound):
        await h.service.voice("call_nope", "start", VoiceTurn())
    with pytest.raises(NotFound):
        await h.service.call("call_nope")


# -- status ------------------------------------------------------------------------------


async def test_status_shows_the_calls_counts_queue_and_next_slot(tmp_path: Path) -> None:
    async with running(tmp_path, simulator=slow_carrier(ring=2, latency=0.2)) as h:
        calls = [await h.call(recipient(i)) for i in range(3)]
        await h.clock.advance(0)

        summary = await h.summary()
        assert _nonzero(summary.counts) == {S.QUEUED: 2, S.PLACING: 1}
        assert (summary.queued, summary.in_flight) == (2, 1)
        assert (summary.account, summary.rate) == ("simulator", 1.0)
        start = calls[0].accepted_at
        assert summary.next_slot_at == start + timedelta(seconds=1 + GUARD)
        view = await h.service.call(calls[2].id)
        assert "behind 1 call " in view.explanation

        await h.clock.advance(0.5)  # the provider took the first call
        summary = await h.summary()
        assert _nonzero(summary.counts) == {S.QUEUED: 2, S.INITIATED: 1}
        assert (summary.queued, summary.in_flight) == (2, 0)

        await h.clock.advance(0.6)  # the second call is being placed
        summary = await h.summary()
        assert _nonzero(summary.counts) == {S.QUEUED: 1, S.PLACING: 1, S.INITIATED: 1}
        assert (summary.queued, summary.in_flight) == (1, 1)
        assert summary.next_slot_at == start + timedelta(seconds=2 * (1 + GUARD))

        await h.until_ended(*calls)
        summary = await h.summary()
        assert _nonzero(summary.counts) == {S.COMPLETED: 3}
        assert (summary.queued, summary.in_flight) == (0, 0)
        assert summary.next_slot_at == start + timedelta(seconds=3 * (1 + GUARD))


def _nonzero(counts: dict[CallStatus, int]) -> dict[CallStatus, int]:
    return {k: v for k, v in counts.items() if v}


async def test_a_call_whose_validity_ends_before_its_slot_is_not_placed(h: Harness) -> None:
    first = await h.call(recipient(1))
    second = await h.call(recipient(2))
    request = CallRequest(sender=SENDER, recipient=recipient(3), script=HELLO,
                          validity=timedelta(seconds=1.5))  # fmt: skip
    late = (await h.service.submit_call(request)).call
    assert late.expires_at == late.accepted_at + timedelta(seconds=1.5)
    await h.until_ended(first, second, late)
    ended = await h.get(late.id)
    assert (ended.status, ended.reason) == (S.CANCELED, "expired")
    assert h.placed_ids() == [first.id, second.id]
