"""The HTTP app against hostile input, over real HTTP: every request below gets a clear
4xx with the JSON error shape (naming the field or the limit), never a 500, and
changes nothing. Bytes the aiohttp client would not send go through a raw connection."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.peers import API_TOKEN, App

ANSWER_TIMEOUT = 10.0
NEW = {"from": "+15550000001", "to": "+15550200001", "body": "your code is 1234"}
CALL = {"from": "+15550000001", "to": "+15550200001", "script": [{"say": "Hello"}]}
RULE = {"name": "thanks", "on": "text.delivered", "do": "text", "body": "Thanks!"}
POSTS = [("/v1/messages", NEW), ("/v1/calls", CALL), ("/v1/automations", RULE)]


async def raw_http(app: App, head: bytes, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """One request written byte for byte: the status and the JSON answer."""
    host, port = app.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), ANSWER_TIMEOUT)
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = data.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), json.loads(payload)


async def post_raw(
    app: App, path: str, body: bytes, content_type: str | None = "application/json"
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    async with app.http.post(app.url + path, data=body, headers=headers) as response:
        answer = await response.json(content_type=None)
        assert isinstance(answer, dict)
        return response.status, answer


async def nothing_changed(app: App) -> None:
    assert (await app.service.status()).counts == {}
    assert [r.name for r in app.service.automations.rules if r.name == RULE["name"]] == []


@pytest.mark.parametrize(
    "token", [b"\xc3\xa9t\xc3\xa9", b"\xff\xfe\x80", b"caf\xe9", API_TOKEN.encode() + b"\xff"]
)
async def test_a_bearer_token_with_non_ascii_or_invalid_utf8_bytes_is_unauthorised(
    app: App, token: bytes
) -> None:
    for head in (
        b"GET /v1/messages/msg_x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + token,
        b"POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\nAuthorization: Bearer " + token,
    ):
        status, answer = await raw_http(app, head, b"{}" if head.startswith(b"POST") else b"")
        assert status == 401
        assert answer["error"]["code"] == "unauthorized"
    await nothing_changed(app)


@pytest.mark.parametrize(("path", "valid"), POSTS)
async def test_deeply_nested_json_is_refused_naming_the_limit(
    app: App, path: str, valid: dict[str, Any]
) -> None:
    deep = "[" * 1000 + "]" * 1000
    for body in (deep, json.dumps(valid)[:-1] + f', "x": {deep}}}'):
        status, answer = await post_raw(app, path, body.encode())
        assert status == 400, answer
        assert "nested" in answer["error"]["message"]
        assert "32" in answer["error"]["message"]
    await nothing_changed(app)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/messages", {**NEW, "body": "hi \\ud800"}, "body"),
        ("/v1/messages", {**NEW, "to": "\\udfff"}, "to"),
        ("/v1/calls", {**CALL, "script": [{"say": "hi"}, {"say": "\\ud800 there"}]},
         "script[1].say"),
        ("/v1/automations", {**RULE, "body": "\\udc00"}, "body"),
        ("/v1/automations", {**RULE, "when": {"campaign": "\\ud800"}}, "when.campaign"),
    ],
)  # fmt: skip
async def test_a_lone_surrogate_is_refused_naming_the_field(
    app: App, path: str, body: dict[str, Any], field: str
) -> None:
    # json.dumps would escape the backslash: the escapes go in as the client wrote them.
    text = json.dumps(body).replace("\\\\u", "\\u")
    status, answer = await post_raw(app, path, text.encode())
    assert status == 400, answer
    assert answer["error"]["field"] == field
    assert "surrogate" in answer["error"]["message"]
    await nothing_changed(app)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999"])
async def test_nan_and_infinity_are_not_json(app: App, constant: str) -> None:
    text = json.dumps({**NEW, "priority": "bulk"}).replace('"bulk"', constant)
    status, answer = await post_raw(app, "/v1/messages", text.encode())
    assert status == 400, answer
    assert "standard JSON" in answer["error"]["message"]
    await nothing_changed(app)


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("/v1/calls", json.dumps({**CALL, "script": [{"say": "hi", "x": 2**64}]})),
        ("/v1/calls", json.dumps({**CALL, "script": [{"pause": -(2**63)}]})),
        ("/v1/messages", json.dumps({**NEW, "priority": 10**30})),
        ("/v1/automations", json.dumps({**RULE, "when": {"digits": 2**70}})),
    ],
)
async def test_an_integer_beyond_64_bits_is_refused_wherever_it_is(
    app: App, path: str, text: str
) -> None:
    status, answer = await post_raw(app, path, text.encode())
    assert status == 400, answer
    assert "integer" in answer["error"]["message"]
    await nothing_changed(app)
    assert await app.service.find_calls(str(CALL["to"])) == []


@pytest.mark.parametrize(
    ("path", "body", "field", "words"),
    [
        ("/v1/messages", {**NEW, "to": ["+15550200001"]}, "to", ["'to'", "str"]),
        ("/v1/messages", {**NEW, "body": None}, "body", ["'body'", "str", "None"]),
        ("/v1/messages", {**NEW, "extra": 1}, "extra", ["unknown field extra", "from, to"]),
        ("/v1/calls", {**CALL, "to": "+1 555 020 0001"}, "to",
         ["'to'", "E.164", "+14155550123", "'+1 555 020 0001'"]),
        ("/v1/calls", {**CALL, "priority": 1}, "priority", ["'priority'", "str"]),
        ("/v1/automations", {**RULE, "when": {"colour": "red"}}, "when",
         ["unknown filter colour"]),
        ("/v1/automations", {**RULE, "name": 7}, "name", ["a name is a letter"]),
        ("/v1/messages", {**NEW, "status_callback": "https://example.com/" + "x" * 2100},
         "status_callback", ["'status_callback'", "at most 2,000 characters, not 2,120"]),
    ],
)  # fmt: skip
async def test_a_body_of_the_wrong_shape_names_the_field(
    app: App, path: str, body: dict[str, Any], field: str, words: list[str]
) -> None:
    status, answer = await post_raw(app, path, json.dumps(body).encode())
    assert status == 400, answer
    assert answer["error"]["field"] == field
    for word in words:
        assert word in answer["error"]["message"], (word, answer)
    assert len(answer["error"]["message"]) < 500  # a long value is not echoed whole
    await nothing_changed(app)


@pytest.mark.parametrize("delay", ["99999999999h", "9" * 400 + "s", "3651d"])
async def test_an_automation_delay_out_of_range_names_the_limit(app: App, delay: str) -> None:
    status, answer = await app.request(
        "POST", "/v1/automations", json={**RULE, "delay": delay}, headers=app.api()
    )
    assert status == 400, answer
    assert answer["error"]["field"] == "delay"
    assert "3650d" in answer["error"]["message"]
    await nothing_changed(app)


@pytest.mark.parametrize(("path", "valid"), POSTS)
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "text/json", None]
)
async def test_a_body_that_is_not_declared_json_is_415(
    app: App, path: str, valid: dict[str, Any], content_type: str | None
) -> None:
    # None: no Content-Type header at all (the client then says application/octet-stream).
    status, answer = await post_raw(app, path, json.dumps(valid).encode(), content_type)
    assert status == 415, answer
    assert answer["error"]["code"] == "unsupported_media_type"
    assert "application/json" in answer["error"]["message"]
    await nothing_changed(app)


async def test_json_with_a_charset_is_accepted(app: App) -> None:
    body = json.dumps(NEW).encode()
    status, answer = await post_raw(app, "/v1/messages", body, "application/json; charset=utf-8")
    assert status == 201, answer
