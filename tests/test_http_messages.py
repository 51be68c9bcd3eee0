"""The text resource over real HTTP: every field of ``GET /v1/messages/{id}``, and
cancelling a text with ``DELETE``."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from dispatcher.core.model import TextStatus
from tests.helpers import wait_for
from tests.http_api import api
from tests.peers import App
from tests.test_http import post_status, sent_text, status_of

SENDER = "+15550000001"
NEW = {"from": SENDER, "to": "+15550200001", "body": "your code is 1234", "priority": "bulk"}
FIELDS = {
    "id", "from", "to", "body", "segments", "status", "reason", "error_code", "priority",
    "campaign_id", "provider_id", "trigger", "created_at", "updated_at", "expires_at",
    "history", "explanation", "provider_sid", "status_callback_url", "callbacks",
}  # fmt: skip


async def test_a_text_is_answered_with_every_field(app: App) -> None:
    await app.service.pause(SENDER)  # it stays Queued
    status, created = await app.request("POST", "/v1/messages", json=NEW, headers=app.api())
    assert status == 201
    status, view = await app.request("GET", f"/v1/messages/{created['id']}", headers=app.api())
    assert status == 200
    assert set(view) == FIELDS
    shown = {k: view[k] for k in ("id", "from", "to", "body", "segments", "status", "priority")}
    assert shown == {"id": created["id"], "from": SENDER, "to": NEW["to"], "body": NEW["body"],
                     "segments": 1, "status": "Queued", "priority": "bulk"}  # fmt: skip
    assert view["error_code"] is None
    assert view["campaign_id"] is None
    assert view["provider_id"] is None
    created_at = datetime.fromisoformat(view["created_at"])
    assert created_at.utcoffset() is not None
    assert datetime.fromisoformat(view["updated_at"]) >= created_at
    assert [e["status"] for e in view["history"]] == ["Pending", "Queued"]


async def test_the_provider_s_error_code_and_id_are_answered(app: App) -> None:
    message_id, sid = await sent_text(app, to="+15550100002")
    params = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    assert await post_status(app, message_id, params) == 204

    async def done() -> bool:
        return await status_of(app, message_id) is TextStatus.UNREACHABLE

    await wait_for(done, what="Unreachable")
    status, view = await app.request("GET", f"/v1/messages/{message_id}", headers=app.api())
    assert status == 200
    assert (view["status"], view["error_code"]) == ("Unreachable", "30003")
    assert view["provider_id"] == sid
    assert view["provider_sid"] == sid
    assert view["body"] == "hello"


# -- cancel ------------------------------------------------------------------------------


async def test_cancel_a_queued_text_but_not_one_sent(app: App) -> None:
    held = "+15550000002"
    await app.service.pause(held)
    waiting = {**NEW, "from": held}
    _, created = await app.request("POST", "/v1/messages", json=waiting, headers=app.api())
    path = f"/v1/messages/{created['id']}"
    status, cancelled = await app.request("DELETE", path, headers=app.api())
    assert status == 200
    assert (cancelled["id"], cancelled["status"], cancelled["reason"]) == (
        created["id"], "Unsent", "canceled")  # fmt: skip
    assert cancelled["history"][-1]["source"] == "operator"
    assert await app.request("DELETE", path, headers=app.api()) == (200, cancelled)  # again
    assert await status_of(app, created["id"]) is TextStatus.UNSENT

    sent, _ = await sent_text(app, to="+15550100009")  # from a number not paused
    status, refused = await app.request("DELETE", f"/v1/messages/{sent}", headers=app.api())
    assert status == 409
    assert refused["error"]["code"] == "conflict"
    assert await status_of(app, sent) is TextStatus.SENT
    status, refused = await app.request("DELETE", "/v1/messages/msg_nope", headers=app.api())
    assert (status, refused["error"]["code"]) == (404, "not_found")
    status, _ = await app.request("DELETE", path, headers=app.api("wrong"))
    assert status == 401


CALL = {"from": SENDER, "to": "+15550200001", "script": [{"say": "Hello."}]}


async def test_cancel_a_queued_call_but_not_one_placed(tmp_path: Path) -> None:
    async with api(tmp_path, calls_per_second=0.001) as app:  # one call in 1,000 s
        answers = [await app.request("POST", "/v1/calls", json={**CALL, "to": f"+1555020000{i}"},
                                     headers=app.api()) for i in range(2)]  # fmt: skip
        first, second = (created["id"] for _, created in answers)
        status, cancelled = await app.request("DELETE", f"/v1/calls/{second}", headers=app.api())
        assert status == 200
        assert (cancelled["id"], cancelled["status"], cancelled["reason"]) == (
            second, "Canceled", "canceled")  # fmt: skip
        assert set(cancelled) >= {"from", "to", "script", "history", "explanation"}
        again = await app.request("DELETE", f"/v1/calls/{second}", headers=app.api())
        assert again == (200, cancelled)

        async def placed() -> bool:
            return (await app.service.call(first)).call.status.value != "Queued"

        await wait_for(placed, what="the first call to be placed")
        status, refused = await app.request("DELETE", f"/v1/calls/{first}", headers=app.api())
        assert (status, refused["error"]["code"]) == (409, "conflict")
        status, refused = await app.request("DELETE", "/v1/calls/call_nope", headers=app.api())
        assert (status, refused["error"]["code"]) == (404, "not_found")
