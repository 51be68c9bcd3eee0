"""The Twilio channel (texts here, calls in test_twilio_calls), through the official SDK,
against real HTTP peers: Prism serving Twilio's own OpenAPI spec (every request must
pass its validation), and a small local server that answers with Twilio's documented
error bodies."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dispatcher.channels import Accepted, MachineDetection, PlaceCall, SendRequest
from dispatcher.channels.twilio import TwilioChannel, receipt_of
from dispatcher.config import ProviderConfig, TwilioConfig, VoiceConfig, load_config
from dispatcher.core.model import Message, Reason, TextStatus
from dispatcher.engine.calls import call_status_url, voice_url
from dispatcher.errors import ConfigError, OutcomeUnknown, ProviderError
from dispatcher.service import Dispatcher, TextRequest
from dispatcher.testing import build_service
from tests.helpers import wait_for
from tests.peers import ACCOUNT_SID, AUTH_TOKEN, CALLS, MESSAGES, StandIn, error, hang_up

NOW = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
PUBLIC = "http://127.0.0.1:8080"  # the HTTP app's public URL, as Twilio is given it
SENDER = "+15550000001"
STALLED = "stall"  # Twilio never answers: the request times out (twilio.timeout)


def text(body: str = "Hello from dispatcher", to: str = "+15550100001") -> SendRequest:
    return SendRequest(
        message_id="msg_1", attempt_id="att_1", sender=SENDER, recipient=to,
        body=body, segments=1, validity=timedelta(hours=10),
    )  # fmt: skip


def place(
    call_id: str = "call_1",
    to: str = "+15550100001",
    *,
    amd: MachineDetection = MachineDetection.OFF,
    claimed_at: datetime | None = None,
) -> PlaceCall:
    return PlaceCall(
        call_id=call_id, attempt_id=f"att_{call_id}", sender=SENDER, recipient=to,
        voice_url=voice_url(PUBLIC, call_id), status_callback_url=call_status_url(PUBLIC, call_id),
        machine_detection=amd, claimed_at=claimed_at,
    )  # fmt: skip


async def hand_over(
    channel: TwilioChannel, resource: str, claimed_at: datetime | None = None
) -> Accepted:
    """Send a text (MESSAGES) or place a call (CALLS) through ``channel``."""
    if resource == MESSAGES:
        return await channel.send(dataclasses.replace(text(), claimed_at=claimed_at))
    return await channel.place_call(place(claimed_at=claimed_at))


async def look_up(
    channel: TwilioChannel, resource: str, claimed_at: datetime | None = None
) -> Accepted | None:
    """Ask Twilio whether it has the attempt :func:`hand_over` made."""
    if resource == MESSAGES:
        return await channel.lookup(dataclasses.replace(text(), claimed_at=claimed_at))
    return await channel.lookup_call(place(claimed_at=claimed_at))


def channel_for(base_url: str, callbacks: str | None = None, **settings: object) -> TwilioChannel:
    """The channel on ``base_url``; ``callbacks`` is the HTTP app's public URL (calls need it)."""
    config = TwilioConfig(
        api_base_url=base_url, poll_interval=timedelta(hours=1), timeout=timedelta(seconds=2)
    )
    return TwilioChannel(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        config=dataclasses.replace(config, **settings),  # type: ignore[arg-type]
        status_callbacks=callbacks,
    )


# -- Twilio's contract, served by Prism ------------------------------------------------


async def test_a_text_sent_through_the_sdk_passes_twilios_contract(prism_url: str) -> None:
    async with channel_for(prism_url) as channel:
        accepted = await channel.send(text())
    assert accepted.provider_id.startswith("SM")


async def test_a_messaging_service_sends_in_place_of_the_number(prism_url: str) -> None:
    async with channel_for(prism_url, messaging_service_sid="MG" + "a" * 32) as channel:
        accepted = await channel.send(text())
    assert accepted.provider_id.startswith("SM")


async def test_lookup_and_status_fetch_pass_twilios_contract(prism_url: str) -> None:
    async with channel_for(prism_url) as channel:
        found = await channel.lookup(text(body="a body Twilio's examples do not have"))
        assert found is None
        receipt = await channel.poll("SM" + "a" * 32)
    assert receipt is None or receipt.provider_id == "SM" + "a" * 32


async def test_prism_refuses_a_request_that_breaks_the_contract(prism_url: str) -> None:
    # A Messaging Service SID is MG and 32 hex digits: Prism refuses this one (422).
    async with channel_for(prism_url, messaging_service_sid="MG123") as channel:
        with pytest.raises(ProviderError) as refused:
            await channel.send(text())
    assert "422" in str(refused.value)
    assert not refused.value.retryable


