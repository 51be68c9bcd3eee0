"""A campaign's outlook: its projected finish follows each contact's send window and
is worked out again as the campaign runs; the contacts held outside their window,
and until when; and contacts whose time zones never share an open hour, which end
reported instead of keeping the campaign running forever. On the fake clock."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from dispatcher.core.campaigns import (
    CampaignState,
    ContactState,
    outlook,
    parse_window,
)
from dispatcher.engine.campaigns import LOOK_EVERY
from tests.campaign_helpers import POOL, la, ny, running, utc

NY, LA = "America/New_York", "America/Los_Angeles"
WINDOW = parse_window("08:00-21:00")


def one_per_second(_: str) -> float:
    return 1.0


def test_the_finish_waits_for_the_window_to_open_again() -> None:
    """20:00 in New York, 7,200 texts at one a second: an hour tonight (the window
    closes at 21:00, 02:00 UTC), the second hour from 08:00 tomorrow (13:00 UTC)."""
    now = utc(2026, 1, 6, 1)
    seen = outlook({(POOL[0], NY): (7200, 7200.0)}, window=WINDOW, now=now, start=now,
                   rate=one_per_second)  # fmt: skip
    assert seen.finish == utc(2026, 1, 6, 14)
    assert (seen.held, seen.held_until) == (0, None)


def test_held_contacts_and_when_the_first_window_opens() -> None:
    now = utc(2026, 1, 5, 15)  # 10:00 in New York, 07:00 in Los Angeles
    waiting = {(POOL[0], NY): (10, 10.0), (POOL[0], LA): (5, 5.0), (POOL[1], LA): (3, 6.0)}
    seen = outlook(waiting, window=WINDOW, now=now, start=now, rate=one_per_second)
    assert (seen.held, seen.held_until) == (8, utc(2026, 1, 5, 16))
    # Each number sends New York first, then Los Angeles from 08:00 there.
    assert seen.finish == utc(2026, 1, 5, 16) + timedelta(seconds=6)


def test_a_group_whose_zones_never_share_an_open_hour_is_left_out() -> None:
    morning = parse_window("08:00-12:00")  # Tokyo's morning is New York's evening
    now = utc(2026, 1, 5, 15)
    assert not morning.ever_open("America/New_York|Asia/Tokyo", now)
    assert morning.ever_open(NY, now)
    seen = outlook({(POOL[0], "America/New_York|Asia/Tokyo"): (4, 4.0)}, window=morning,
                   now=now, start=now, rate=one_per_second)  # fmt: skip
    assert seen == type(seen)()


async def test_show_says_how_many_are_held_and_until_when(tmp_path: Path) -> None:
    async with running(tmp_path) as h:  # 10:00 in New York, 07:00 in Los Angeles
        path = h.contacts_file([(ny(1), "Ann"), (la(1), "Bo"), (la(2), "Cy")])
        campaign = await h.create(path, senders=POOL[:1])
        assert campaign.state is CampaignState.IMPORTING
        stored = await h.desk.get(campaign.id)
        # At import: New York now, Los Angeles from 08:00 there (16:00 UTC), 2 s more.
        assert stored.projected_finish == utc(2026, 1, 5, 16, second=2)
        await h.until_sent(1)
        await h.clock.advance(LOOK_EVERY + 1)
        view = await h.view(campaign.id)
        assert view.outlook is not None
        assert (view.outlook.held, view.outlook.held_until) == (2, utc(2026, 1, 5, 16))
        await h.until_state(campaign.id, CampaignState.FINISHED, step=30, max_steps=400)
        sent = h.sends()

    assert [s.recipient for s in sent] == [ny(1), la(1), la(2)]
    assert sent[1].at >= utc(2026, 1, 5, 16)


async def test_the_projected_finish_is_worked_out_again_as_the_campaign_runs(
    tmp_path: Path,
) -> None:
    """The pool number is paused: nothing is sent, and the projection moves on with the
    clock instead of staying where the import put it."""
    async with running(tmp_path) as h:
        await h.service.pause(POOL[0])
        path = h.contacts_file([(ny(i), f"N{i}") for i in range(3)])
        campaign = await h.create(path, senders=POOL[:1])
        first = (await h.desk.get(campaign.id)).projected_finish
        assert first is not None
        await h.clock.advance(600)
        later = (await h.desk.get(campaign.id)).projected_finish
        now = h.now()

    assert first <= utc(2026, 1, 5, 15, second=3)
    assert later is not None
    assert now - timedelta(seconds=LOOK_EVERY + 1) <= later - timedelta(seconds=3) <= now


async def test_contacts_whose_zones_never_share_an_open_hour_end_and_are_reported(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as h:  # 10:00 in New York: Tokyo's midnight
        path = h.contacts_file(
            [(ny(1), "Ann", ""), (ny(2), "Bo", "America/New_York|Asia/Tokyo"), (ny(3), "Cy", "")],
            header=("phone", "name", "tz"),
        )
        campaign = await h.create(path, tz_column="tz", send_window="08:00-12:00")
        await h.until_state(campaign.id, CampaignState.FINISHED, step=1, max_steps=120)
        view = await h.view(campaign.id)
        contacts = {c.phone: c.state for c in await h.contacts(campaign.id)}

    assert view.contacts == {ContactState.SENT: 2, ContactState.NO_WINDOW: 1}
    assert view.settled == 3
    assert contacts[ny(2)] is ContactState.NO_WINDOW
    assert {s.recipient for s in h.sends()} == {ny(1), ny(3)}


async def test_a_campaign_of_contacts_with_no_open_hour_only_finishes(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        path = h.contacts_file([(ny(1), "Ann", "America/New_York|Asia/Tokyo")],
                               header=("phone", "name", "tz"))  # fmt: skip
        campaign = await h.create(path, tz_column="tz", send_window="08:00-12:00")
        await h.until_state(campaign.id, CampaignState.FINISHED, step=1, max_steps=120)
        view = await h.view(campaign.id)

    assert view.contacts == {ContactState.NO_WINDOW: 1}
    assert h.sends() == []
