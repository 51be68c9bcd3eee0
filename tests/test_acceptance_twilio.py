"""The real service on Twilio's contract, end to end: ``dispatcher serve`` in a
subprocess with ``DISPATCHER_PROVIDER=twilio`` and the SDK pointed at Prism (Twilio's
own OpenAPI spec: a request that breaks it is refused with 422, which would end the
text or call Failed). An automation texts and calls through the HTTP API; the test
then plays Twilio: it signs status callbacks, an inbound STOP and START, and the
requests Twilio makes for a call's script, and follows the TwiML it gets back."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree

import aiohttp
import pytest

from tests.helpers import Service, free_port, wait_for
from tests.peers import ACCOUNT_SID, API_TOKEN, AUTH_TOKEN, HttpClient

NUMBER = "+15550000001"
CONTACT = "+15550100001"
OTHER = "+15550100002"  # texted first: the same-second rule is about one contact
SCRIPT = [
    {"say": "Hello from dispatcher."},
    {"gather": "Press 1 to confirm.", "digits": 1, "on": {"1": "confirmed"}},
    {"say": "No answer. Goodbye.", "goto": "end"},
    {"label": "confirmed", "say": "Confirmed. Goodbye."},
]


@contextlib.asynccontextmanager
async def on_twilio(home: Path, prism_url: str) -> AsyncIterator[HttpClient]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    service = Service(home, env={
        "DISPATCHER_PROVIDER": "twilio",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "DISPATCHER_TWILIO_API_BASE_URL": prism_url,
        "DISPATCHER_HTTP_LISTEN": f"127.0.0.1:{port}",
        "DISPATCHER_PUBLIC_URL": url,
        "DISPATCHER_API_TOKEN": API_TOKEN,
    })  # fmt: skip
    await service.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield HttpClient(url=url, http=http)
    finally:
        assert service.stop() == 0, service.log.read_text()


async def until(app: HttpClient, path: str, status: str) -> dict[str, Any]:
    """GET ``path`` until its status is ``status``; returns the last answer."""
    seen: dict[str, Any] = {}

    async def reached() -> bool:
        code, seen["answer"] = await app.request("GET", path, headers=app.api())
        assert code == 200, seen["answer"]
        return bool(seen["answer"]["status"] == status)

    await wait_for(reached, what=f"{path} to be {status}")
    answer: dict[str, Any] = seen["answer"]
    return answer


async def text(app: HttpClient, body: str, to: str = CONTACT) -> dict[str, Any]:
    code, answer = await app.request(
        "POST", "/v1/messages", json={"from": NUMBER, "to": to, "body": body},
        headers=app.api(),
    )  # fmt: skip
    assert code == 201, answer
    created: dict[str, Any] = answer
    return created


async def inbound(app: HttpClient, body: str, sid: str) -> None:
    form = {"From": CONTACT, "To": NUMBER, "Body": body, "MessageSid": sid}
    code, answer = await app.twilio("/twilio/inbound", form)
    assert code == 200, answer


@pytest.mark.acceptance
@pytest.mark.timeout(120)
async def test_texts_and_a_scripted_call_through_twilio(home: Path, prism_url: str) -> None:
    async with on_twilio(home, prism_url) as app:
        # A text: Twilio (Prism) takes it; its signed status callback delivers it.
        first = await text(app, "Your order shipped.", to=OTHER)
        sent = await until(app, f"/v1/messages/{first['id']}", "Sent")
        assert sent["provider_sid"].startswith("SM")
        callback = {"MessageSid": sent["provider_sid"], "MessageStatus": "delivered"}
        code, _ = await app.twilio(sent["status_callback_url"], callback)
        assert code == 204
        await until(app, f"/v1/messages/{first['id']}", "Delivered")

        # STOP puts the contact on the Do Not Text list; START lifts it.
        await inbound(app, "STOP", "SM" + "1" * 32)
        refused = await text(app, "A text after STOP.")
        assert (refused["status"], refused["reason"]) == ("Failed", "do_not_text")
        await inbound(app, "START", "SM" + "2" * 32)
        lifted = await text(app, "A text after START.")
        await until(app, f"/v1/messages/{lifted['id']}", "Sent")

        # A scripted call: placed through the SDK, then run as Twilio runs it.
        code, placed = await app.request(
            "POST", "/v1/calls", json={"from": NUMBER, "to": CONTACT, "script": SCRIPT},
            headers={**app.api(), "Idempotency-Key": "call-1"},
        )  # fmt: skip
        assert code == 201, placed
        path = f"/v1/calls/{placed['id']}"
        call = await until(app, path, "Initiated")
        sid = call["provider_sid"]
        assert sid.startswith("CA")
        await run_script(app, placed["id"], sid)
        status = {"CallSid": sid, "CallStatus": "completed"}
        code, _ = await app.twilio(call["status_callback_url"], status)
        assert code == 204
        done = await until(app, path, "Completed")
    assert done["script_done"] is True
    results = [e["result"] for e in done["history"] if e["result"]]
    assert results == ["Say", "Gather", "Prompt", "Say"]
    assert [e["detail"] for e in done["history"] if e["result"] == "Prompt"] == ["1"]


async def run_script(app: HttpClient, call_id: str, sid: str) -> None:
    """Play Twilio: ask for TwiML from the first position, answer the prompt with 1,
    follow every redirect until the TwiML hangs up."""
    url = f"{app.url}/twilio/voice/{call_id}?at=start"
    form = {"CallSid": sid, "CallStatus": "in-progress"}
    for _ in range(20):
        code, twiml = await app.twilio(url, form)
        assert code == 200, twiml
        verbs = list(ElementTree.fromstring(twiml))  # noqa: S314 - the service's own answer
        if verbs[-1].tag == "Hangup":
            return
        gather = next((v for v in verbs if v.tag == "Gather"), None)
        if gather is not None:
            url, form = str(gather.get("action")), {"CallSid": sid, "Digits": "1"}
        else:
            url, form = str(verbs[-1].text), {"CallSid": sid}
        assert parse_qs(urlsplit(url).query)["at"], url
    raise AssertionError("the script never hung up")