# -- Twilio's refusals, from a server that answers as Twilio does -------------------


@pytest.mark.parametrize(
    ("status", "code", "reason", "retryable"),
    [
        (400, 21610, Reason.OPTED_OUT, False),
        (400, 21211, Reason.NOT_IN_SERVICE, False),
        (400, 21614, Reason.NOT_IN_SERVICE, False),
        (400, 21611, None, True),
        (429, 20429, None, True),
        (503, 20500, None, True),
        (400, 21606, Reason.PROVIDER_REJECTED, False),
    ],
)
@pytest.mark.parametrize("resource", [MESSAGES, CALLS])
async def test_twilio_error_codes_map_to_reasons(
    twilio: StandIn,
    *,
    resource: str,
    status: int,
    code: int,
    reason: Reason | None,
    retryable: bool,
) -> None:
    twilio.answers[resource].append(error(status, code))
    async with channel_for(twilio.url, PUBLIC) as channel:
        with pytest.raises(ProviderError, match="Twilio refused the") as refused:
            await hand_over(channel, resource)
    assert refused.value.provider_code == str(code)
    assert refused.value.retryable is retryable
    assert refused.value.permanent_reason == (None if retryable else reason)
    assert twilio.listed[resource] == []


@pytest.mark.parametrize("answer", ["hang_up", STALLED])
@pytest.mark.parametrize("resource", [MESSAGES, CALLS])
async def test_a_broken_connection_is_an_unknown_outcome_settled_by_lookup(
    twilio: StandIn, resource: str, answer: str
) -> None:
    twilio.answers[resource].append(hang_up if answer == "hang_up" else twilio.stall)
    # The request's time limit: long enough for the lookup's fresh connection on a busy
    # machine (300 ms once ran out there), shorter than the stand-in's stall.
    async with channel_for(twilio.url, PUBLIC, timeout=timedelta(seconds=2)) as channel:
        claimed = datetime.now(UTC)
        with pytest.raises(OutcomeUnknown):
            await hand_over(channel, resource, claimed)
        found = await look_up(channel, resource, claimed)
    assert found is not None
    assert found.provider_id == twilio.sid(resource, 1)


@pytest.mark.parametrize("resource", [MESSAGES, CALLS])
async def test_a_lookup_twilio_cannot_answer_is_an_unknown_outcome(
    twilio: StandIn, resource: str
) -> None:
    twilio.list_answers.append(error(503, 20500, "Service unavailable"))
    async with channel_for(twilio.url, PUBLIC) as channel:
        with pytest.raises(OutcomeUnknown):
            await look_up(channel, resource)


@pytest.mark.parametrize(
    ("status", "code", "expected", "reason"),
    [
        ("delivered", None, TextStatus.DELIVERED, None),
        ("undelivered", 30003, TextStatus.UNREACHABLE, Reason.HANDSET_UNREACHABLE),
        ("undelivered", 30005, TextStatus.UNDELIVERED, Reason.CARRIER_UNDELIVERED),
        ("undelivered", 30007, TextStatus.UNDELIVERED, Reason.CARRIER_UNDELIVERED),
        ("failed", 30008, TextStatus.FAILED, Reason.PROVIDER_REJECTED),
    ],
)
def test_final_statuses_map_to_receipts(
    status: str, code: int | None, expected: TextStatus, reason: Reason | None
) -> None:
    receipt = receipt_of("SM1", status, code, NOW)
    assert receipt is not None
    assert (receipt.status, receipt.reason) == (expected, reason)
    assert receipt.provider_code == (str(code) if code else None)


@pytest.mark.parametrize("status", ["queued", "accepted", "sending", "sent", "scheduled"])
def test_a_text_on_its_way_has_no_receipt_yet(status: str) -> None:
    assert receipt_of("SM1", status, None, NOW) is None


def test_credentials_must_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWILIO_ACCOUNT_SID", raising=False)
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="TWILIO_ACCOUNT_SID"):
        TwilioChannel.from_url("twilio://")


# -- the service on Twilio -----------------------------------------------------------


async def submit(service: Dispatcher, to: str, body: str) -> Message:
    request = TextRequest(sender="+15550000001", recipient=to, body=body)
    return (await service.submit(request)).message


