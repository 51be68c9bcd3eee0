"""Calls over real HTTP: Twilio's voice webhook and status callbacks, signed exactly as
Twilio signs them, drive a call step by step (the simulator lets it ring for hours and
never asks for TwiML itself), and the automation API places and reads calls."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

import pytest
from twilio.request_validator import RequestValidator

from dispatcher.core.calls import CallReason, CallStatus, VoiceResult
from dispatcher.engine.calls import CallView, voice_url
from dispatcher.service import CallRequest
from tests.peers import ACCOUNT_SID, AUTH_TOKEN, App, until_call

SENDER = "+15550000001"
CONTACT = "+15550400001"
SCRIPT: list[dict[str, Any]] = [
    {"say": "Hi, this is Acme Dental."},
    {"gather": "Press 1 to confirm, 2 to speak to us.", "digits": 1,
     "on": {"1": "confirmed", "2": "desk"}},
    {"say": "We did not get that. Goodbye.", "goto": "end"},
    {"label": "confirmed", "say": "Thank you, see you tomorrow.", "goto": "end"},
    {"label": "desk", "say": "Please hold for the front desk.", "goto": "end"},
]  # fmt: skip
VOICEMAIL: list[dict[str, Any]] = [
    {"voicemail_drop": "Please call Acme Dental back."},
    {"say": "Hi, this is Acme Dental."},
]

Verb = tuple[str, str, dict[str, str]]  # tag, text (a Gather's: its prompt's), attributes


def verbs(twiml: str) -> list[Verb]:
    """The verbs of a TwiML document, in order."""
    root = ElementTree.fromstring(twiml)  # noqa: S314 - the app under test's own TwiML
    assert root.tag == "Response"
    return [(v.tag, "".join(v.itertext()).strip(), dict(v.attrib)) for v in root]


@dataclass
class Call:
    """A call the simulator took (Initiated), driven only by a test acting as Twilio."""

    app: App
    id: str
    sid: str

    def at(self, position: str) -> str:
        return voice_url(self.app.url, self.id, position)

    async def voice(
        self, url: str, *, signature: str | None = None, **form: str
    ) -> tuple[int, str]:
        """Twilio asks ``url`` (a voice URL of this call) what to play next."""
        params = {"CallSid": self.sid, "AccountSid": ACCOUNT_SID, "From": SENDER,
                  "To": CONTACT, "CallStatus": "in-progress", **form}  # fmt: skip
        return await self.app.twilio(url, params, signature=signature)

    async def play(self, url: str, **form: str) -> list[Verb]:
        status, twiml = await self.voice(url, **form)
        assert status == 200, twiml
        return verbs(twiml)

    async def report(
        self, status: str = "", *, signature: str | None = None, **form: str
    ) -> tuple[int, str]:
        """Twilio's status callback for this call (``status``, or CallStatus in ``form``)."""
        params = {"CallSid": self.sid, "AccountSid": ACCOUNT_SID, "CallStatus": status, **form}
        path = f"/twilio/call-status/{self.id}"
        return await self.app.twilio(path, params, signature=signature)

    async def view(self) -> CallView:
        return await self.app.service.call(self.id)

    async def until(self, status: CallStatus, events: int = 0) -> CallView:
        """The call once it is in ``status`` with at least ``events`` in its history."""

        def reached(view: CallView) -> bool:
            return view.call.status is status and len(view.history) >= events

        return await until_call(self.app.service, self.id, reached, f"{status} ({events})")

    async def unchanged_since(self, before: CallView) -> None:
        """Nothing but one repeated "initiated" report since ``before``: reports are applied
        in order, so once that one is in, any report accepted before it is in too."""
        assert (await self.report("initiated"))[0] == 204
        after = await self.until(before.call.status, events=len(before.history) + 1)
        assert after.call == before.call
        assert after.history[:-1] == before.history
        assert (after.history[-1].status, after.history[-1].applied) == (
            CallStatus.INITIATED, False
        )  # fmt: skip


