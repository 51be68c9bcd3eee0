"""Email through every front: the HTTP API (``POST /v1/emails``, ``GET /v1/emails/{id}``),
the control socket (``email_submit``, ``email_show``, ``email_status``) and the command
line (``dispatcher email send|show|status``), each with its refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dispatcher.config import Config
from dispatcher.control.client import ControlClient
from dispatcher.core.emails import EmailStatus
from dispatcher.errors import Conflict, InvalidInput, NotFound
from dispatcher.web.app import OPENAPI
from tests.helpers import wait_for
from tests.peers import App
from tests.test_cli import assert_clean_error, client, service
from tests.test_cli import dispatcher as run

__all__ = ["client", "service"]  # the fixtures this module uses from the CLI's tests

EMAIL: dict[str, Any] = {
    "from": "news@example.com", "to": "ann@example.com", "subject": "Your order",
    "text": "It has shipped.", "html": "<p>It has <b>shipped</b>.</p>",
}  # fmt: skip


# -- HTTP --------------------------------------------------------------------------------


async def test_post_an_email_then_read_its_history(app: App) -> None:
    status, accepted = await app.request("POST", "/v1/emails", json=EMAIL, headers=app.api())
    assert status == 201, accepted
    assert accepted["status"] == "Queued"
    email_id = accepted["id"]

    async def sent() -> bool:
        status, body = await app.request("GET", f"/v1/emails/{email_id}", headers=app.api())
        return status == 200 and body["status"] == "Sent"

    await wait_for(sent, within=10, what="the email sent")
    status, view = await app.request("GET", f"/v1/emails/{email_id}", headers=app.api())
    assert status == 200
    assert view["from"] == "news@example.com"
    assert view["html"] is True
    assert view["relay"] == "simulator://"
    assert [e["status"] for e in view["history"]] == ["Queued", "Sending", "Sent"]
    assert "the relay accepted it" in view["explanation"]


async def test_an_idempotency_key_answers_the_same_email_and_refuses_another(app: App) -> None:
    headers = {**app.api(), "Idempotency-Key": "order-42"}
    first = await app.request("POST", "/v1/emails", json=EMAIL, headers=headers)
    again = await app.request("POST", "/v1/emails", json=EMAIL, headers=headers)
    other = await app.request("POST", "/v1/emails", json={**EMAIL, "subject": "Other"},
                              headers=headers)  # fmt: skip
    assert first[0] == 201
    assert again[0] == 200
    assert again[1]["id"] == first[1]["id"]
    assert other[0] == 409


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"to": "ann@"}, "to", "invalid_address"),
        ({"from": "not an address"}, "from", "invalid_address"),
        ({"subject": "Hi\r\nBcc: all@example.com"}, "subject", "invalid_input"),
        ({"to": "ann@example.com\nBcc: all@example.com"}, "to", "invalid_input"),
        ({"text": " "}, "text", "invalid_input"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field(
    app: App, changes: dict[str, str], field: str, code: str
) -> None:
    status, body = await app.request("POST", "/v1/emails", json={**EMAIL, **changes},
                                     headers=app.api())  # fmt: skip
    assert status == 400, body
    assert body["error"]["code"] == code
    assert body["error"]["field"] == field
    assert app.service.email_summary().counts == {}


async def test_a_missing_field_unknown_email_and_missing_token_are_refused(app: App) -> None:
    no_subject = {k: v for k, v in EMAIL.items() if k != "subject"}
    status, body = await app.request("POST", "/v1/emails", json=no_subject, headers=app.api())
    assert status == 400
    assert "subject" in body["error"]["message"]
    assert (await app.request("GET", "/v1/emails/eml_nope", headers=app.api()))[0] == 404
    assert (await app.request("POST", "/v1/emails", json=EMAIL, headers=app.api(None)))[0] == 401


def test_the_email_routes_are_described() -> None:
    paths = OPENAPI["paths"]
    assert set(paths["/v1/emails"]) == {"post"}
    assert set(paths["/v1/emails/{email_id}"]) == {"get"}
    model = OPENAPI["components"]["schemas"]["NewEmail"]
    assert set(model["required"]) == {"from", "to", "subject", "text"}


# -- the control socket ------------------------------------------------------------------


async def test_the_socket_submits_and_shows_an_email(client: ControlClient) -> None:
    submitted = await client.call("email_submit", **EMAIL, priority="bulk")
    assert submitted["created"] is True
    assert submitted["priority"] == "bulk"

    async def sent() -> bool:
        shown = await client.call("email_show", id=submitted["id"])
        return bool(shown["status"] == EmailStatus.SENT)

    await wait_for(sent, within=10, what="the email sent")
    shown = await client.call("email_show", id=submitted["id"])
    assert shown["subject"] == "Your order"
    assert [e["status"] for e in shown["history"]] == ["Queued", "Sending", "Sent"]
    summary = await client.call("email_status")
    assert summary["counts"] == {"Sent": 1}
    assert summary["per_second"] == 10.0
    status = await client.call("status")
    assert status["emails"]["counts"] == {"Sent": 1}
    assert status["emails"]["relay"] == summary["relay"] == "simulator://"


async def test_the_socket_refuses_bad_input_and_unknown_ids(client: ControlClient) -> None:
    with pytest.raises(InvalidInput) as caught:
        await client.call("email_submit", **{**EMAIL, "subject": "a\nb"})
    assert caught.value.field == "subject"
    with pytest.raises(NotFound):
        await client.call("email_show", id="eml_nope")


async def test_the_socket_cancels_and_refuses_to_resend(client: ControlClient) -> None:
    # Ten a second on one relay: the last of 30 waits about three seconds for its slot.
    for n in range(30):
        last = await client.call("email_submit", **{**EMAIL, "to": f"c{n}@example.com"})
    canceled = await client.call("email_cancel", id=last["id"])
    assert canceled["status"] == "Canceled"
    with pytest.raises(Conflict):
        await client.call("email_resend", id=last["id"])  # only an Unconfirmed email
    shown = await client.call("email_show", id=last["id"])
    assert [e["status"] for e in shown["history"]] == ["Queued", "Canceled"]


# -- the command line --------------------------------------------------------------------


async def test_email_send_show_and_status(home: Path, service: Config, tmp_path: Path) -> None:
    html = tmp_path / "body.html"
    html.write_text("<p>Hello</p>", encoding="utf-8")
    sent = await run(home, "email", "send", "--from", "news@example.com", "--to",
                     "ann@example.com", "--subject", "Hello", "--text", "Hi Ann",
                     "--html", str(html), "--json")  # fmt: skip
    accepted = sent.json()
    assert accepted["status"] == "Queued"
    assert accepted["html"] is True

    async def shown_sent() -> bool:
        shown = await run(home, "email", "show", accepted["id"], "--json")
        return bool(shown.json()["status"] == "Sent")

    await wait_for(shown_sent, within=30, what="the email sent")
    human = await run(home, "email", "show", accepted["id"])
    assert human.code == 0
    assert f"{accepted['id']}  Sent" in human.out
    assert "the relay accepted it" in human.out
    status = await run(home, "email", "status")
    assert "relay simulator:// (10.0/s): Sent 1" in status.out
    overall = await run(home, "status")
    assert "email: Sent 1; queued 0, in flight 0, 10/s" in overall.out


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--to", "ann@"], "to"),
        (["--to", "ann@example.com", "--subject", "Hi\r\nBcc: all@example.com"], "subject"),
        (["--to", "ann@example.com", "--html", "/nonexistent/body.html"], "html"),
    ],
)
async def test_email_send_bad_input_exits_2_naming_the_field(
    home: Path, service: Config, args: list[str], field: str
) -> None:
    base = {"--from": "news@example.com", "--to": "x", "--subject": "Hi", "--text": "Hi"}
    given = dict(zip(args[::2], args[1::2], strict=True))
    argv = [part for key, value in {**base, **given}.items() for part in (key, value)]
    err = assert_clean_error(await run(home, "email", "send", *argv), 2)
    assert f"{field}: " in err


async def test_email_show_unknown_id_exits_1(home: Path, service: Config) -> None:
    assert "no email with id" in assert_clean_error(await run(home, "email", "show", "eml_x"), 1)