async def running(
    url: str,
    home: Path,
    *,
    callbacks: str | None = None,
    request_timeout: timedelta | None = None,
    **provider: object,
) -> Dispatcher:
    """The service on Twilio at ``url``, its requests bounded by ``request_timeout`` (else
    the default); calls are paced fast (50 a second)."""
    config = load_config(home=home, env={})
    config = dataclasses.replace(
        config,
        provider=dataclasses.replace(ProviderConfig(url="twilio://"), **provider),  # type: ignore[arg-type]
        voice=VoiceConfig(calls_per_second=50),
    )
    channel = channel_for(url, callbacks, timeout=request_timeout or TwilioConfig().timeout)
    return build_service(config, channel=channel)


async def test_a_stop_reply_lands_on_the_do_not_text_list(twilio: StandIn, home: Path) -> None:
    twilio.answers[MESSAGES].append(error(400, 21610, "Attempt to send to unsubscribed recipient"))
    async with await running(twilio.url, home) as service:
        first = await submit(service, "+15550100001", "hi")

        async def ended() -> bool:
            return (await service.message(first.id)).message.terminal

        await wait_for(ended, what="the refused text to end")
        view = await service.message(first.id)
        assert (view.message.status, view.message.reason) == (TextStatus.FAILED, "opted_out")
        assert view.message.provider_code == "21610"
        entry = await service.dnt_check("+15550100001")
        assert entry is not None
        assert entry.added_by == "carrier"
        assert "21610" in (entry.reason or "")
        later = await service.submit(
            TextRequest(sender="+15550000002", recipient="+15550100001", body="again",
                        validity=timedelta(hours=1))
        )  # fmt: skip
        assert (later.message.status, later.message.reason) == (TextStatus.FAILED, "do_not_text")


async def test_retries_are_bounded_with_backoff(twilio: StandIn, home: Path) -> None:
    twilio.answers[MESSAGES].extend(error(429, 20429, "Too many requests") for _ in range(3))
    async with await running(twilio.url, home, max_retries=2,
                             retry_backoff=timedelta(milliseconds=20)) as service:  # fmt: skip
        message = await submit(service, "+15550100002", "hi")

        async def ended() -> bool:
            return (await service.message(message.id)).message.terminal

        await wait_for(ended, what="the retried text to end")
        view = await service.message(message.id)
    assert view.message.status is TextStatus.FAILED
    retries = [e for e in view.history if e.reason == Reason.RETRY]
    assert len(retries) == 2
    assert "gave up after 3 tries" in (view.history[-1].detail or "")
    assert twilio.answers[MESSAGES] == []


async def test_an_unknown_outcome_is_reconciled_never_posted_twice(
    twilio: StandIn, home: Path
) -> None:
    twilio.answers[MESSAGES].append(hang_up)
    async with await running(twilio.url, home) as service:
        message = await submit(service, "+15550100003", "once")

        async def sent() -> bool:
            return (await service.message(message.id)).message.status is TextStatus.SENT

        await wait_for(sent, what="the text to be found at Twilio")
        view = await service.message(message.id)
    assert view.message.provider_id == twilio.sid(MESSAGES, 1)
    assert any(e.source.value == "reconcile" for e in view.history)
    assert twilio.posted[MESSAGES] == 1  # looked up, never posted again


async def test_the_service_configured_for_twilio_sends_through_the_sdk(
    prism_url: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    env = {"DISPATCHER_PROVIDER": "twilio", "DISPATCHER_TWILIO_API_BASE_URL": prism_url}
    config = load_config(home=home, env=env)
    async with Dispatcher.from_config(config) as service:
        message = await submit(service, "+15550100004", "through Twilio")

        async def sent() -> bool:
            return (await service.message(message.id)).message.status is TextStatus.SENT

        await wait_for(sent, what="Twilio (Prism) to take the text")
        view = await service.message(message.id)
    assert view.message.provider_id is not None
    assert view.message.provider_id.startswith("SM")
    assert [e.status for e in view.history if e.applied][-1] is TextStatus.SENT


async def test_an_older_text_with_the_same_body_is_not_taken_for_this_attempt(
    twilio: StandIn,
) -> None:
    async with channel_for(twilio.url) as channel:
        await channel.send(text(body="Your code is 1234"))  # an earlier text, same body
        later = dataclasses.replace(
            text(body="Your code is 1234"), claimed_at=datetime.now(UTC) + timedelta(minutes=1)
        )
        assert await channel.lookup(later) is None
        same_time = dataclasses.replace(later, claimed_at=datetime.now(UTC))
        found = await channel.lookup(same_time)
    assert found is not None