async def ringing(app: App, script: list[dict[str, Any]] = SCRIPT) -> Call:
    """A call placed with ``script``, Initiated at the simulator (which lets it ring)."""
    request = CallRequest(sender=SENDER, recipient=CONTACT, script=script)
    submitted = (await app.service.submit_call(request)).call

    def taken(view: CallView) -> bool:
        return view.call.status is CallStatus.INITIATED

    view = await until_call(app.service, submitted.id, taken, "the simulator to take the call")
    assert view.call.provider_id is not None
    assert view.call.provider_id.startswith("CA")
    return Call(app=app, id=submitted.id, sid=view.call.provider_id)


def results(view: CallView) -> list[tuple[VoiceResult, int | None, str | None]]:
    return [(e.result, e.step, e.detail) for e in view.history if e.result is not None]


def applied(view: CallView) -> list[CallStatus]:
    return [e.status for e in view.history if e.status is not None and e.applied]


# -- the voice webhook and status callbacks ------------------------------------------------


@pytest.mark.parametrize(
    ("digits", "step", "said"),
    [("1", 3, "Thank you, see you tomorrow."), ("2", 4, "Please hold for the front desk.")],
)
async def test_twilio_drives_a_scripted_call_by_http(
    app: App, digits: str, step: int, said: str
) -> None:
    call = await ringing(app)
    assert (await call.report("ringing"))[0] == 204
    await call.until(CallStatus.RINGING)
    assert (await call.report("in-progress", AnsweredBy="human"))[0] == 204
    await call.until(CallStatus.ANSWERED)

    start = await call.play(call.at("start"))
    assert start == [("Say", "Hi, this is Acme Dental.", {}),
                     ("Redirect", call.at("1"), {"method": "POST"})]  # fmt: skip
    gather = await call.play(start[-1][1])
    prompt = {"action": call.at("1.result"), "input": "dtmf", "method": "POST",
              "numDigits": "1", "timeout": "5"}  # fmt: skip
    assert gather == [("Gather", "Press 1 to confirm, 2 to speak to us.", prompt),
                      ("Redirect", call.at("1.result"), {"method": "POST"})]  # fmt: skip
    # The branch Twilio takes with the digits the contact pressed:
    answered = await call.play(prompt["action"], Digits=digits)
    assert answered == [("Say", said, {}), ("Redirect", call.at("end"), {"method": "POST"})]
    assert await call.play(answered[-1][1]) == [("Hangup", "", {})]
    assert (await call.view()).call.script_done

    assert (await call.report("completed", CallDuration="21"))[0] == 204
    view = await call.until(CallStatus.COMPLETED)
    assert view.call.reason == CallReason.SCRIPT_FINISHED
    assert view.call.answered_by == "human"
    assert applied(view) == [
        CallStatus.QUEUED, CallStatus.PLACING, CallStatus.INITIATED, CallStatus.RINGING,
        CallStatus.ANSWERED, CallStatus.COMPLETED,
    ]  # fmt: skip
    assert results(view) == [
        (VoiceResult.HUMAN, None, None), (VoiceResult.SAY, 0, None), (VoiceResult.GATHER, 1, None),
        (VoiceResult.PROMPT, 1, digits), (VoiceResult.SAY, step, None),
    ]  # fmt: skip


async def test_a_gather_without_an_answer_goes_on_to_the_next_step(app: App) -> None:
    call = await ringing(app)
    await call.play(call.at("start"))
    assert await call.play(call.at("1.result")) == [
        ("Say", "We did not get that. Goodbye.", {}),
        ("Redirect", call.at("end"), {"method": "POST"}),
    ]
    view = await call.view()
    assert VoiceResult.PROMPT not in [r for r, _, _ in results(view)]
    assert "no answer to the prompt" in [e.detail for e in view.history]


async def test_a_contact_who_hangs_up_before_the_end_is_a_hangup(app: App) -> None:
    call = await ringing(app)
    await call.play(call.at("start"))
    assert (await call.report("completed"))[0] == 204
    view = await call.until(CallStatus.HANGUP)
    assert view.call.reason == CallReason.SCRIPT_UNFINISHED
    assert not view.call.script_done
    # Twilio asks again after the end: the call is over, it hangs up.
    assert await call.play(call.at("1")) == [("Hangup", "", {})]
    assert (await call.view()).history == view.history


