"""Each email's own tracking switches, as a user gives them: ``track_opens`` and
``track_clicks`` on ``POST /v1/emails``, on an email campaign over HTTP, and
``--[no-]track-opens`` / ``--[no-]track-clicks`` of ``dispatcher email send`` and
``campaign create`` (through the control socket) override the ``[email]`` switches for
those emails, as the message that reaches a real ``aiosmtpd`` relay shows, after a
restart too; a campaign that sends no email refuses them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from dispatcher.control.client import call
from dispatcher.store.memory import MemoryStore
from tests.campaign_helpers import write_contacts
from tests.helpers import Service, free_port, wait_for
from tests.peers_smtp import Relay, smtp_relay
from tests.test_campaign_acceptance import open_window
from tests.test_campaign_cli import open_zone
from tests.test_cli import dispatcher
from tests.test_email_engagement import HTML, Engaged, Sent, engaging
from tests.test_http_campaigns import SALE, post_json, upload

LINK = "The sale is on: https://shop.example.com/sale"
EMAIL: dict[str, Any] = {
    "from": "Acme Shop <shop@example.com>", "to": "ann@example.com", "subject": "The sale",
    "text": LINK, "html": HTML, "priority": "bulk",
}  # fmt: skip


async def received(relay: Relay, count: int) -> list[Sent]:
    """The first ``count`` messages the relay took, in order (waited for)."""

    async def arrived() -> bool:
        return len(relay.received) >= count

    await wait_for(arrived, within=20, what=f"{count} emails at the relay")
    return [Sent(email_id="", message=r.message) for r in relay.received[:count]]


def tracked(sent: Sent) -> tuple[int, int, int]:
    """The pixels of its HTML part, the tracked links of its HTML part and of its text
    part."""
    return len(sent.paths("o")), len(sent.paths("c")), len(sent.paths("c", part=sent.text))


async def post_email(engaged: Engaged, **switches: bool | None) -> dict[str, Any]:
    app = engaged.app
    status, accepted = await app.request("POST", "/v1/emails", json={**EMAIL, **switches},
                                         headers=app.api())  # fmt: skip
    assert status == 201, accepted
    return dict(accepted)


async def test_an_email_s_own_switches_override_the_configuration_s(tmp_path: Path) -> None:
    async with engaging(tmp_path / "on", MemoryStore()) as on:  # both switches on
        ids = [(await post_email(on, **s))["id"] for s in (
            {"track_opens": False}, {"track_clicks": False},
            {"track_opens": False, "track_clicks": False}, {})]  # fmt: skip
        sent = await received(on.relay, 4)
        shown = [await on.app.request("GET", f"/v1/emails/{i}", headers=on.app.api())
                 for i in ids]  # fmt: skip
    assert [tracked(s) for s in sent] == [(0, 2, 1), (1, 0, 0), (0, 0, 0), (1, 2, 1)]
    assert sent[2].html == HTML  # as given: no pixel, its links as written
    assert sent[2].text == LINK
    assert all(s.message["List-Unsubscribe"] for s in sent)  # not tracking: always there
    assert [(b["track_opens"], b["track_clicks"]) for _, b in shown] == [
        (False, None), (None, False), (False, False), (None, None)]  # fmt: skip

    async with engaging(tmp_path / "off", MemoryStore(), track_opens=False,
                        track_clicks=False) as off:  # fmt: skip
        await post_email(off, track_opens=True, track_clicks=True)
        await post_email(off, track_clicks=True)
        await post_email(off)
        sent = await received(off.relay, 3)
    assert [tracked(s) for s in sent] == [(1, 2, 1), (0, 2, 1), (0, 0, 0)]


async def test_the_switches_are_part_of_an_idempotent_submission(tmp_path: Path) -> None:
    async with engaging(tmp_path, MemoryStore()) as on:
        app = on.app
        headers = {**app.api(), "Idempotency-Key": "order-7"}
        body = {**EMAIL, "track_opens": False}
        first = await app.request("POST", "/v1/emails", json=body, headers=headers)
        again = await app.request("POST", "/v1/emails", json=body, headers=headers)
        other = await app.request("POST", "/v1/emails", json=EMAIL, headers=headers)
        bad = await app.request("POST", "/v1/emails", json={**EMAIL, "track_opens": "no"},
                                headers=app.api())  # fmt: skip
    assert (first[0], again[0], again[1]["id"]) == (201, 200, first[1]["id"])
    assert other[0] == 409  # the same key, without the switch: another email
    assert (bad[0], bad[1]["error"]["field"]) == (400, "track_opens")


async def test_an_email_campaign_over_http_takes_the_switches_for_its_emails(
    tmp_path: Path,
) -> None:
    async with engaging(tmp_path, MemoryStore()) as on:
        zone = open_zone()
        contacts = [{"email": f"p{i}@example.com", "fields": {"First Name": f"P{i}"}}
                    for i in range(2)]  # fmt: skip
        sale = {**SALE, "template": f"Hi {{{{ First_Name }}}}. {LINK}", "html": HTML,
                "time_zone": zone}  # fmt: skip
        status, created = await post_json(on.app, {**sale, "track_clicks": False,
                                                   "contacts": contacts})  # fmt: skip
        assert status == 201, created
        sent = await received(on.relay, 2)
        status, text = await post_json(on.app, {
            "name": "texts", "template": "Hi", "from": "+15550000001", "track_opens": False,
            "contacts": [{"phone": "+12125550001"}]})  # fmt: skip
    assert (created["track_opens"], created["track_clicks"]) == (None, False)
    assert [tracked(s) for s in sent] == [(1, 0, 0)] * 2
    assert sorted(s.message["To"] for s in sent) == ["p0@example.com", "p1@example.com"]
    assert (status, text["error"]["field"]) == (400, "track_opens")
    assert "only an email campaign's emails are tracked" in text["error"]["message"]


async def test_an_email_campaign_from_a_csv_body_takes_the_switches_as_query_parameters(
    tmp_path: Path,
) -> None:
    async with engaging(tmp_path, MemoryStore()) as on:
        sale = {**SALE, "template": f"Hi {{{{ First_Name }}}}. {LINK}", "html": HTML,
                "time_zone": open_zone(), "track_opens": "false",
                "track_clicks": "true"}  # fmt: skip
        csv = b"email,First Name\np0@example.com,P0\n"
        status, created = await upload(on.app, sale, csv)
        assert status == 201, created
        (sent,) = await received(on.relay, 1)
        bad = await upload(on.app, {**sale, "track_opens": "no"}, csv)
    assert (created["track_opens"], created["track_clicks"]) == (False, True)
    assert tracked(sent) == (0, 2, 1)
    assert (bad[0], bad[1]["error"]["field"]) == (400, "track_opens")


# -- the command line, the socket, and a restart -----------------------------------------


async def retried(home: Path, email_id: str) -> bool:
    """The email was refused (the relay is down) and waits, Queued, to be retried."""
    shown = await call(home / "dispatcher.sock", "email_show", id=email_id)
    return any(e["reason"] == "retry" for e in shown["history"])


@pytest.mark.acceptance
@pytest.mark.timeout(180)
async def test_switches_given_on_the_command_line_are_kept_across_a_restart(home: Path) -> None:
    html = home / "body.html"
    html.write_text(HTML)
    people = write_contacts(home / "people.csv", ("email", "tz"), [("p0@example.com", "Etc/UTC")])
    down = {"DISPATCHER_EMAIL_RELAY_URL": f"smtp://127.0.0.1:{free_port()}",  # nobody listens
            "DISPATCHER_EMAIL_DOMAIN": "mail.example.com"}  # fmt: skip
    service = Service(home, env=down)
    await service.start()
    try:
        one = (await dispatcher(
            home, "email", "send", "--from", "shop@example.com", "--to", "ann@example.com",
            "--subject", "The sale", "--text", LINK, "--html", str(html), "--priority", "bulk",
            "--no-track-opens", "--json",
        )).json()  # fmt: skip
        created = (await dispatcher(
            home, "campaign", "create", "--name", "Sale", "--channel", "email", "--contacts",
            str(people), "--from", "shop@example.com", "--subject", "The sale", "--text", LINK,
            "--html", str(html), "--tz-column", "tz", "--send-window", open_window(),
            "--no-track-clicks", "--json",
        )).json()  # fmt: skip

        async def both_queued() -> bool:  # the campaign's behind the first, on the relay
            page = await call(service.socket, "campaign_contacts", id=created["id"])
            return any(c["id"] for c in page["contacts"]) and await retried(home, one["id"])

        await wait_for(both_queued, what="both emails queued, the first refused by the relay")
    finally:
        assert await asyncio.to_thread(service.stop) == 0
    async with smtp_relay() as relay:
        service = Service(home, env={**down, "DISPATCHER_EMAIL_RELAY_URL": relay.url})
        await service.start()
        try:
            sent = {s.message["To"]: s for s in await received(relay, 2)}
            shown = (await dispatcher(home, "email", "show", one["id"], "--json")).json()
            human = (await dispatcher(home, "email", "show", one["id"])).out
            campaign = (await dispatcher(home, "campaign", "show", created["id"], "--json")).json()
        finally:
            assert await asyncio.to_thread(service.stop) == 0
    assert (one["track_opens"], one["track_clicks"]) == (False, None)
    assert (shown["status"], shown["track_opens"], shown["track_clicks"]) == ("Sent", False, None)
    assert "its own tracking: opens off (the rest as [email] says)" in human
    assert (campaign["track_opens"], campaign["track_clicks"]) == (None, False)
    assert tracked(sent["ann@example.com"]) == (0, 2, 1)  # no pixel, the links tracked
    assert tracked(sent["p0@example.com"]) == (1, 0, 0)  # the pixel, the links as written
