"""The campaign commands a marketer runs before and after sending, as they run them:
``campaign create`` (its preview of the first texts), ``campaign preview``,
``campaign test`` and ``campaign contacts`` (``--state``, ``--csv``), in subprocesses
against a service in the test's own event loop."""

from __future__ import annotations

import asyncio
import csv
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from dispatcher.config import Config
from dispatcher.control.client import ControlClient
from tests import test_cli
from tests.campaign_helpers import write_contacts
from tests.helpers import wait_for
from tests.test_cli import assert_clean_error, child_env, dispatcher

service = test_cli.service  # the fixture: the service, in the test's own event loop
POOL = "+15550000201,+15550000202"
ROWS = [("+12125550001", "Ann", "May 4"), ("(212) 555-0002", "", "May 5"),
        ("+12125550003", "Cy", "May 6"), ("not a number", "Di", "May 7")]  # fmt: skip


async def create(home: Path, *options: str) -> str:
    path = write_contacts(home / "contacts.csv", ("Phone", "First Name", "Date"), ROWS)
    run = await dispatcher(
        home, "campaign", "create", "--name", "Spring", "--contacts", str(path),
        "--template", "Hi {First Name|there}, see you on {Date}.", "--from", POOL, *options,
    )  # fmt: skip
    assert run.code == 0, run.err
    return run.out


async def test_create_shows_the_first_texts_and_preview_shows_more(
    home: Path, service: Config
) -> None:
    shown = await create(home, "--draft")
    campaign_id = shown.split()[0]
    assert "3 accepted, 1 rejected" in shown
    assert "the first 3 as they will be sent:" in shown
    assert "    line 2: +155500002" in shown
    assert "      Hi Ann, see you on May 4." in shown
    assert "      Hi there, see you on May 5." in shown

    preview = (await dispatcher(home, "campaign", "preview", campaign_id, "--limit", "2",
                                "--json")).json()  # fmt: skip
    assert [(t["line"], t["to"], t["body"], t["segments"]) for t in preview["texts"]] == [
        (2, "+12125550001", "Hi Ann, see you on May 4.", 1),
        (3, "+12125550002", "Hi there, see you on May 5.", 1),
    ]
    unknown = await dispatcher(home, "campaign", "preview", "cmp_none")
    assert "cmp_none" in assert_clean_error(unknown, 1)


async def test_a_test_send_goes_to_the_test_number_outside_the_campaign(
    home: Path, service: Config
) -> None:
    campaign_id = (await create(home, "--draft")).split()[0]
    run = await dispatcher(home, "campaign", "test", campaign_id, "--to", "555-010-0099",
                           "--line", "3", "--json")  # fmt: skip
    sent = run.json()
    assert (sent["to"], sent["line"], sent["body"]) == (
        "+15550100099", 3, "Hi there, see you on May 5.",
    )  # fmt: skip
    async with ControlClient(service.socket_path) as client:
        stored = await client.call("message", id=sent["id"])
        shown = await client.call("campaign_show", id=campaign_id)
    assert stored["body"] == sent["body"]
    assert stored["from"] in POOL.split(",")
    assert shown["contacts"] == {"pending": 3}  # no contact moved, none added
    human = await dispatcher(home, "campaign", "test", campaign_id, "--to", "+15550100098")
    assert "in none of the campaign's counts" in human.out
    missing = await dispatcher(home, "campaign", "test", campaign_id, "--to", "+15550100098",
                               "--line", "99")  # fmt: skip
    assert "no contact on line 99" in assert_clean_error(missing, 1)


async def test_contacts_lists_each_contact_with_its_text(home: Path, service: Config) -> None:
    # Open all day but a minute (a window is never the whole day), whatever the time.
    campaign_id = (await create(home, "--send-window", "00:00-23:59")).split()[0]
    async with ControlClient(service.socket_path) as client:

        async def settled() -> bool:
            shown = await client.call("campaign_show", id=campaign_id)
            return bool(shown["state"] == "finished")

        await wait_for(settled, within=90, what="the campaign to finish")

    listed = await dispatcher(home, "campaign", "contacts", campaign_id, "--csv")
    assert listed.code == 0, listed.err
    rows = list(csv.DictReader(listed.out.splitlines()))
    assert [(r["line"], r["phone"], r["state"]) for r in rows] == [
        ("2", "+12125550001", "sent"), ("3", "+12125550002", "sent"),
        ("4", "+12125550003", "sent"),
    ]  # fmt: skip
    for row in rows:
        assert row["status"] in {"Sent", "Delivered"}
        assert row["id"].startswith("msg_")
        assert row["accepted_at"] <= row["sent_at"] <= row["updated_at"]
    human = await dispatcher(home, "campaign", "contacts", campaign_id, "--state", "sent")
    assert human.out.splitlines()[1].split()[:3] == ["2", "+12125550001", "sent"]
    none = await dispatcher(home, "campaign", "contacts", campaign_id, "--state", "expired")
    assert (none.code, none.out) == (1, "")
    assert none.err == f"dispatcher: campaign {campaign_id} has no contact in expired\n"


def shut_zone() -> str:
    """A time zone where the default window (08:00-21:00) is shut now, and for an hour."""
    return zone_at({21, 22, 23, 0, 1, 2, 3, 4, 5, 6})