async def test_repeated_and_late_callbacks_never_move_a_call_back(app: App) -> None:
    call = await ringing(app)
    for status in ("initiated", "ringing", "in-progress", "in-progress"):
        assert (await call.report(status))[0] == 204
    await call.until(CallStatus.ANSWERED, events=7)
    assert await call.play(call.at("end")) == [("Hangup", "", {})]
    for status in ("completed", "completed", "ringing", "in-progress"):
        assert (await call.report(status))[0] == 204
    view = await call.until(CallStatus.COMPLETED, events=12)
    assert view.call.status is CallStatus.COMPLETED
    assert applied(view)[-3:] == [CallStatus.RINGING, CallStatus.ANSWERED, CallStatus.COMPLETED]
    late = [(e.status, e.detail) for e in view.history if e.status and not e.applied]
    assert late == [
        (CallStatus.INITIATED, "duplicate"), (CallStatus.ANSWERED, "duplicate"),
        (CallStatus.COMPLETED, "duplicate"), (CallStatus.RINGING, "stale"),
        (CallStatus.ANSWERED, "stale"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("callback", "status", "code"),
    [
        ({"CallStatus": "busy"}, CallStatus.BUSY, None),
        ({"CallStatus": "no-answer"}, CallStatus.NO_ANSWER, None),
        ({"CallStatus": "failed", "ErrorCode": "32009"}, CallStatus.FAILED, "32009"),
        ({"CallStatus": "canceled"}, CallStatus.CANCELED, None),
    ],
)
async def test_a_call_that_is_never_answered_ends_as_twilio_says(
    app: App, callback: dict[str, str], status: CallStatus, code: str | None
) -> None:
    call = await ringing(app)
    assert (await call.report("ringing"))[0] == 204
    assert (await call.report(**callback))[0] == 204
    view = await call.until(status)
    assert view.call.provider_code == code
    assert applied(view)[-2:] == [CallStatus.RINGING, status]
    assert await call.play(call.at("start")) == [("Hangup", "", {})]  # too late: nothing runs
    assert (await call.view()).history == view.history


@pytest.mark.parametrize(
    ("callback", "statuses", "reason"),
    [
        # "completed" for a call never answered here: as long as the call lasted.
        ({"CallDuration": "0"}, [CallStatus.NO_ANSWER], CallReason.ENDED_UNANSWERED),
        ({}, [CallStatus.NO_ANSWER], CallReason.ENDED_UNANSWERED),
        ({"CallDuration": "9"}, [CallStatus.ANSWERED, CallStatus.FAILED],
         CallReason.SCRIPT_NOT_SERVED),
    ],
)  # fmt: skip
async def test_a_call_that_ends_before_the_service_saw_it_answered_is_never_a_hangup(
    app: App, callback: dict[str, str], statuses: list[CallStatus], reason: str
) -> None:
    call = await ringing(app)
    assert (await call.report("ringing"))[0] == 204
    assert (await call.report("completed", **callback))[0] == 204
    view = await call.until(statuses[-1])
    assert view.call.reason == reason
    assert applied(view)[-1 - len(statuses) :] == [CallStatus.RINGING, *statuses]
    assert CallStatus.HANGUP not in applied(view)


@pytest.mark.parametrize(
    ("answered_by", "by", "heard", "ran"),
    [
        ("machine_end_beep", VoiceResult.MACHINE, "Please call Acme Dental back.",
         (VoiceResult.VOICEMAIL_DROP, 0, None)),
        ("human", VoiceResult.HUMAN, "Hi, this is Acme Dental.", (VoiceResult.SAY, 1, None)),
    ],
)  # fmt: skip
async def test_a_machine_hears_the_voicemail_and_a_human_does_not(
    app: App, answered_by: str, by: VoiceResult, heard: str, ran: tuple[VoiceResult, int, None]
) -> None:
    call = await ringing(app, VOICEMAIL)
    start = await call.play(call.at("start"), AnsweredBy=answered_by)
    assert start == [("Say", heard, {}), ("Redirect", call.at("end"), {"method": "POST"})]
    assert await call.play(call.at("end")) == [("Hangup", "", {})]
    view = await call.view()
    assert view.call.answered_by == by.value.lower()
    assert results(view) == [(by, None, None), ran]
    assert (await call.report("completed"))[0] == 204
    assert (await call.until(CallStatus.COMPLETED)).call.reason == CallReason.SCRIPT_FINISHED


@pytest.mark.parametrize("signature", ["", "forged-signature", "wrong-url"])
@pytest.mark.parametrize("route", ["voice", "call-status"])
async def test_unsigned_or_forged_requests_are_refused_and_change_nothing(
    app: App, route: str, signature: str
) -> None:
    call = await ringing(app)
    before = await call.view()
    if signature == "wrong-url":  # signed as Twilio signs, but for another call's URL
        other = f"{app.url}/twilio/{route}/call_other"
        params = {"CallSid": call.sid, "CallStatus": "completed"}
        signature = RequestValidator(AUTH_TOKEN).compute_signature(other, params)
    if route == "voice":
        status, body = await call.voice(call.at("start"), signature=signature)
    else:
        status, body = await call.report("completed", signature=signature)
    assert (status, json.loads(body)["error"]["code"]) == (403, "forbidden")
    await call.unchanged_since(before)


@pytest.mark.parametrize("at", ["junk", "99", "0.result", "2.recorded", "1.bogus", "-1", ""])
async def test_a_position_not_in_the_script_is_refused(app: App, at: str) -> None:
    call = await ringing(app)
    before = await call.view()
    status, body = await call.voice(call.at(at))
    assert (status, json.loads(body)["error"]["field"]) == (400, "at")
    assert await call.view() == before


async def test_unknown_calls_are_not_found(app: App) -> None:
    call = await ringing(app)
    stranger = Call(app=app, id="call_unknown", sid=call.sid)
    assert (await stranger.voice(stranger.at("start")))[0] == 404
    assert (await stranger.report("completed"))[0] == 404
    assert (await call.view()).call.status is CallStatus.INITIATED


@pytest.mark.parametrize(
    ("form", "expected", "field"),
    [
        ({"CallSid": "CA" + "f" * 32}, 409, None),  # another call at Twilio
        ({"CallStatus": "exploded"}, 400, "CallStatus"),
        ({"CallStatus": ""}, 400, "CallStatus"),
        ({"CallSid": ""}, 400, "CallStatus"),
    ],
)
async def test_status_callbacks_twilio_would_not_send_are_refused(
    app: App, form: dict[str, str], expected: int, field: str | None
) -> None:
    call = await ringing(app)
    before = await call.view()
    params = {"CallSid": call.sid, "CallStatus": "completed", **form}
    status, body = await app.twilio(f"/twilio/call-status/{call.id}", params)
    assert (status, json.loads(body)["error"].get("field")) == (expected, field)
    await call.unchanged_since(before)


async def test_a_voice_request_from_another_twilio_call_is_refused(app: App) -> None:
    call = await ringing(app)
    before = await call.view()
    stranger = Call(app=app, id=call.id, sid="CA" + "f" * 32)
    status, _ = await stranger.voice(call.at("start"))
    assert status == 409
    assert await call.view() == before


# -- the automation API ---------------------------------------------------------------------


NEW: dict[str, Any] = {"from": SENDER, "to": "+15550500001", "script": SCRIPT}


async def calls_to(app: App, number: str) -> int:
    return len(await app.service.find_calls(number))


@pytest.mark.parametrize("script", [SCRIPT, "reminder"])
async def test_place_and_read_a_call(app: App, script: object) -> None:
    status, created = await app.request(
        "POST", "/v1/calls", json={**NEW, "script": script}, headers=app.api()
    )
    assert status == 201
    assert created["status"] == "Queued"
    assert {"id", "status"} <= set(created)
    status, view = await app.request("GET", f"/v1/calls/{created['id']}", headers=app.api())
    assert status == 200
    assert {"id", "status", "reason", "provider_sid", "status_callback_url", "history",
            "explanation"} <= set(view)  # fmt: skip
    assert view["id"] == created["id"]
    assert view["status_callback_url"] == f"{app.url}/twilio/call-status/{created['id']}"
    assert view["history"][0]["status"] == "Queued"
    assert view["script_name"] == (script if isinstance(script, str) else None)
    placed = await until_call(
        app.service, created["id"], lambda v: v.call.status is CallStatus.INITIATED, "Initiated"
    )
    status, view = await app.request("GET", f"/v1/calls/{created['id']}", headers=app.api())
    assert (view["status"], view["provider_sid"]) == ("Initiated", placed.call.provider_id)
    assert view["explanation"] == placed.explanation


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_calls_need_the_token(app: App, token: str | None) -> None:
    status, answer = await app.request("POST", "/v1/calls", json=NEW, headers=app.api(token))
    assert (status, answer["error"]["code"]) == (401, "unauthorized")
    call = await ringing(app)
    status, _ = await app.request("GET", f"/v1/calls/{call.id}", headers=app.api(token))
    assert status == 401
    assert await calls_to(app, NEW["to"]) == 0


@pytest.mark.parametrize(
    ("body", "field", "named"),
    [
        ({**NEW, "to": "5550500001"}, "to", "'to'"),
        ({**NEW, "from": "+1 555 000 0001"}, "from", "'from'"),
        ({"from": SENDER, "to": NEW["to"]}, "script", "'script'"),
        ({**NEW, "script": 42}, "script", "'script'"),
        ({**NEW, "script": []}, "script", "non-empty list of steps"),
        ({**NEW, "script": [{"say": ""}]}, "script[0].say", "script step 1 (say)"),
        ({**NEW, "script": [{"say": "hi"}, {"play": "ftp://x"}]}, "script[1].play",
         "script step 2 (play)"),
        ({**NEW, "script": [{"say": "hi", "play": "https://x.test/a.mp3"}]}, "script[0]",
         "script step 1"),
        ({**NEW, "script": [{"colour": "red"}]}, "script[0]", "script step 1"),
        ({**NEW, "script": [{"say": "hi"}, {"gather": "Press 1", "on": {"1": "nowhere"}}]},
         "script[1].on.1", "script step 2 (gather): no step has the label 'nowhere'"),
        ({**NEW, "script": [{"dial": "12"}]}, "script[0].dial", "script step 1 (dial)"),
        ({**NEW, "script": [{"say": "hi", "goto": "end", "label": "end"}]}, "script[0].label",
         "script step 1 (say): label 'end' is reserved"),
        ({**NEW, "script": "no-such-script"}, "script", "no script is named 'no-such-script' "
         "(known: reminder)"),
        ({**NEW, "priority": "urgent"}, "priority", "urgent"),
    ],
)  # fmt: skip
async def test_bad_calls_are_refused_naming_the_field_and_the_step(
    app: App, body: dict[str, Any], field: str, named: str
) -> None:
    status, answer = await app.request("POST", "/v1/calls", json=body, headers=app.api())
    assert status == 400, answer
    assert answer["error"]["field"] == field
    assert named in answer["error"]["message"]
    assert await calls_to(app, NEW["to"]) == 0


async def test_concurrent_retries_with_one_key_place_one_call(app: App) -> None:
    headers = {**app.api(), "Idempotency-Key": "appointment-42"}
    answers = await asyncio.gather(
        *(app.request("POST", "/v1/calls", json=NEW, headers=headers) for _ in range(20))
    )
    assert len({answer["id"] for _, answer in answers}) == 1
    assert sorted(status for status, _ in answers) == [200] * 19 + [201]
    assert await calls_to(app, NEW["to"]) == 1
    other = {**NEW, "script": [{"say": "A different call."}]}
    status, answer = await app.request("POST", "/v1/calls", json=other, headers=headers)
    assert (status, answer["error"]["code"]) == (409, "conflict")
    assert answers[0][1]["id"] in answer["error"]["message"]
    assert await calls_to(app, NEW["to"]) == 1


async def test_an_unknown_call_is_not_found(app: App) -> None:
    status, answer = await app.request("GET", "/v1/calls/call_nope", headers=app.api())
    assert (status, answer["error"]["code"]) == (404, "not_found")
