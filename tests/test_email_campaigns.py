"""Email campaigns against a real SMTP relay (``aiosmtpd`` on a loopback port): each
contact gets exactly one email, filled with its row's fields, in its send window;
bad addresses are rejected with their line; pause, resume and cancel; a restart in the
middle sends nobody twice. Also the import's consent pre-filter on every channel, and
a voice link in an email counted as the email channel's Play."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from dispatcher.clock import FakeClock
from dispatcher.config import Config, EmailConfig
from dispatcher.core.campaigns import CampaignChannel, CampaignState, ContactState
from dispatcher.core.channel import Channel
from dispatcher.core.consent import ConsentSource
from dispatcher.core.emails import EmailStatus
from dispatcher.core.metrics import MetricsQuery
from dispatcher.core.scripts import parse_scripts
from dispatcher.engine.campaigns import CampaignSpec
from dispatcher.errors import InvalidInput
from dispatcher.store import Store, open_store
from dispatcher.store.memory import MemoryStore
from dispatcher.testing import running_service, wait_for
from tests.campaign_helpers import CARRIER, POOL, SCRIPTS, Harness, utc, write_contacts
from tests.peers_smtp import Relay, smtp_relay
from tests.test_campaign_cli import open_zone
from tests.test_email_engagement import engaging
from tests.test_voice_links import BROWSER

DOMAIN = "mail.example.com"
SHOP = "Acme Shop <shop@example.com>"
HEADER = ("Email", "First Name", "order", "tz")


@asynccontextmanager
async def serving(
    home: Path, relay: Relay, *, store: Store | None = None, start: datetime | None = None
) -> AsyncIterator[Harness]:
    """The service sending email to ``relay``, on a fake clock (default 2026-01-05 15:00
    UTC: 10:00 in New York, 07:00 in Los Angeles)."""
    config = Config(
        email=EmailConfig(relay_url=relay.url, domain=DOMAIN, per_second=20.0),
        scripts=parse_scripts(SCRIPTS, where="test"),
    )
    async with running_service(home, config=config, simulator=CARRIER, store=store,
                               clock=FakeClock(start)) as harness:  # fmt: skip
        yield Harness.of(harness)


async def create(h: Harness, contacts: Path, **options: Any) -> str:
    """An email campaign from ``contacts``, its import done; its id."""
    settings: dict[str, Any] = {
        "channel": CampaignChannel.EMAIL, "senders": [SHOP],
        "template": "Hi {{ First_Name }}, order {{ order }} ships today.",
        "subject": "Order {{ order }} for {{ First_Name }}",
        "html": "<p>Hi <b>{{ First_Name }}</b></p>", "tz_column": "tz", **options,
    }  # fmt: skip
    campaign = await h.create(contacts, **settings)
    return campaign.id


def rows(n: int, *, first: int = 0, tz: str = "America/New_York") -> list[list[str]]:
    return [[f"Person{i}@Example.com", f"Ann {i}", f"A-{i}", tz] for i in range(first, first + n)]


def by_recipient(relay: Relay) -> Counter[str]:
    return Counter(r.rcpt_tos[0] for r in relay.received)


async def until_finished(h: Harness, campaign_id: str) -> None:
    async def finished() -> bool:
        return await h.state(campaign_id) in (CampaignState.FINISHED, CampaignState.CANCELED)

    await h.advance_at_polls(finished, within=60, what=f"{campaign_id} finished")


def plain(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def rejects(path: str | None) -> list[list[str]]:
    assert path is not None
    with Path(path).open(encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))[1:]


# -- sending -----------------------------------------------------------------------------


async def test_each_contact_gets_one_email_with_its_fields(tmp_path: Path) -> None:
    async with smtp_relay() as relay, serving(tmp_path, relay) as h:
        contacts = write_contacts(tmp_path / "c.csv", HEADER, [
            *rows(3),
            ["not-an-address", "Bob", "B-1", "America/New_York"],
            ["person0@example.COM", "Twice", "A-0", "America/New_York"],
            ["eve@example.com", "Eve", "E-1", "Mars/Olympus"],
        ])  # fmt: skip
        campaign_id = await create(h, contacts)
        await until_finished(h, campaign_id)
        campaign = await h.desk.get(campaign_id)

        assert (campaign.accepted, campaign.rejected, campaign.duplicates) == (3, 2, 1)
        assert by_recipient(relay) == {f"Person{i}@example.com": 1 for i in range(3)}
        for received in relay.received:
            i = received.rcpt_tos[0].removeprefix("Person").partition("@")[0]
            message = received.message
            assert message["Subject"] == f"Order A-{i} for Ann {i}"
            assert plain(message).startswith(f"Hi Ann {i}, order A-{i} ships today.")
            html = message.get_body(("html",))
            assert html is not None
            assert f"<b>Ann {i}</b>" in str(html.get_content())
            assert message["List-Unsubscribe"] is not None  # bulk email
            assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        lines = {int(r[0]): r[1] for r in rejects(campaign.reject_file)}
        assert "not a valid email address" in lines[5]  # the header is line 1
        assert lines[6] == "duplicate of line 2"
        assert "Mars/Olympus" in lines[7]
        contacts_after = await h.contacts(campaign_id)
        assert {c.state for c in contacts_after} == {ContactState.SENT}
        emails = [await h.service.store.get_email(c.message_id or "") for c in contacts_after]
        assert all(e is not None and e.campaign_id == campaign_id for e in emails)
        assert all(e is not None and e.status is EmailStatus.SENT for e in emails)


async def test_a_field_the_file_lacks_is_refused_before_import(tmp_path: Path) -> None:
    async with smtp_relay() as relay, serving(tmp_path, relay) as h:
        contacts = write_contacts(tmp_path / "c.csv", HEADER, rows(1))
        with pytest.raises(InvalidInput, match="'coupon' is not given") as refused:
            await create(h, contacts, template="Your code: {{ coupon }}")
        assert "First_Name" in str(refused.value)
        assert "fields given: none" not in str(refused.value)  # the file's fields are named
        assert await h.service.store.list_campaigns(10) == []


async def test_pause_resume_and_cancel(tmp_path: Path) -> None:
    async with smtp_relay() as relay, serving(tmp_path, relay) as h:
        campaign_id = await create(h, write_contacts(tmp_path / "c.csv", HEADER, rows(40)))

        async def some_sent() -> bool:
            return len(relay.received) >= 2

        await h.advance_at_polls(some_sent, within=30, what="two emails")
        paused = await h.during(h.desk.pause(campaign_id))
        assert paused.campaign.state is CampaignState.PAUSED

        async def settled() -> bool:  # handed back, or (already being sent) sent
            return not (await h.view(campaign_id)).contacts.get(ContactState.QUEUED)

        await h.advance_at_polls(settled, within=30, what="no contact queued")
        held = len(relay.received)
        await h.clock.advance(10)
        assert len(relay.received) == held  # nothing leaves while paused

        await h.during(h.desk.resume(campaign_id))

        async def more_sent() -> bool:
            return len(relay.received) > held

        await h.advance_at_polls(more_sent, within=30, what="more emails")
        canceled = await h.during(h.desk.cancel(campaign_id))
        await until_finished(h, campaign_id)
        gone = len(relay.received)
        await h.clock.advance(10)
        contacts = await h.contacts(campaign_id)

    assert canceled.campaign.state is CampaignState.CANCELED
    assert held < len(relay.received) == gone < 40
    assert set(by_recipient(relay).values()) == {1}  # nobody twice
    states = Counter(c.state for c in contacts)
    assert states[ContactState.SENT] == gone
    assert states[ContactState.CANCELED] == 40 - gone


async def test_a_restart_in_the_middle_sends_nobody_twice(tmp_path: Path) -> None:
    store = MemoryStore()
    async with smtp_relay() as relay:
        async with serving(tmp_path, relay, store=store) as h:
            campaign_id = await create(h, write_contacts(tmp_path / "c.csv", HEADER, rows(10)))

            async def some_sent() -> bool:
                return len(relay.received) >= 3

            await h.advance_at_polls(some_sent, within=30, what="three emails")
        before = len(relay.received)
        async with serving(tmp_path, relay, store=store) as h:
            await until_finished(h, campaign_id)
            contacts = await h.contacts(campaign_id)
            emails = [await store.get_email(c.message_id or "") for c in contacts]

    assert before < 10
    assert set(by_recipient(relay).values()) == {1}  # nobody twice
    assert {c.state for c in contacts} == {ContactState.SENT}
    for contact, email in zip(contacts, emails, strict=True):
        assert email is not None
        if contact.phone not in by_recipient(relay):  # left mid-hand-over: never resent
            assert email.status is EmailStatus.UNCONFIRMED


async def test_each_contact_is_sent_in_its_own_window(tmp_path: Path) -> None:
    start = utc(2026, 1, 5, 15, 59, second=30)  # 10:59 in New York, 07:59 in Los Angeles
    async with smtp_relay() as relay, serving(tmp_path, relay, start=start) as h:
        contacts = write_contacts(tmp_path / "c.csv", HEADER, [
            *rows(2), *rows(2, first=2, tz="America/Los_Angeles"),
            ["utc@example.com", "U", "U-1", ""],  # the campaign's zone
        ])  # fmt: skip
        campaign_id = await create(h, contacts, send_window="08:00-21:00",
                                   time_zone="Asia/Tokyo")  # 00:59 there  # fmt: skip

        async def new_york_sent() -> bool:
            return len(relay.received) >= 2

        await h.advance_at_polls(new_york_sent, within=30, what="New York's emails")
        early = set(by_recipient(relay))
        held = (await h.view(campaign_id)).contacts.get(ContactState.PENDING)
        await h.clock.advance(40)  # 08:00 in Los Angeles

        async def los_angeles_sent() -> bool:
            return len(relay.received) >= 4

        await h.advance_at_polls(los_angeles_sent, within=30, what="Los Angeles' emails")
        by_line = {c.line: c for c in await h.contacts(campaign_id)}
        sent = {line: await h.service.store.get_email(c.message_id or "")
                for line, c in by_line.items() if c.message_id}  # fmt: skip

    assert early == {"Person0@example.com", "Person1@example.com"}
    assert held == 3
    assert len(relay.received) == 4  # Tokyo's window opens at 23:00 UTC
    assert by_line[6].state is ContactState.PENDING
    assert by_line[6].tz == "Asia/Tokyo"
    for line in (4, 5):
        email = sent[line]
        assert email is not None
        assert email.sent_at is not None
        assert email.sent_at >= utc(2026, 1, 5, 16)


# -- the import's consent pre-filter -----------------------------------------------------


async def test_the_import_skips_contacts_opted_out_of_the_campaigns_channel(
    tmp_path: Path,
) -> None:
    phones = ["+12125550001", "+12125550002", "+12125550003"]
    async with smtp_relay() as relay, serving(tmp_path, relay) as h:
        service = h.service
        await service.dnt_add(phones[0], added_by="contact", reason="replied STOP")
        await service.opt_out(phones[1], source=ConsentSource.OPERATOR, who="desk",
                              reason="asked on the phone", channels=[Channel.VOICE])  # fmt: skip
        await service.opt_out("person1@example.com", source=ConsentSource.COMPLAINT,
                              who="feedback loop", channels=[Channel.EMAIL])  # fmt: skip
        numbers = write_contacts(tmp_path / "n.csv", ("phone", "name"), [(p, "N") for p in phones])
        text = await h.create(numbers, senders=[POOL[0]], draft=True)
        voice = await h.create(numbers, senders=[POOL[0]], channel=CampaignChannel.VOICE,
                               template="reminder", draft=True)  # fmt: skip
        email = await h.desk.get(await create(
            h, write_contacts(tmp_path / "e.csv", HEADER, rows(3)), draft=True
        ))  # fmt: skip
        text, voice = await h.desk.get(text.id), await h.desk.get(voice.id)
        kept = {c.id: {k.phone for k in await h.contacts(c.id)} for c in (text, voice, email)}

    assert (text.suppressed, voice.suppressed, email.suppressed) == (1, 1, 1)
    assert kept[text.id] == {phones[1], phones[2]}
    assert kept[voice.id] == {phones[0], phones[2]}  # a text opt-out does not stop a call
    assert kept[email.id] == {"Person0@example.com", "Person2@example.com"}
    assert rejects(text.reject_file) == [["2", "on the Do Not Text list", phones[0], "N"]]
    ((line, why, *_),) = rejects(voice.reject_file)
    assert (line, why.partition(":")[0]) == ("3", "on the Do Not Call list")
    assert "asked on the phone" in why
    ((line, why, *_),) = rejects(email.reject_file)
    assert line == "3"
    assert why.startswith("suppressed for email: person1@example.com opted out of email")


# -- a voice link in an email --------------------------------------------------------------


async def test_a_voice_link_played_from_an_email_counts_as_email_play(tmp_path: Path) -> None:
    async with engaging(tmp_path, MemoryStore()) as engaged:
        service = engaged.service
        contacts = write_contacts(
            tmp_path / "c.csv", ("email", "name"), [("ann@example.com", "Ann")]
        )
        campaign = await service.create_campaign(CampaignSpec(
            name="listen", contacts=contacts, channel=CampaignChannel.EMAIL, senders=[SHOP],
            subject="A message for {{ name }}", template="Listen, {{ name }}: {{ voice_link }}",
            html='<p><a href="{{ voice_link }}">Listen</a></p>',
            voice_message="Your appointment is tomorrow at 10.",
            time_zone=open_zone(),  # its window open now, whatever the hour
        ))  # fmt: skip
        await wait_for(lambda: _got(engaged.relay), within=20, what="the campaign's email")
        text = plain(engaged.relay.received[0].message)
        tracked = text.split(": ", 1)[1].strip()  # a tracked link: the click leads on
        async with engaged.app.http.get(tracked, headers={"User-Agent": BROWSER},
                                        allow_redirects=False) as response:  # fmt: skip
            link = response.headers.get("Location", tracked)
        assert link.startswith(f"{engaged.app.url}/v/v")
        async with engaged.app.http.post(f"{link}/play",
                                         headers={"User-Agent": BROWSER}) as response:  # fmt: skip
            assert response.status == 204
        by_campaign = await service.metrics(MetricsQuery(campaign_id=campaign.id))
        overall = await service.metrics()

    assert by_campaign.email["Play"] == 1
    assert overall.text["Play"] == 0  # the email's play, not a text's
    assert by_campaign.email["Sent"] == 1


async def _got(relay: Relay) -> bool:
    return bool(relay.received)


async def test_sqlite_keeps_an_email_campaigns_parts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    async with smtp_relay() as relay, serving(tmp_path, relay, store=open_store(url)) as h:
        campaign_id = await create(h, write_contacts(tmp_path / "c.csv", HEADER, rows(2)))
        await until_finished(h, campaign_id)
    async with open_store(url) as store:
        campaign = await store.get_campaign(campaign_id)
        contacts = await store.contacts_in(campaign_id, list(ContactState), 10)

    assert campaign is not None
    assert campaign.channel is CampaignChannel.EMAIL
    assert campaign.subject == "Order {{ order }} for {{ First_Name }}"
    assert campaign.html == "<p>Hi <b>{{ First_Name }}</b></p>"
    assert [c.phone for c in contacts] == ["Person0@example.com", "Person1@example.com"]
    assert set(by_recipient(relay).values()) == {1}
