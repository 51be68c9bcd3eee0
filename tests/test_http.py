"""The HTTP app over real HTTP: Twilio's status callbacks, signed exactly as Twilio signs
them (the SDK's RequestValidator), and the automation API with its bearer token and
idempotency keys."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from dispatcher.core.model import TextStatus
from dispatcher.service import TextRequest
from tests.helpers import wait_for
from tests.peers import App


async def post_status(
    app: App, message_id: str, params: dict[str, str], *, signature: str | None = None
) -> int:
    """Twilio's status callback for a text: the HTTP status it gets."""
    return (await app.twilio(f"/twilio/status/{message_id}", params, signature=signature))[0]


async def status_of(app: App, message_id: str) -> TextStatus:
    return (await app.service.message(message_id)).message.status


async def sent_text(app: App, to: str = "+15550100001") -> tuple[str, str]:
    """A text the provider took: (message id, provider id)."""
    request = TextRequest(sender="+15550000001", recipient=to, body="hello")
    message = (await app.service.submit(request)).message

    async def taken() -> bool:
        return await status_of(app, message.id) is TextStatus.SENT

    await wait_for(taken, what="the text to be sent")
    provider_id = (await app.service.message(message.id)).message.provider_id
    assert provider_id is not None
    return message.id, provider_id


# -- status callbacks ----------------------------------------------------------------


async def test_signed_callbacks_move_a_text_and_late_ones_never_move_it_back(app: App) -> None:
    message_id, sid = await sent_text(app)
    delivered = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": "AC1"}
    assert await post_status(app, message_id, delivered) == 204

    async def done() -> bool:
        return await status_of(app, message_id) is TextStatus.DELIVERED

    await wait_for(done, what="Delivered")
    # Twice, and a late "sent": kept in the history, the status stays Delivered.
    assert await post_status(app, message_id, delivered) == 204
    assert await post_status(app, message_id, {"MessageSid": sid, "MessageStatus": "sent"}) == 204

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
    assert await post_status(app, message_id, params) == 204

    async def done() -> bool:
        return await status_of(app, message_id) is TextStatus.UNREACHABLE

    await wait_for(done, what="Unreachable")
    assert (await app.service.message(message_id)).message.provider_code == "30003"


@pytest.mark.parametrize("signature", ["", "forged-signature"])
async def test_unsigned_or_forged_callbacks_are_refused(app: App, signature: str) -> None:
    message_id, sid = await sent_text(app, to="+15550100003")
    params = {"MessageSid": sid, "MessageStatus": "delivered"}
    assert await post_status(app, message_id, params, signature=signature) == 403
    assert await status_of(app, message_id) is TextStatus.SENT


async def test_callbacks_for_unknown_or_mismatched_texts_change_nothing(app: App) -> None:
    message_id, sid = await sent_text(app, to="+15550100004")
    params = {"MessageSid": sid, "MessageStatus": "delivered"}
    assert await post_status(app, "msg_unknown", params) == 404
    other = {"MessageSid": "SM" + "f" * 32, "MessageStatus": "delivered"}
    assert await post_status(app, message_id, other) == 409
    assert await post_status(app, message_id, {"MessageSid": sid}) == 400
    assert await status_of(app, message_id) is TextStatus.SENT


# -- automation API ----------------------------------------------------------------------


NEW = {"from": "+15550000001", "to": "+15550200001", "body": "your code is 1234"}


async def test_submit_and_read_a_text(app: App) -> None:
    status, created = await app.request("POST", "/v1/messages", json=NEW, headers=app.api())
    assert status == 201
    assert created["status"] == "Queued"
    status, view = await app.request("GET", f"/v1/messages/{created['id']}", headers=app.api())
    assert status == 200
    assert {"id", "status", "reason", "provider_sid", "status_callback_url", "history",
            "explanation"} <= set(view)  # fmt: skip
    assert view["status_callback_url"] == f"{app.url}/twilio/status/{created['id']}"
    assert view["history"][0]["status"] == "Pending"
    message = (await app.service.message(created["id"])).message
    assert message.lane.name == "AUTOMATION"


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_missing_or_wrong_tokens_are_refused(app: App, token: str | None) -> None:
    status, answer = await app.request("POST", "/v1/messages", json=NEW, headers=app.api(token))
    assert status == 401
    assert answer["error"]["code"] == "unauthorized"
    status, _ = await app.request("GET", "/v1/messages/msg_x", headers=app.api(token))
    assert status == 401
    assert (await app.service.status()).counts == {}


async def test_concurrent_retries_with_one_key_make_one_text(app: App) -> None:
    headers = {**app.api(), "Idempotency-Key": "order-42"}
    answers = await asyncio.gather(
        *(app.request("POST", "/v1/messages", json=NEW, headers=headers) for _ in range(10))
    )
    ids = {answer["id"] for _, answer in answers}
    assert len(ids) == 1
    assert sorted(status for status, _ in answers) == [200] * 9 + [201]
    assert sum((await app.service.status()).counts.values()) == 1
    other = {**NEW, "body": "a different text"}
    status, answer = await app.request("POST", "/v1/messages", json=other, headers=headers)
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
    status, answer = await app.request("POST", "/v1/messages", json=body, headers=app.api())
    assert status == 400
    assert answer["error"]["field"] == field
    assert (await app.service.status()).counts == {}


@pytest.mark.parametrize("raw", [b"{not json", b"\xcf", b""])
async def test_malformed_json_and_unknown_ids(app: App, raw: bytes) -> None:
    headers = {**app.api(), "Content-Type": "application/json"}
    async with app.http.post(app.url + "/v1/messages", data=raw, headers=headers) as response:
        assert response.status == 400
    status, answer = await app.request("GET", "/v1/messages/msg_nope", headers=app.api())
    assert status == 404
    assert answer["error"]["code"] == "not_found"


async def test_the_api_describes_itself(app: App) -> None:
    status, spec = await app.request("GET", "/v1/openapi.json")
    assert status == 200
    assert set(spec["paths"]) == {
        "/v1/messages", "/v1/messages/{message_id}", "/v1/calls", "/v1/calls/{call_id}",
        "/v1/emails", "/v1/emails/{email_id}",
        "/v1/automations", "/v1/automations/{name}", "/v1/dnt", "/v1/dnt/{number}", "/v1/metrics",
        "/v1/consent", "/v1/consent/{contact}", "/v1/consent/{contact}/history",
        "/v1/campaigns", "/v1/campaigns/{campaign_id}", "/v1/campaigns/{campaign_id}/pause",
        "/v1/campaigns/{campaign_id}/resume", "/v1/campaigns/{campaign_id}/cancel",
        "/v1/campaigns/{campaign_id}/contacts", "/v1/numbers", "/v1/workers",
    }  # fmt: skip
    assert spec["components"]["schemas"]["NewCall"]["required"] == ["from", "to", "script"]


# -- inbound texts ---------------------------------------------------------------------

CONTACT = "+15550300001"
OUR_NUMBER = "+15550000001"


async def inbound(
    app: App, body: str, sid: str, *, signature: str | None = None
) -> tuple[int, str]:
    params = {"From": CONTACT, "To": OUR_NUMBER, "Body": body, "MessageSid": sid,
              "AccountSid": "AC" + "0" * 32}  # fmt: skip
    return await app.twilio("/twilio/inbound", params, signature=signature)


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
