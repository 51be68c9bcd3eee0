"""``GET /v1/messages`` and ``GET /v1/calls`` over real HTTP, on the memory store and
SQLite: filters, newest first, cursor paging, and each invalid filter named."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.http_api import api
from tests.peers import App

A, B = "+15550200001", "+15550200002"
OURS, THEIRS = "+15550000001", "+15550000002"


@pytest.fixture(params=["memory", "sqlite"])
async def listed(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[App]:
    async with api(tmp_path, store=request.param, calls_per_second=0.001) as app:
        yield app


async def get(app: App, path: str, params: dict[str, str] | None = None) -> tuple[int, Any]:
    async with app.http.get(app.url + path, params=params, headers=app.api()) as response:
        return response.status, await response.json()


async def submit(app: App, sender: str, to: str, body: str) -> str:
    new = {"from": sender, "to": to, "body": body}
    status, created = await app.request("POST", "/v1/messages", json=new, headers=app.api())
    assert status == 201
    return str(created["id"])


async def every_page(app: App, path: str, params: dict[str, str], key: str) -> list[list[str]]:
    """The ids of each page, following the cursors (at most 20 pages)."""
    pages: list[list[str]] = []
    query = dict(params)
    for _ in range(20):
        status, page = await get(app, path, query)
        assert status == 200, page
        pages.append([item["id"] for item in page[key]])
        if page["next_cursor"] is None:
            return pages
        query["cursor"] = page["next_cursor"]
    raise AssertionError("the pages never ended")


async def test_texts_newest_first_in_pages_that_follow_their_cursor(listed: App) -> None:
    app = listed
    for sender in (OURS, THEIRS):
        await app.service.pause(sender)  # their texts stay Queued
    ids = [await submit(app, OURS if i % 2 else THEIRS, A if i < 4 else B, f"text {i}")
           for i in range(7)]  # fmt: skip
    for cancelled in (ids[1], ids[3]):
        await app.service.cancel(cancelled)
    newest_first = ids[::-1]
    assert await every_page(app, "/v1/messages", {"limit": "3"}, "messages") == [
        newest_first[:3], newest_first[3:6], newest_first[6:]]  # fmt: skip
    assert await every_page(app, "/v1/messages", {"limit": "7"}, "messages") == [newest_first]
    status, page = await get(app, "/v1/messages")  # the default limit: 50
    assert (status, [m["id"] for m in page["messages"]], page["next_cursor"]) == (
        200, newest_first, None)  # fmt: skip
    assert set(page["messages"][0]) == {
        "id",
        "from",
        "to",
        "body",
        "segments",
        "status",
        "reason",
        "error_code",
        "priority",
        "campaign_id",
        "provider_id",
        "trigger",
        "created_at",
        "updated_at",
        "expires_at",
    }

    async def found(**params: str) -> list[str]:
        return [i for page in await every_page(app, "/v1/messages", params, "messages")
                for i in page]  # fmt: skip

    assert await found(to=A) == newest_first[3:]
    assert await found(to=A, limit="1") == newest_first[3:]
    assert await found(to=B, **{"from": THEIRS}) == [ids[6], ids[4]]
    assert await found(status="Queued") == [ids[6], ids[5], ids[4], ids[2], ids[0]]
    assert await found(status="Unsent") == [ids[3], ids[1]]
    assert await found(status="Queued", to=A, limit="1") == [ids[2], ids[0]]
    assert await found(campaign="cmp_none") == []
    created = {m["id"]: m["created_at"] for m in page["messages"]}
    assert await found(since=created[ids[2]], until=created[ids[5]]) == [ids[4], ids[3], ids[2]]
    # A "+" sent unencoded arrives as a space: it is read as the "+".
    status, unencoded = await get(app, f"/v1/messages?to={A}")
    assert [m["id"] for m in unencoded["messages"]] == newest_first[3:]


async def test_calls_newest_first_with_filters(listed: App) -> None:
    app = listed
    ids = []
    for i, to in enumerate([A, B, A]):
        call = {"from": OURS, "to": to, "script": [{"say": f"call {i}"}]}
        status, created = await app.request("POST", "/v1/calls", json=call, headers=app.api())
        assert status == 201
        ids.append(created["id"])
    assert await every_page(app, "/v1/calls", {"limit": "2"}, "calls") == [
        [ids[2], ids[1]], [ids[0]]]  # fmt: skip
    status, page = await get(app, "/v1/calls", {"to": A})
    assert [c["id"] for c in page["calls"]] == [ids[2], ids[0]]
    assert {"from", "to", "script", "status", "accepted_at"} <= set(page["calls"][0])
    status, page = await get(app, "/v1/calls", {"status": "Queued", "from": OURS})
    assert [c["id"] for c in page["calls"]] == [ids[2], ids[1]]  # the first is being placed
    status, page = await get(app, "/v1/calls", {"to": B, "campaign": "cmp_none"})
    assert page == {"calls": [], "next_cursor": None}


async def test_each_invalid_filter_is_named(listed: App) -> None:
    app = listed
    await submit(app, OURS, A, "one")
    status, page = await get(app, "/v1/messages", {"limit": "1"})
    messages_cursor = page["next_cursor"]
    assert messages_cursor is None  # one text: one page
    cases = [
        ("/v1/messages", {"limit": "0"}, "limit"),
        ("/v1/messages", {"limit": "501"}, "limit"),
        ("/v1/messages", {"limit": "ten"}, "limit"),
        ("/v1/messages", {"to": "5550200001"}, "to"),
        ("/v1/messages", {"to": "+1555"}, "to"),  # the right shape, too short for its plan
        ("/v1/messages", {"from": "ann"}, "from"),
        ("/v1/messages", {"status": "queued"}, "status"),
        ("/v1/messages", {"since": "yesterday"}, "since"),
        ("/v1/messages", {"since": "2026-03-14T09:00:00"}, "since"),  # no offset
        ("/v1/messages", {"since": "2026-03-14T10:00:00Z", "until": "2026-03-14T09:00:00Z"},
         "until"),
        ("/v1/messages", {"cursor": "not-a-cursor"}, "cursor"),
        ("/v1/messages", {"colour": "red"}, "colour"),
        ("/v1/calls", {"status": "Sent"}, "status"),
        ("/v1/calls", {"to": "+1"}, "to"),
    ]  # fmt: skip
    for path, params, field in cases:
        status, refused = await get(app, path, params)
        assert status == 400, (params, refused)
        assert refused["error"]["field"] == field, (params, refused)
    async with app.http.get(app.url + "/v1/messages") as response:
        assert response.status == 401


async def test_a_cursor_belongs_to_its_own_list(listed: App) -> None:
    app = listed
    for i in range(2):
        await submit(app, OURS, A, f"text {i}")
        call = {"from": OURS, "to": A, "script": [{"say": "hi"}]}
        assert (await app.request("POST", "/v1/calls", json=call, headers=app.api()))[0] == 201
    _, texts = await get(app, "/v1/messages", {"limit": "1"})
    _, calls = await get(app, "/v1/calls", {"limit": "1"})
    status, refused = await get(app, "/v1/calls", {"cursor": texts["next_cursor"]})
    assert (status, refused["error"]["field"]) == (400, "cursor")
    status, refused = await get(app, "/v1/messages", {"cursor": calls["next_cursor"]})
    assert (status, refused["error"]["field"]) == (400, "cursor")
