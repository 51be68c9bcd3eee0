"""The HTTP app over real HTTP: Twilio's status callbacks, signed exactly as Twilio signs
them (the SDK's RequestValidator), and the automation API with its bearer token and
idempotency keys."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

from dispatcher.channels.simulator import Simulator
from dispatcher.config import Config, SimulatorConfig
from dispatcher.model import TextStatus
from dispatcher.service import Dispatcher, TextRequest
from dispatcher.store.memory import MemoryStore
from dispatcher.webapp import HttpServer, WebApp
from tests.helpers import free_port, wait_for

AUTH_TOKEN = "twilio-auth-token"  # noqa: S105 - a test secret for a local server
API_TOKEN = "automation-token"  # noqa: S105 - a test secret for a local server


@dataclass
class App:
    url: str
    service: Dispatcher
    http: aiohttp.ClientSession

    def api(self, token: str | None = API_TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def post_status(
        self, message_id: str, params: dict[str, str], *, signature: str | None = None
    ) -> int:
        url = f"{self.url}/twilio/status/{message_id}"
        signed = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
        headers = {"X-Twilio-Signature": signed if signature is None else signature}
        async with self.http.post(url, data=params, headers=headers) as response:
            return response.status

    async def status_of(self, message_id: str) -> TextStatus:
        return (await self.service.message(message_id)).message.status


@pytest.fixture
async def app(home: Path) -> AsyncIterator[App]:
    # The simulator's own receipts come an hour late: the callbacks drive the status.
    simulator = SimulatorConfig(latency=timedelta(0), latency_jitter=timedelta(0),
                                receipt_delay=timedelta(hours=1), reorder_rate=0.0)  # fmt: skip
    service = Dispatcher(
        Config(home=home),
        store=MemoryStore(),
        channel=Simulator(config=simulator, log_path=home / "sim.jsonl"),
    )
    url = f"http://127.0.0.1:{free_port()}"
    webapp = WebApp(service, public_url=url, twilio_auth_token=AUTH_TOKEN, api_token=API_TOKEN)
    async with (
        service,
        HttpServer(webapp, url.removeprefix("http://")),
        aiohttp.ClientSession() as http,
    ):
        yield App(url=url, service=service, http=http)


async def sent_text(app: App, to: str = "+15550100001") -> tuple[str, str]:
    """A text the provider took: (message id, provider id)."""
    request = TextRequest(sender="+15550000001", recipient=to, body="hello")
    message = (await app.service.submit(request)).message

    async def taken() -> bool:
        return await app.status_of(message.id) is TextStatus.SENT

    await wait_for(taken, what="the text to be sent")
    provider_id = (await app.service.message(message.id)).message.provider_id
    assert provider_id is not None
    return message.id, provider_id


# -- status callbacks ----------------------------------------------------------------


async def test_signed_callbacks_move_a_text_and_late_ones_never_move_it_back(app: App) -> None:
    message_id, sid = await sent_text(app)
    delivered = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": "AC1"}
    assert await app.post_status(message_id, delivered) == 204

    async def done() -> bool:
        return await app.status_of(message_id) is TextStatus.DELIVERED

    await wait_for(done, what="Delivered")
    # Twice, and a late "sent": kept in the history, the status stays Delivered.
    assert await app.post_status(message_id, delivered) == 204
    assert await app.post_status(message_id, {"MessageSid": sid, "MessageStatus": "sent"}) == 204

    async def all_recorded() -> bool:
        return len((await app.service.message(message_id)).history) >= 7

    await wait_for(all_recorded, what="every callback in the history")
    view = await app.service.message(message_id)
    assert view.message.status is TextStatus.DELIVERED
    late = [e for e in view.history if e.source.value == "receipt" and not e.applied]
    assert [e.status for e in late] == [TextStatus.DELIVERED, TextStatus.SENT]


async def test_an_unreachable_handset_is_reported_with_its_code(app: App) -> None:
    message_id, sid = await sent_text(app, to="+15550100002")
    params = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    assert await app.post_status(message_id, params) == 204

    async def done() -> bool:
        return await app.status_of(message_id) is TextStatus.UNREACHABLE

    await wait_for(done, what="Unreachable")
    assert (await app.service.message(message_id)).message.provider_code == "30003"


@pytest.mark.parametrize("signature", ["", "forged-signature"])
async def test_unsigned_or_forged_callbacks_are_refused(app: App, signature: str) -> None:
    message_id, sid = await sent_text(app, to="+15550100003")
    params = {"MessageSid": sid, "MessageStatus": "delivered"}
    assert await app.post_status(message_id, params, signature=signature) == 403
    assert await app.status_of(message_id) is TextStatus.SENT


async def test_callbacks_for_unknown_or_mismatched_texts_change_nothing(app: App) -> None:
    message_id, sid = await sent_text(app, to="+15550100004")
    params = {"MessageSid": sid, "MessageStatus": "delivered"}
    assert await app.post_status("msg_unknown", params) == 404
    other = {"MessageSid": "SM" + "f" * 32, "MessageStatus": "delivered"}
    assert await app.post_status(message_id, other) == 409
    assert await app.post_status(message_id, {"MessageSid": sid}) == 400
    assert await app.status_of(message_id) is TextStatus.SENT


# -- automation API ----------------------------------------------------------------------


async def call(
    app: App, method: str, path: str, *, json: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with app.http.request(method, app.url + path, json=json, headers=headers) as response:
        return response.status, await response.json(content_type=None)


NEW = {"from": "+15550000001", "to": "+15550200001", "body": "your code is 1234"}


async def test_submit_and_read_a_text(app: App) -> None:
    status, created = await call(app, "POST", "/v1/messages", json=NEW, headers=app.api())
    assert status == 201
    assert created["status"] == "Queued"
    status, view = await call(app, "GET", f"/v1/messages/{created['id']}", headers=app.api())
    assert status == 200
    assert {"id", "status", "reason", "provider_sid", "status_callback_url", "history",
            "explanation"} <= set(view)  # fmt: skip
    assert view["status_callback_url"] == f"{app.url}/twilio/status/{created['id']}"
    assert view["history"][0]["status"] == "Pending"
    message = (await app.service.message(created["id"])).message
    assert message.lane.name == "AUTOMATION"


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_missing_or_wrong_tokens_are_refused(app: App, token: str | None) -> None:
    status, answer = await call(app, "POST", "/v1/messages", json=NEW, headers=app.api(token))
    assert status == 401
    assert answer["error"]["code"] == "unauthorized"
    status, _ = await call(app, "GET", "/v1/messages/msg_x", headers=app.api(token))
    assert status == 401
    assert (await app.service.status()).counts == {}


async def test_concurrent_retries_with_one_key_make_one_text(app: App) -> None:
    headers = {**app.api(), "Idempotency-Key": "order-42"}
    answers = await asyncio.gather(
        *(call(app, "POST", "/v1/messages", json=NEW, headers=headers) for _ in range(10))
    )
    ids = {answer["id"] for _, answer in answers}
    assert len(ids) == 1
    assert sorted(status for status, _ in answers) == [200] * 9 + [201]
    assert sum((await app.service.status()).counts.values()) == 1
    other = {**NEW, "body": "a different text"}
    status, answer = await call(app, "POST", "/v1/messages", json=other, headers=headers)
    assert status == 409
    assert answer["error"]["code"] == "conflict"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**NEW, "to": "5550200001"}, "to"),
        ({**NEW, "to": "+15550200001*"}, "to"),
        ({**NEW, "from": "+1 555 000 0001"}, "from"),
        ({**NEW, "body": ""}, "body"),
        ({"from": "+15550000001", "body": "x"}, "to"),
        ({**NEW, "priority": "urgent"}, "priority"),
        ({**NEW, "colour": "red"}, "colour"),
    ],
)
async def test_bad_submissions_name_the_field_and_change_nothing(
    app: App, body: dict[str, str], field: str
) -> None:
    status, answer = await call(app, "POST", "/v1/messages", json=body, headers=app.api())
    assert status == 400
    assert answer["error"]["field"] == field
    assert (await app.service.status()).counts == {}


@pytest.mark.parametrize("raw", [b"{not json", b"\xcf", b""])
async def test_malformed_json_and_unknown_ids(app: App, raw: bytes) -> None:
    async with app.http.post(app.url + "/v1/messages", data=raw, headers=app.api()) as response:
        assert response.status == 400
    status, answer = await call(app, "GET", "/v1/messages/msg_nope", headers=app.api())
    assert status == 404
    assert answer["error"]["code"] == "not_found"


async def test_the_api_describes_itself(app: App) -> None:
    status, spec = await call(app, "GET", "/v1/openapi.json")
    assert status == 200
    assert set(spec["paths"]) == {"/v1/messages", "/v1/messages/{message_id}"}


# -- inbound texts ---------------------------------------------------------------------

CONTACT = "+15550300001"
OUR_NUMBER = "+15550000001"


async def inbound(
    app: App, body: str, sid: str, *, signature: str | None = None
) -> tuple[int, str]:
    url = f"{app.url}/twilio/inbound"
    params = {"From": CONTACT, "To": OUR_NUMBER, "Body": body, "MessageSid": sid,
              "AccountSid": "AC" + "0" * 32}  # fmt: skip
    signed = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    headers = {"X-Twilio-Signature": signed if signature is None else signature}
    async with app.http.post(url, data=params, headers=headers) as response:
        return response.status, await response.text()


async def test_stop_lists_the_contact_and_start_lifts_it(app: App) -> None:
    status, reply = await inbound(app, " stop ", "SM" + "1" * 32)
    assert status == 200
    assert "<Response" in reply
    entry = await app.service.dnt_check(CONTACT)
    assert entry is not None
    assert entry.added_by == "contact"
    assert "STOP" in (entry.reason or "")
    blocked = await app.service.submit(TextRequest(sender=OUR_NUMBER, recipient=CONTACT, body="hi"))
    assert (blocked.message.status, blocked.message.reason) == (TextStatus.FAILED, "do_not_text")

    assert (await inbound(app, "START", "SM" + "2" * 32))[0] == 200
    assert await app.service.dnt_check(CONTACT) is None
    again = await app.service.submit(
        TextRequest(sender="+15550000002", recipient=CONTACT, body="welcome back",
                    validity=timedelta(hours=1))
    )  # fmt: skip
    assert again.message.status is TextStatus.QUEUED


@pytest.mark.parametrize("word", ["STOPALL", "Unsubscribe", "cancel", "END", "quit", "revoke",
                                  "optout", "opt out"])  # fmt: skip
async def test_every_opt_out_word_lists_the_contact(app: App, word: str) -> None:
    assert (await inbound(app, word, "SM" + "3" * 32))[0] == 200
    assert await app.service.dnt_check(CONTACT) is not None


async def test_help_is_answered_and_texts_are_kept_once(app: App) -> None:
    status, reply = await inbound(app, "HELP", "SM" + "4" * 32)
    assert status == 200
    assert "Reply STOP" in reply
    assert (await inbound(app, "HELP", "SM" + "4" * 32))[0] == 200  # Twilio retried
    found = await app.service.find(CONTACT)
    assert [m.status for m in found] == [TextStatus.RECEIVED]
    view = await app.service.message(found[0].id)
    assert [e.status for e in view.history] == [TextStatus.RECEIVING, TextStatus.RECEIVED]
    assert "Received from" in view.explanation
    assert await app.service.dnt_check(CONTACT) is None


async def test_unsigned_inbound_texts_are_refused(app: App) -> None:
    status, _ = await inbound(app, "STOP", "SM" + "5" * 32, signature="forged")
    assert status == 403
    assert await app.service.dnt_check(CONTACT) is None
    assert await app.service.find(CONTACT) == []