def open_zone() -> str:
    """A time zone where the default window (08:00-21:00) is open now, and for hours."""
    return zone_at({9, 10, 11, 12, 13, 14})


def zone_at(hours: set[int]) -> str:
    """A time zone whose hour is now one of ``hours``."""
    now = datetime.now(UTC)
    for offset in range(-12, 15):
        if (now + timedelta(hours=offset)).hour in hours:
            return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"  # Etc/GMT-5 is UTC+5
    raise AssertionError(f"no time zone is at an hour of {sorted(hours)} now")


async def test_show_says_how_many_contacts_are_held_and_until_when(
    home: Path, service: Config
) -> None:
    zone = shut_zone()
    path = write_contacts(home / "night.csv", ("phone", "name", "tz"),
                          [("+12125550001", "Ann", zone)])  # fmt: skip
    run = await dispatcher(home, "campaign", "create", "--name", "Night", "--contacts",
                           str(path), "--template", "Hi {name}", "--from", POOL,
                           "--tz-column", "tz", "--json")  # fmt: skip
    campaign_id = run.json()["id"]
    async with ControlClient(service.socket_path) as client:

        async def held() -> bool:
            return bool((await client.call("campaign_show", id=campaign_id))["held"] == 1)

        await wait_for(held, within=30, what="the contact to be seen held")
        shown = await client.call("campaign_show", id=campaign_id)
    opens = datetime.fromisoformat(shown["held_until"])
    assert opens > datetime.now(UTC)
    assert opens.astimezone(ZoneInfo(zone)).strftime("%H:%M") == "08:00"
    human = await dispatcher(home, "campaign", "show", campaign_id)
    waits = f"held: 1 contact waits for the window to open (the first at {shown['held_until']})"
    assert f"  {waits}" in human.out.splitlines()


async def test_contacts_are_listed_a_page_at_a_time(home: Path, service: Config) -> None:
    campaign_id = (await create(home, "--draft")).split()[0]
    first = (await dispatcher(home, "campaign", "contacts", campaign_id, "--limit", "2",
                              "--json")).json()  # fmt: skip
    assert [c["line"] for c in first["contacts"]] == [2, 3]
    assert first["next_cursor"]
    rest = (await dispatcher(home, "campaign", "contacts", campaign_id, "--cursor",
                             first["next_cursor"], "--json")).json()  # fmt: skip
    assert ([c["line"] for c in rest["contacts"]], rest["next_cursor"]) == ([4], None)
    human = await dispatcher(home, "campaign", "contacts", campaign_id, "--limit", "2")
    assert [line.split()[0] for line in human.out.splitlines()[1:]] == ["2", "3"]
    assert human.err == f"dispatcher: more contacts follow: --cursor {first['next_cursor']}\n"
    every = await dispatcher(home, "campaign", "contacts", campaign_id, "--csv")
    assert [r["line"] for r in csv.DictReader(every.out.splitlines())] == ["2", "3", "4"]
    assert every.err == ""
    refused = await dispatcher(home, "campaign", "contacts", campaign_id, "--limit", "0")
    assert "--limit" in assert_clean_error(refused, 2)
    stale = await dispatcher(home, "campaign", "contacts", campaign_id, "--cursor", "abc")
    assert "cursor" in assert_clean_error(stale, 2)


EXPORT = 100_000
MEASURED = """
import resource, runpy, sys
sys.argv = ["dispatcher", *sys.argv[1:]]
try:
    runpy.run_module("dispatcher", run_name="__main__", alter_sys=True)
finally:
    print(f"maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr)
"""


async def measured(home: Path, *args: str) -> tuple[bytes, int]:
    """Run ``dispatcher ARGS``: what it printed, and its peak resident memory in KiB."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", MEASURED, "--home", str(home), *args, env=child_env(), cwd=home,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode == 0, err.decode()
    return out, int(err.decode().rsplit("maxrss ", 1)[1])


async def test_an_export_of_every_contact_streams_page_by_page(home: Path, service: Config) -> None:
    path = write_contacts(home / "big.csv", ("phone", "name"),
                          ((f"+1212{n:07d}", f"Name {n}") for n in range(EXPORT)))  # fmt: skip
    run = await dispatcher(home, "campaign", "create", "--name", "Big", "--contacts",
                           str(path), "--template", "Hi {name}", "--from", POOL, "--draft",
                           "--json")  # fmt: skip
    created = run.json()
    assert created["accepted"] == EXPORT, created
    exported, peak = await measured(home, "campaign", "contacts", created["id"], "--csv")
    rows = exported.decode().splitlines()
    assert len(rows) == EXPORT + 1  # the header, then every contact once, in file order
    assert rows[1].startswith("2,+12120000000,")
    assert rows[-1].startswith(f"{EXPORT + 1},+1212{EXPORT - 1:07d},")
    _, small = await measured(home, "campaign", "contacts", created["id"], "--csv",
                              "--limit", "10")  # fmt: skip
    # A page at a time: the whole export holds about as much as ten contacts do (the
    # 100,000 rows as dictionaries would take over 100 MiB).
    assert peak - small < 40 * 1024, (peak, small)
