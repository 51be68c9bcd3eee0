"""Every refusal of the HTTP app, over real HTTP, is in the JSON error shape
``{"error": {"code", "message"}}``: a route that does not exist, a method a route does
not take (with ``Allow``), a body too large or not JSON, and a failure of the app."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dispatcher.web.answers import MAX_BODY, errors
from tests.peers import App

NEW = {"from": "+15550000001", "to": "+15550200001", "body": "hello"}


async def refusal(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """The error of a refusal, checked to be JSON in the error shape."""
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert {"code", "message"} <= set(error)
    assert error["message"]
    return error


@pytest.mark.parametrize("path", ["/nope", "/v1/nope", "/v1/messages/a/b", "/twilio/nope"])
async def test_an_unknown_route_is_404_in_json(app: App, path: str) -> None:
    async with app.http.get(app.url + path, headers=app.api()) as response:
        assert response.status == 404
        error = await refusal(response)
    assert error["code"] == "not_found"
    assert path in error["message"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/messages", "POST"),
        ("PATCH", "/v1/automations/x", "DELETE"),
        ("GET", "/twilio/inbound", "POST"),
    ],
)
async def test_a_method_a_route_does_not_take_is_405_with_allow(
    app: App, method: str, path: str, allowed: str
) -> None:
    async with app.http.request(method, app.url + path, headers=app.api()) as response:
        assert response.status == 405
        assert allowed in response.headers["Allow"].split(",")
        error = await refusal(response)
    assert error["code"] == "method_not_allowed"
    assert method in error["message"]


async def test_the_operations_routes_keep_their_own_405(app: App) -> None:
    async with app.http.post(app.url + "/healthz") as response:
        assert response.status == 405
        assert set(response.headers["Allow"].split(",")) == {"GET", "HEAD"}
        error = await refusal(response)
    assert error == {"code": "method_not_allowed",
                     "message": "POST is not allowed on /healthz: use GET"}  # fmt: skip


@pytest.mark.parametrize("path", ["/v1/messages", "/twilio/inbound"])
async def test_a_body_too_large_is_413_in_json(app: App, path: str) -> None:
    big = b"x" * (MAX_BODY + 1)
    headers = {**app.api(), "Content-Type": "application/json"}
    if path.startswith("/twilio"):
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    async with app.http.post(app.url + path, data=big, headers=headers) as response:
        assert response.status == 413
        error = await refusal(response)
    assert error["code"] == "too_large"
    assert (await app.service.status()).counts == {}


async def test_a_body_not_json_is_415_in_json(app: App) -> None:
    headers = {**app.api(), "Content-Type": "text/plain"}
    async with app.http.post(app.url + "/v1/messages", data=b"{}", headers=headers) as response:
        assert response.status == 415
        error = await refusal(response)
    assert error["code"] == "unsupported_media_type"


async def test_a_failure_of_the_app_is_500_in_json_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(_: web.Request) -> web.StreamResponse:
        raise RuntimeError("a bug")

    async def teapot(_: web.Request) -> web.StreamResponse:
        raise web.HTTPBadRequest(text="short and stout")  # plain text: answered as JSON

    app = web.Application(middlewares=[errors])
    app.router.add_get("/broken", broken)
    app.router.add_get("/teapot", teapot)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        response = await client.get("/broken")
        assert response.status == 500
        error = await refusal(response)
        assert error["code"] == "server_error"
        assert "a bug" not in error["message"]  # nothing of the failure leaks
        response = await client.get("/teapot")
        assert response.status == 400
        assert (await refusal(response))["code"] == "bad_request"
    assert any(r.message == "http.failed" and r.exc_info for r in caplog.records)


async def test_a_query_as_long_as_the_longest_the_api_describes_reaches_the_app(app: App) -> None:
    # A template and a pool of 2,000 characters outside the Basic Multilingual Plane
    # each: 48,000 bytes once percent-encoded, beyond the HTTP parser's usual 8,190.
    # The app itself answers (the parser's refusal would be plain text).
    long = "\U0001f600" * 2000
    query = {"name": "long", "template": long, "from": long}
    headers = {**app.api(), "Content-Type": "text/csv"}
    async with app.http.post(app.url + "/v1/campaigns", params=query, headers=headers,
                             data=b"phone\n+15550200001\n") as response:  # fmt: skip
        assert response.status == 400
        error = await refusal(response)
    assert error["code"] == "invalid_number"  # the pool, read by the app
