"""Voice links: ``{voice_link}`` in a campaign's template gives each contact a page on
the HTTP app that plays the campaign's message; each play counts as text Play."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.campaign_desk import CampaignSpec
from dispatcher.campaigns import ContactState
from dispatcher.demo import demo_window
from dispatcher.errors import InvalidInput
from tests.helpers import wait_for
from tests.peers import App

CSV = "phone,first_name,tz\n+15550300001,Ana,UTC\n"


async def test_a_voice_link_plays_the_message_and_counts_as_play(app: App, home: Path) -> None:
    contacts = home / "contacts.csv"
    contacts.write_text(CSV)
    service = app.service
    campaign = await service.campaigns.create(CampaignSpec(
        name="links", contacts=contacts, template="Hi {first_name}, listen: {voice_link}",
        senders=["+15550000201"], send_window=demo_window(service.clock.now().wall),
        tz_column="tz", voice_message="Your appointment is tomorrow at 10 <b>sharp</b>.",
    ))  # fmt: skip

    async def queued() -> bool:
        view = await service.campaigns.view(campaign.id)
        return bool(view.contacts.get(ContactState.QUEUED) or view.contacts.get(ContactState.SENT))

    await wait_for(queued, what="the contact's text")
    [message] = await service.find("+15550300001")
    link = message.body.split("listen: ")[1]
    assert link.startswith(f"{app.url}/v/v")
    async with app.http.get(link) as response:
        page = await response.text()
        assert response.status == 200
    assert "Your appointment is tomorrow at 10 &lt;b&gt;sharp&lt;/b&gt;." in page
    assert "http" not in page.split("<body>")[1]  # nothing is fetched
    async with app.http.get(f"{app.url}/v/vnope") as response:
        assert response.status == 404
    totals = await service.metrics()
    assert totals.text["Play"] == 1


async def test_a_voice_link_without_a_message_is_refused(app: App, home: Path) -> None:
    contacts = home / "contacts.csv"
    contacts.write_text(CSV)
    with pytest.raises(InvalidInput, match="--voice-message") as info:
        await app.service.campaigns.create(CampaignSpec(
            name="links", contacts=contacts, template="Listen: {voice_link}",
            senders=["+15550000201"],
        ))  # fmt: skip
    assert info.value.field == "voice_message"
    assert await app.service.campaigns.list() == []
