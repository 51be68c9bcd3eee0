"""The Twilio voice channel through the official SDK, against real HTTP peers: Prism
serving Twilio's own OpenAPI spec (every request must pass its validation: a 422 means
our request broke Twilio's contract) and the local stand-in that answers with Twilio's
documented error bodies; and the service placing scripted calls through it."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dispatcher.channels import DialOutcome, MachineDetection, VoiceTurn
from dispatcher.channels.twilio import CALL_EVENTS, call_report_of
from dispatcher.channels.twilio_voice import MACHINE_DETECTION, voice_turn_of
from dispatcher.core.calls import CallReason, CallStatus
from dispatcher.core.model import Reason, Source
from dispatcher.engine.calls import CallView, voice_url
from dispatcher.errors import OutcomeUnknown, ProviderError
from dispatcher.service import CallRequest, Dispatcher
from tests.peers import (
    ACCOUNT_SID,
    CALLS,
    FORM,
    SPEC,
    StandIn,
    error,
    explode_form_arrays,
    hang_up,
    prism_spec,
    until_call,
)
from tests.test_twilio import NOW, PUBLIC, SENDER, STALLED, channel_for, place, running

CALLS_PATH = "/2010-04-01/Accounts/{AccountSid}/Calls.json"
SAY = [{"say": "Your appointment is tomorrow at nine."}]
VOICEMAIL = [{"voicemail_drop": "Please call us back."}, *SAY]


# -- the copy of the spec Prism serves -------------------------------------------------


def test_prism_serves_a_copy_whose_form_arrays_are_exploded() -> None:
    original = SPEC.read_bytes()
    with prism_spec() as copy:
        assert copy != SPEC
        patched = json.loads(copy.read_text(encoding="utf-8"))
    media = patched["paths"][CALLS_PATH]["post"]["requestBody"]["content"][FORM]
    assert media["encoding"]["StatusCallbackEvent"] == {"style": "form", "explode": True}
    assert set(media["encoding"]) == {
        name for name, prop in media["schema"]["properties"].items() if prop.get("type") == "array"
    }
    assert SPEC.read_bytes() == original  # the vendored spec is untouched
    spec = json.loads(original)
    assert "encoding" not in spec["paths"][CALLS_PATH]["post"]["requestBody"]["content"][FORM]
    assert f"{CALLS_PATH} POST StatusCallbackEvent" in explode_form_arrays(spec)


def _basic() -> dict[str, str]:
    token = base64.b64encode(f"{ACCOUNT_SID}:secret".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        # Every event in a key of its own, as Twilio takes them: valid.
        ([("To", "+15550100001"), ("From", SENDER), ("Url", f"{PUBLIC}/v"),
          *(("StatusCallbackEvent", e) for e in CALL_EVENTS)], 201),
        # Prism still validates the rest: From is required.
        ([("To", "+15550100001"), ("Url", f"{PUBLIC}/v"), ("StatusCallbackEvent", "ringing")],
         422),
    ],
)  # fmt: skip
async def test_prism_takes_repeated_form_keys_as_an_array(
    prism_url: str, form: list[tuple[str, str]], expected: int
) -> None:
    url = prism_url + CALLS_PATH.format(AccountSid=ACCOUNT_SID)
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=form, headers=_basic()) as response,
    ):
        body = await response.json()
    assert response.status == expected, body
    if expected == 201:
        assert body["sid"].startswith("CA")


# -- Twilio's contract, served by Prism ------------------------------------------------


@pytest.mark.parametrize("amd", list(MachineDetection))
async def test_a_call_placed_through_the_sdk_passes_twilios_contract(
    prism_url: str, amd: MachineDetection
) -> None:
    async with channel_for(prism_url, PUBLIC) as channel:
        accepted = await channel.place_call(place(amd=amd))
    assert accepted.provider_id.startswith("CA")


async def test_the_call_request_asks_for_every_status_and_the_script(twilio: StandIn) -> None:
    async with channel_for(twilio.url, PUBLIC) as channel:
        await channel.place_call(place(amd=MachineDetection.MESSAGE_END))
        await channel.place_call(place("call_2"))
    with_amd, without = ({k: [v for k2, v in form if k2 == k] for k, _ in form}
                         for form in twilio.forms[CALLS])  # fmt: skip
    assert with_amd["StatusCallbackEvent"] == CALL_EVENTS
    assert with_amd["MachineDetection"] == ["DetectMessageEnd"]
    assert with_amd["Url"] == [f"{PUBLIC}/twilio/voice/call_1?at=start"]
    assert with_amd["StatusCallback"] == [f"{PUBLIC}/twilio/call-status/call_1"]
    assert (with_amd["Method"], with_amd["StatusCallbackMethod"]) == (["POST"], ["POST"])
    assert (with_amd["To"], with_amd["From"], with_amd["Timeout"]) == (
        ["+15550100001"], [SENDER], ["30"]
    )  # fmt: skip
    assert "MachineDetection" not in without


async def test_lookup_and_poll_of_calls_pass_twilios_contract(prism_url: str) -> None:
    async with channel_for(prism_url, PUBLIC) as channel:
        # Twilio's example calls are from 2009: none is this attempt's.
        assert await channel.lookup_call(place(claimed_at=datetime.now(UTC))) is None
        found = await channel.lookup_call(place())
        report = await channel.poll_call("CA" + "a" * 32)
    assert found is not None
    assert found.provider_id.startswith("CA")
    assert report is not None  # the example call has ended: completed, machine answered
    assert (report.status, report.answered_by) == (CallStatus.COMPLETED, "machine")


async def test_a_call_needs_the_public_url_of_the_http_app(twilio: StandIn) -> None:
    async with channel_for(twilio.url) as channel:
        with pytest.raises(ProviderError, match=r"http\.public_url") as refused:
            await channel.place_call(place())
    assert refused.value.permanent_reason == "no_public_url"
    assert not refused.value.retryable
    assert "DISPATCHER_PUBLIC_URL" in str(refused.value)
    assert twilio.posted[CALLS] == 0


@pytest.mark.parametrize(
    ("status", "answered_by", "expected", "by"),
    [
        ("queued", None, CallStatus.INITIATED, None),
        ("initiated", None, CallStatus.INITIATED, None),
        ("ringing", None, CallStatus.RINGING, None),
        ("in-progress", "human", CallStatus.ANSWERED, "human"),
        ("in-progress", "machine_end_beep", CallStatus.ANSWERED, "machine"),
        ("in-progress", "fax", CallStatus.ANSWERED, "machine"),
        ("in-progress", "unknown", CallStatus.ANSWERED, None),
        ("completed", None, CallStatus.COMPLETED, None),
        ("busy", None, CallStatus.BUSY, None),
        ("no-answer", None, CallStatus.NO_ANSWER, None),
        ("failed", None, CallStatus.FAILED, None),
        ("canceled", None, CallStatus.CANCELED, None),
    ],
)
def test_twilio_call_statuses_map_to_reports(
    status: str, answered_by: str | None, expected: CallStatus, by: str | None
) -> None:
    report = call_report_of("CA1", status, NOW, answered_by=answered_by, error_code=None)
    assert report is not None
    assert (report.status, report.answered_by) == (expected, by)
    assert report.reason == (CallReason.CARRIER_FAILED if expected is CallStatus.FAILED else None)


@pytest.mark.parametrize(
    ("status", "answered_by", "duration", "answered"),
    [
        ("completed", None, "21", True),  # it lasted: it was answered
        ("completed", "human", None, True),
        ("completed", "machine_start", "0", True),  # Twilio named who answered
        ("completed", None, "0", False),  # it ended without lasting a second
        ("completed", None, None, None),  # Twilio does not say: the history decides
        ("completed", None, "", None),
        ("in-progress", None, None, True),
        ("busy", None, None, False),
        ("no-answer", None, None, False),
        ("failed", None, None, False),
        ("canceled", None, None, False),
        ("ringing", None, None, None),
    ],
)
def test_twilio_says_whether_a_call_was_answered(
    status: str, answered_by: str | None, duration: str | None, answered: bool | None
) -> None:
    report = call_report_of("CA1", status, NOW, answered_by=answered_by, duration=duration)
    assert report is not None
    assert report.answered is answered


def test_an_unknown_call_status_has_no_report() -> None:
    assert call_report_of("CA1", "exploded", NOW) is None


@pytest.mark.parametrize(
    ("form", "turn"),
    [
        ({}, VoiceTurn()),
        ({"CallSid": "CA1", "AnsweredBy": "machine_end_beep", "CallStatus": "in-progress"},
         VoiceTurn(provider_id="CA1", answered_by="machine")),
        ({"AnsweredBy": "fax"}, VoiceTurn(answered_by="machine")),
        ({"AnsweredBy": "human"}, VoiceTurn(answered_by="human")),
        ({"AnsweredBy": "unknown"}, VoiceTurn()),
        ({"Digits": "1", "SpeechResult": ""}, VoiceTurn(digits="1")),
        ({"SpeechResult": "yes please"}, VoiceTurn(speech="yes please")),
        ({"RecordingUrl": "https://r.example/1", "RecordingDuration": "4"},
         VoiceTurn(recording_url="https://r.example/1", recording_seconds=4)),
        ({"RecordingUrl": "", "RecordingDuration": "x"}, VoiceTurn()),
        ({"DialCallStatus": "no-answer"}, VoiceTurn(dialed=DialOutcome.NO_ANSWER)),
        ({"DialCallStatus": "exploded"}, VoiceTurn()),
    ],
)  # fmt: skip
def test_twilios_voice_request_is_read_into_a_provider_neutral_turn(
    form: dict[str, str], turn: VoiceTurn
) -> None:
    assert voice_turn_of(form) == turn


def test_every_machine_detection_has_its_twilio_value() -> None:
    assert MACHINE_DETECTION == {
        MachineDetection.OFF: None,
        MachineDetection.ANSWER: "Enable",
        MachineDetection.MESSAGE_END: "DetectMessageEnd",
    }


# -- reconciling with Twilio, through the stand-in (refusals: in test_twilio) ------------------


async def test_an_earlier_call_to_the_same_contact_is_not_taken_for_this_attempt(
    twilio: StandIn,
) -> None:
    async with channel_for(twilio.url, PUBLIC) as channel:
        await channel.place_call(place("call_earlier"))  # another call, placed earlier
        twilio.age(CALLS, 1, timedelta(seconds=3))
        twilio.answers[CALLS].append(hang_up)
        claimed = datetime.now(UTC)
        with pytest.raises(OutcomeUnknown):
            await channel.place_call(place("call_2", claimed_at=claimed))
        found = await channel.lookup_call(place("call_2", claimed_at=claimed))
    assert found is not None
    assert found.provider_id == twilio.sid(CALLS, 2)


# -- the service on Twilio -------------------------------------------------------------


async def placed(service: Dispatcher, script: list[dict[str, Any]], to: str) -> CallView:
    """Submit a scripted call and wait for it to leave Queued and Placing for good."""
    request = CallRequest(sender=SENDER, recipient=to, script=script)
    call = (await service.submit_call(request)).call

    def settled(view: CallView) -> bool:
        return view.call.status not in (CallStatus.QUEUED, CallStatus.PLACING)

    return await until_call(service, call.id, settled, "the call to be placed or to fail")


@pytest.mark.parametrize("script", [SAY, VOICEMAIL])
async def test_the_service_places_a_scripted_call_through_twilio(
    prism_url: str, home: Path, script: list[dict[str, Any]]
) -> None:
    async with await running(prism_url, home, callbacks=PUBLIC) as service:
        view = await placed(service, script, "+15550100011")
    assert view.call.status is CallStatus.INITIATED
    assert view.call.provider_id is not None
    assert view.call.provider_id.startswith("CA")
    assert [e.status for e in view.history] == [
        CallStatus.QUEUED, CallStatus.PLACING, CallStatus.INITIATED
    ]  # fmt: skip


@pytest.mark.parametrize(("script", "amd"), [(SAY, []), (VOICEMAIL, ["DetectMessageEnd"])])
async def test_the_service_asks_for_machine_detection_when_a_script_leaves_a_voicemail(
    twilio: StandIn, home: Path, script: list[dict[str, Any]], amd: list[str]
) -> None:
    async with await running(twilio.url, home, callbacks=PUBLIC) as service:
        view = await placed(service, script, "+15550100016")
    (form,) = twilio.forms[CALLS]
    assert [v for k, v in form if k == "MachineDetection"] == amd
    assert ("Url", voice_url(service.config.http.base_url, view.call.id)) in form


async def test_a_call_twilio_refuses_for_its_number_fails(twilio: StandIn, home: Path) -> None:
    twilio.answers[CALLS].append(error(400, 21211, "The 'To' number is not a valid phone number"))
    async with await running(twilio.url, home, callbacks=PUBLIC) as service:
        view = await placed(service, SAY, "+15550100012")
    assert (view.call.status, view.call.reason) == (CallStatus.FAILED, Reason.NOT_IN_SERVICE)
    assert view.call.provider_code == "21211"
    assert "not a valid phone number" in (view.history[-1].detail or "")
    assert twilio.posted[CALLS] == 1


async def test_a_service_without_a_public_url_fails_calls_clearly(
    twilio: StandIn, home: Path
) -> None:
    async with await running(twilio.url, home) as service:
        view = await placed(service, SAY, "+15550100013")
    assert (view.call.status, view.call.reason) == (CallStatus.FAILED, "no_public_url")
    assert "public_url" in (view.history[-1].detail or "")
    assert twilio.posted[CALLS] == 0


@pytest.mark.parametrize(("status", "code"), [(429, 20429), (503, 20500)])
async def test_a_call_twilio_asks_to_retry_is_queued_again_then_placed(
    twilio: StandIn, home: Path, status: int, code: int
) -> None:
    twilio.answers[CALLS].append(error(status, code, "try again later"))
    async with await running(
        twilio.url, home, callbacks=PUBLIC, retry_backoff=timedelta(milliseconds=20)
    ) as service:
        view = await placed(service, SAY, "+15550100014")
    assert view.call.status is CallStatus.INITIATED
    assert view.call.provider_id == twilio.sid(CALLS, 2)
    retried = [e for e in view.history if e.reason == CallReason.RETRY]
    assert [(e.status, e.provider_code) for e in retried] == [(CallStatus.QUEUED, str(code))]
    assert [e.status for e in view.history if e.applied] == [
        CallStatus.QUEUED, CallStatus.PLACING, CallStatus.QUEUED, CallStatus.PLACING,
        CallStatus.INITIATED,
    ]  # fmt: skip
    assert twilio.posted[CALLS] == 2


@pytest.mark.parametrize("answer", ["hang_up", STALLED])
async def test_a_call_whose_outcome_is_unknown_is_reconciled_never_posted_twice(
    twilio: StandIn, home: Path, answer: str
) -> None:
    twilio.answers[CALLS].append(hang_up if answer == "hang_up" else twilio.stall)
    async with await running(
        twilio.url, home, callbacks=PUBLIC, request_timeout=timedelta(milliseconds=300)
    ) as service:
        view = await placed(service, SAY, "+15550100015")
    assert view.call.status is CallStatus.INITIATED
    assert view.call.provider_id == twilio.sid(CALLS, 1)
    assert view.history[-1].source is Source.RECONCILE
    assert twilio.posted[CALLS] == 1  # looked up, never dialled again
