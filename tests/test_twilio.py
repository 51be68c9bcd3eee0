"""The Twilio text channel, through the official SDK, against real HTTP peers:
Prism serving Twilio's own OpenAPI spec (every request must pass its validation), and
a small local server that answers with Twilio's documented error bodies."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from aiohttp import web

from dispatcher.channels import SendRequest
from dispatcher.channels.twilio import TwilioChannel, receipt_of
from dispatcher.config import ProviderConfig, TwilioConfig, load_config
from dispatcher.errors import ConfigError, OutcomeUnknown, ProviderError
from dispatcher.model import Message, Reason, TextStatus
from dispatcher.service import Dispatcher, TextRequest
from dispatcher.store.memory import MemoryStore
from tests.helpers import free_port, wait_for
from tests.peers import ACCOUNT_SID, AUTH_TOKEN, twilio_error

NOW = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


def text(body: str = "Hello from dispatcher", to: str = "+15550100001") -> SendRequest:
    return SendRequest(
        message_id="msg_1", attempt_id="att_1", sender="+15550000001", recipient=to,
        body=body, segments=1, validity=timedelta(hours=10),
    )  # fmt: skip


def channel_for(base_url: str, **settings: object) -> TwilioChannel:
    config = TwilioConfig(api_base_url=base_url, poll_interval=timedelta(hours=1))
    return TwilioChannel(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        config=dataclasses.replace(config, **settings),  # type: ignore[arg-type]
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


Answer = Callable[[web.Request], web.StreamResponse]


POSTED: dict[int, int] = {}


def posts(refusing: tuple[str, list[Answer]]) -> int:
    """How many texts were posted to the stand-in."""
    return POSTED[id(refusing[1])]


@pytest.fixture
async def refusing() -> AsyncIterator[tuple[str, list[Answer]]]:
    """A local Twilio stand-in: each POST to Messages.json takes the next answer."""
    answers: list[Answer] = []
    listed: list[dict[str, object]] = []
    POSTED[id(answers)] = 0

    async def post(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        POSTED[id(answers)] += 1
        created = format_datetime(datetime.now(UTC), usegmt=True)
        listed.append({"sid": "SM" + "b" * 32, "body": form.get("Body"), "status": "queued",
                       "date_created": created})  # fmt: skip
        return answers.pop(0)(request) if answers else web.json_response(listed[-1], status=201)

    async def get(_: web.Request) -> web.StreamResponse:
        return web.json_response({"messages": listed, "next_page_uri": None, "page": 0})

    app = web.Application()
    app.router.add_post(MESSAGES, post)
    app.router.add_get(MESSAGES, get)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", answers
    finally:
        await runner.cleanup()


def error(status: int, code: int, message: str = "refused") -> Answer:
    def answer(_: web.Request) -> web.StreamResponse:
        return web.Response(
            status=status, body=twilio_error(status, code, message),
            content_type="application/json",
        )  # fmt: skip

    return answer


def hang_up(request: web.Request) -> web.StreamResponse:
    """The request arrived, then the connection broke: the outcome is unknown."""
    assert request.transport is not None
    request.transport.close()
    return web.Response(status=201)


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
async def test_twilio_error_codes_map_to_reasons(
    refusing: tuple[str, list[Answer]],
    status: int,
    code: int,
    reason: Reason | None,
    retryable: bool,
) -> None:
    url, answers = refusing
    answers.append(error(status, code))
    async with channel_for(url) as channel:
        with pytest.raises(ProviderError) as refused:
            await channel.send(text())
    assert refused.value.provider_code == str(code)
    assert refused.value.retryable is retryable
    assert refused.value.permanent_reason == (None if retryable else reason)


async def test_a_broken_connection_is_an_unknown_outcome_settled_by_lookup(
    refusing: tuple[str, list[Answer]],
) -> None:
    url, answers = refusing
    answers.append(hang_up)
    async with channel_for(url) as channel:
        with pytest.raises(OutcomeUnknown):
            await channel.send(text(body="did it arrive?"))
        found = await channel.lookup(text(body="did it arrive?"))
    assert found is not None
    assert found.provider_id == "SM" + "b" * 32


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


async def running(url: str, home: Path, **provider: object) -> Dispatcher:
    config = load_config(home=home, env={})
    config = dataclasses.replace(
        config,
        provider=dataclasses.replace(ProviderConfig(url="twilio://"), **provider),  # type: ignore[arg-type]
    )
    return Dispatcher(config, store=MemoryStore(), channel=channel_for(url))


async def test_a_stop_reply_lands_on_the_do_not_text_list(
    refusing: tuple[str, list[Answer]], home: Path
) -> None:
    url, answers = refusing
    answers.append(error(400, 21610, "Attempt to send to unsubscribed recipient"))
    async with await running(url, home) as service:
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


async def test_retries_are_bounded_with_backoff(
    refusing: tuple[str, list[Answer]], home: Path
) -> None:
    url, answers = refusing
    answers.extend(error(429, 20429, "Too many requests") for _ in range(3))
    async with await running(url, home, max_retries=2,
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
    assert answers == []


async def test_an_unknown_outcome_is_reconciled_never_posted_twice(
    refusing: tuple[str, list[Answer]], home: Path
) -> None:
    url, answers = refusing
    answers.append(hang_up)
    async with await running(url, home) as service:
        message = await submit(service, "+15550100003", "once")

        async def sent() -> bool:
            return (await service.message(message.id)).message.status is TextStatus.SENT

        await wait_for(sent, what="the text to be found at Twilio")
        view = await service.message(message.id)
    assert view.message.provider_id == "SM" + "b" * 32
    assert any(e.source.value == "reconcile" for e in view.history)
    assert posts(refusing) == 1  # looked up, never posted again


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
    refusing: tuple[str, list[Answer]],
) -> None:
    url, _ = refusing
    async with channel_for(url) as channel:
        await channel.send(text(body="Your code is 1234"))  # an earlier text, same body
        later = dataclasses.replace(
            text(body="Your code is 1234"), claimed_at=datetime.now(UTC) + timedelta(minutes=1)
        )
        assert await channel.lookup(later) is None
        same_time = dataclasses.replace(later, claimed_at=datetime.now(UTC))
        found = await channel.lookup(same_time)
    assert found is not None
