"""The Do Not Text list and the engagement metrics over real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dispatcher.core import metrics
from tests.helpers import wait_for
from tests.peers import App
from tests.test_http import sent_text

CONTACT = "+15550300001"


async def get(app: App, path: str, params: dict[str, str] | None = None) -> tuple[int, Any]:
    async with app.http.get(app.url + path, params=params, headers=app.api()) as response:
        return response.status, await response.json()


async def test_list_look_up_and_lift_a_number(app: App) -> None:
    new = {"number": CONTACT, "reason": "asked on the phone"}
    status, entry = await app.request("POST", "/v1/dnt", json=new, headers=app.api())
    assert status == 201
    assert (entry["number"], entry["added_by"], entry["reason"]) == (
        CONTACT, "api", "asked on the phone")  # fmt: skip
    assert datetime.fromisoformat(entry["added_at"]).utcoffset() == timedelta(0)
    again = {"number": CONTACT, "reason": "another reason"}
    assert await app.request("POST", "/v1/dnt", json=again, headers=app.api()) == (200, entry)
    assert await get(app, f"/v1/dnt/{CONTACT}") == (200, entry)
    assert await get(app, "/v1/dnt") == (200, {"entries": [entry]})

    text = {"from": "+15550000001", "to": CONTACT, "body": "hello"}
    status, refused = await app.request("POST", "/v1/messages", json=text, headers=app.api())
    assert (status, refused["status"], refused["reason"]) == (201, "Failed", "do_not_text")

    status, _ = await app.request("DELETE", f"/v1/dnt/{CONTACT}", headers=app.api())
    assert status == 204
    assert await app.service.dnt_check(CONTACT) is None
    status, missing = await app.request("DELETE", f"/v1/dnt/{CONTACT}", headers=app.api())
    assert (status, missing["error"]["code"]) == (404, "not_found")
    status, missing = await get(app, f"/v1/dnt/{CONTACT}")
    assert (status, missing["error"]["code"]) == (404, "not_found")
    assert await get(app, "/v1/dnt") == (200, {"entries": []})


async def test_invalid_numbers_and_limits_are_named(app: App) -> None:
    for body, field in [({"number": "555"}, "number"), ({"reason": "x"}, "number"),
                        ({"number": CONTACT, "colour": "red"}, "colour"),
                        ({"number": CONTACT, "reason": "x" * 501}, "reason")]:  # fmt: skip
        status, refused = await app.request("POST", "/v1/dnt", json=body, headers=app.api())
        assert (status, refused["error"]["field"]) == (400, field), body
    for path in ("/v1/dnt/555", "/v1/dnt/ann"):
        status, refused = await get(app, path)
        assert (status, refused["error"]["field"]) == (400, "number")
    status, refused = await get(app, "/v1/dnt", {"limit": "0"})
    assert (status, refused["error"]["field"]) == (400, "limit")
    assert await app.service.dnt_list() == []
    async with app.http.get(app.url + "/v1/dnt") as response:
        assert response.status == 401


async def test_metrics_with_the_command_s_filters(app: App) -> None:
    await sent_text(app)

    async def counted() -> bool:
        counts: dict[str, int] = (await get(app, "/v1/metrics"))[1]["text"]
        return counts["Sent"] == 1

    await wait_for(counted, what="the text counted as Sent")
    status, answer = await get(app, "/v1/metrics", {"since": "1h", "by": "sender"})
    assert status == 200
    query, by = metrics.request(now=datetime.now(UTC), since="1h", by="sender")
    assert answer == await app.service.metrics_report(query, by)
    assert answer["breakdown"]["+15550000001"]["text"]["Sent"] == 1
    assert set(answer) == {"voice", "text", "email", "rates", "by", "breakdown"}
    assert list(answer["email"]) == list(metrics.EMAIL)
    _, other = await get(app, "/v1/metrics", {"sender": "+15550000009"})
    assert other["text"]["Sent"] == 0
    _, later = await get(app, "/v1/metrics", {"since": "2999-01-01T00:00:00Z"})
    assert later["text"]["Sent"] == 0
    for params, field in [({"since": "yesterday"}, "since"), ({"by": "colour"}, "by"),
                          ({"since": "1h", "until": "2h"}, "until"),
                          ({"sender": "ann"}, "sender")]:  # fmt: skip
        status, refused = await get(app, "/v1/metrics", params)
        assert (status, refused["error"]["field"]) == (400, field), params


async def test_metrics_of_an_email_sender_by_its_from_address(app: App) -> None:
    for sender in ("Shop <shop@example.com>", "news@example.com"):
        email = {"from": sender, "to": "ann@example.com", "subject": "Hi", "text": "Hello"}
        status, _ = await app.request("POST", "/v1/emails", json=email, headers=app.api())
        assert status == 201

    async def counted() -> bool:
        counts: dict[str, int] = (await get(app, "/v1/metrics"))[1]["email"]
        return counts["Sent"] == 2

    await wait_for(counted, what="both emails counted as Sent")
    for sender, sent in [("Shop <shop@example.com>", 1), ("news@example.com", 1),
                         ("shop@example.com", 0), ("+15550000001", 0)]:  # fmt: skip
        status, answer = await get(app, "/v1/metrics", {"sender": sender})
        assert (status, answer["email"]["Sent"]) == (200, sent), sender
    status, refused = await get(app, "/v1/metrics", {"sender": "shop@"})
    assert (status, refused["error"]["field"]) == (400, "sender")
    assert "not a valid email address" in refused["error"]["message"]
    status, refused = await get(app, "/v1/metrics", {"sender": "shop"})
    assert (status, refused["error"]["field"]) == (400, "sender")
    assert "neither a phone number" in refused["error"]["message"]
