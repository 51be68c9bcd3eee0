"""The text resource over real HTTP: every field of ``GET /v1/messages/{id}``, and
cancelling a text with ``DELETE``."""

from __future__ import annotations

from datetime import datetime

from dispatcher.core.model import TextStatus
from tests.helpers import wait_for
from tests.peers import App
from tests.test_http import post_status, sent_text, status_of

SENDER = "+15550000001"
NEW = {"from": SENDER, "to": "+15550200001", "body": "your code is 1234", "priority": "bulk"}
FIELDS = {
    "id", "from", "to", "body", "segments", "status", "reason", "error_code", "priority",
    "campaign_id", "provider_id", "trigger", "created_at", "updated_at", "expires_at",
    "history", "explanation", "provider_sid", "status_callback_url",
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
