"""Campaigns on the real service: ``dispatcher serve`` in a subprocess on SQLite, the
campaign created with the command line, ``kill -9`` in the middle of it, and the
simulator's own logs as the judge of "each contact exactly once" and of pacing; an
email campaign, created with the command line, judged by the SMTP relay it sends to."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dispatcher.control.client import call
from dispatcher.core.campaigns import sender_for
from tests.campaign_helpers import POOL, ny, write_contacts
from tests.helpers import Service, cli_json, gaps_by_number, send_log, wait_for
from tests.peers_smtp import smtp_relay
from tests.test_cli import dispatcher

CONFIG = """
[simulator]
latency = "5ms"
latency_jitter = "10ms"
receipt_delay = "50ms"
receipt_jitter = "300ms"
reorder_rate = 0.3
"""
DOMAIN = "mail.example.com"


def open_window() -> str:
    """A send window open now and for the next hours, in UTC (the contacts' tz column)."""
    now = datetime.now(UTC)
    return f"{now - timedelta(hours=1):%H:%M}-{now + timedelta(hours=3):%H:%M}"


def calls_log(home: Path) -> list[dict[str, Any]]:
    path = home / "simulator-calls.jsonl"
    if not path.exists():
        return []
    import json  # noqa: PLC0415 - only here

    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def shown(home: Path, campaign_id: str) -> dict[str, Any]:
    view: dict[str, Any] = await call(home / "dispatcher.sock", "campaign_show", id=campaign_id)
    return view


@pytest.mark.acceptance
@pytest.mark.timeout(180)
async def test_a_campaign_survives_kill_9_and_texts_each_contact_exactly_once(home: Path) -> None:
    config = home / "dispatcher.toml"
    config.write_text(CONFIG)
    phones = [ny(i) for i in range(20)]
    contacts = write_contacts(home / "contacts.csv", ("phone", "name", "tz"),
                              [(p, f"N{i}", "Etc/UTC") for i, p in enumerate(phones)])  # fmt: skip
    service = Service(home, config)
    await service.start()
    try:
        created = cli_json(
            home, "campaign", "create", "--name", "Spring", "--contacts", str(contacts),
            "--template", "Hi {name}, 20% off today", "--from", ",".join(POOL),
            "--tz-column", "tz", "--send-window", open_window(),
        )  # fmt: skip
        assert (created["accepted"], created["rejected"]) == (20, 0)
        cid = created["id"]

        async def sent_at_least(n: int) -> bool:
            return len(send_log(home)) >= n

        await wait_for(lambda: sent_at_least(4), what="4 sends")
        service.kill9()
        await service.start()
        await wait_for(lambda: sent_at_least(10), what="10 sends")
        service.kill9()
        await service.start()

        async def finished() -> bool:
            return bool((await shown(home, cid))["state"] == "finished")

        await wait_for(finished, within=120, what="the campaign to finish")
        view = await shown(home, cid)
    finally:
        assert service.stop() == 0

    records = send_log(home)
    assert Counter(r["to"] for r in records) == dict.fromkeys(phones, 1)
    assert len({r["message_id"] for r in records}) == 20
    for record in records:  # each contact from its own pool number
        assert record["from"] == sender_for(record["to"], POOL)
    gaps = gaps_by_number(records)
    assert set(gaps) == set(POOL)
    for number, spacing in gaps.items():
        assert min(spacing) >= 1.0, (number, min(spacing))
    assert view["contacts"] == {"sent": 20}
    assert (view["total"], view["done"]) == (20, 20)


@pytest.mark.acceptance
@pytest.mark.timeout(120)
async def test_a_voice_campaign_calls_each_contact_once(home: Path) -> None:
    config = home / "dispatcher.toml"
    config.write_text(CONFIG + '\n[[scripts.hello]]\nsay = "Hello from the spring campaign."\n')
    phones = [ny(i) for i in range(4)]
    contacts = write_contacts(home / "contacts.csv", ("phone", "tz"),
                              [(p, "Etc/UTC") for p in phones])  # fmt: skip
    service = Service(home, config)
    await service.start()
    try:
        created = cli_json(
            home, "campaign", "create", "--name", "Calls", "--contacts", str(contacts),
            "--channel", "voice", "--template", "hello", "--from", POOL[0],
            "--tz-column", "tz", "--send-window", open_window(),
        )  # fmt: skip
        cid = created["id"]

        async def finished() -> bool:
            return bool((await shown(home, cid))["state"] == "finished")

        await wait_for(finished, within=60, what="the campaign to finish")
        view = await shown(home, cid)
    finally:
        assert service.stop() == 0

    placed = calls_log(home)
    assert Counter(r["to"] for r in placed) == dict.fromkeys(phones, 1)
    assert send_log(home) == []
    assert min(gaps_by_number(placed)[POOL[0]]) >= 1.0
    assert view["channel"] == "voice"
    assert view["contacts"] == {"sent": 4}


@pytest.mark.acceptance
@pytest.mark.timeout(120)
async def test_an_import_cut_short_by_kill_9_fails_and_the_file_can_be_imported_again(
    home: Path,
) -> None:
    contacts = home / "contacts.csv"
    with contacts.open("w") as out:
        out.write("phone,name,tz\n")
        for i in range(60_000):
            out.write(f"+1212{200 + i // 10_000}{i % 10_000:04d},N{i},Etc/UTC\n")
    service = Service(home)
    await service.start()
    try:
        args = {"name": "Big", "contacts": str(contacts), "template": "Hi {name}",
                "from": POOL[0], "draft": True}  # fmt: skip
        created = await call(service.socket, "campaign_create", **args)

        async def reading() -> bool:
            return bool((await shown(home, created["id"]))["import"]["rows"] > 0)

        await wait_for(reading, what="the import to start")
        service.kill9()
        await service.start()

        async def failed() -> bool:
            return bool((await shown(home, created["id"]))["state"] == "failed")

        await wait_for(failed, within=30, what="the interrupted import to be marked failed")
        again = cli_json(
            home, "campaign", "create", "--name", "Big again", "--contacts", str(contacts),
            "--template", "Hi {name}", "--from", POOL[0], "--draft",
        )  # fmt: skip
        listed = await call(service.socket, "campaigns")
    finally:
        assert service.stop() == 0

    assert (again["accepted"], again["rejected"]) == (60_000, 0)
    assert [(c["id"], c["state"]) for c in listed["campaigns"]] == [
        (again["id"], "draft"), (created["id"], "failed"),
    ]  # fmt: skip
    assert send_log(home) == []


@pytest.mark.acceptance
@pytest.mark.timeout(120)
async def test_an_email_campaign_created_with_the_command_line_emails_each_contact_once(
    home: Path,
) -> None:
    people = [(f"person{i}@example.com", f"P{i}", "Etc/UTC") for i in range(6)]
    contacts = write_contacts(home / "people.csv", ("Email", "First Name", "tz"),
                              [*people, ("not an address", "X", "Etc/UTC")])  # fmt: skip
    html = home / "body.html"
    html.write_text('<p>Hi {{ First_Name }}, <a href="https://example.com/sale">the sale</a>.</p>')
    async with smtp_relay() as relay:
        env = {"DISPATCHER_EMAIL_RELAY_URL": relay.url, "DISPATCHER_EMAIL_DOMAIN": DOMAIN}
        service = Service(home, env=env)
        await service.start()
        try:
            run = await dispatcher(
                home, "campaign", "create", "--name", "Sale", "--channel", "email",
                "--contacts", str(contacts), "--from", "Acme Shop <shop@example.com>",
                "--subject", "{{ First_Name }}, the sale is on", "--text", "Hi {{ First_Name }}.",
                "--html", str(html), "--tz-column", "tz", "--send-window", open_window(), "--json",
            )  # fmt: skip
            created = run.json()

            async def finished() -> bool:
                return bool((await shown(home, created["id"]))["state"] == "finished")

            await wait_for(finished, within=60, what="the campaign to finish")
            view = await shown(home, created["id"])
        finally:
            assert await asyncio.to_thread(service.stop) == 0  # the relay answers its QUIT

    assert (created["accepted"], created["rejected"]) == (6, 1)
    assert (view["channel"], view["contacts"]) == ("email", {"sent": 6})
    got = {r.rcpt_tos[0]: r for r in relay.received}
    assert Counter(r.rcpt_tos[0] for r in relay.received) == {p[0]: 1 for p in people}
    for address, name, _ in people:
        message = got[address].message
        assert message["Subject"] == f"{name}, the sale is on"
        assert message["From"] == "Acme Shop <shop@example.com>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"  # bulk email
        assert got[address].mail_from.startswith("bounce+eml_")
        assert got[address].mail_from.endswith(f"@{DOMAIN}")
        parts = {p.get_content_type(): p.get_content() for p in message.walk()
                 if not p.is_multipart()}  # fmt: skip
        assert parts["text/plain"].strip() == f"Hi {name}."
        assert f"Hi {name}, " in parts["text/html"]
    assert send_log(home) == []  # no text went out
