"""Bulk campaigns: the pure part (templates, send windows across time zones and
daylight-saving changes, the sender pool, the contacts file read row by row), the
import through the service (counts, rejects, normalisation, a 100,000-row file into
SQLite), the desk on a fake clock (exactly once across pause, resume and cancel, quiet
hours, progress, voice) and the ``dispatcher campaign`` command line.

The simulator's send and call logs are the ground truth of what left, when, and from
which number.
"""

from __future__ import annotations

import asyncio
import csv
import gc
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from dispatcher.channels import SendRequest
from dispatcher.channels.simulator import Simulator
from dispatcher.config import load_config
from dispatcher.control.server import ControlServer
from dispatcher.core.campaigns import (
    Campaign,
    CampaignChannel,
    CampaignState,
    Contact,
    ContactState,
    CsvReader,
    OutsideWindow,
    check_zone,
    parse_template,
    parse_window,
    sender_for,
    zones_of,
)
from dispatcher.core.model import Reason, TextStatus
from dispatcher.engine import campaign_import
from dispatcher.engine.campaigns import CampaignSpec
from dispatcher.errors import ConfigError, Conflict, InvalidInput, NotFound, ProviderError
from dispatcher.service import Dispatcher, TextRequest
from dispatcher.store import Store, open_store
from dispatcher.store.memory import MemoryStore
from tests.campaign_helpers import (
    POOL,
    WAITING,
    Harness,
    Sent,
    campaigns_config,
    la,
    min_gap_by_sender,
    ny,
    per_recipient,
    running,
    utc,
    write_contacts,
)
from tests.helpers import send_log, wait_for
from tests.test_cli import Run, assert_clean_error, dispatcher

NY = "America/New_York"
LA = "America/Los_Angeles"
BOTH = f"{NY}|{LA}"
DAY = parse_window("08:00-21:00")
SECOND = timedelta(seconds=1)


# -- templates --------------------------------------------------------------------------


def test_a_template_names_each_field_once_and_renders_from_any_columns() -> None:
    template = parse_template("Hi {name}, {city} misses you, {name}! {{not a field}}")

    assert template.fields == ("name", "city")
    values = {"name": "Ann", "city": "Boston", "plan": "gold"}
    assert template.render(values) == "Hi Ann, Boston misses you, Ann! {not a field}"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "the template is empty"),
        ("   ", "the template is empty"),
        ("Hi {}", "names no column"),
        ("Hi { |there}", "names no column"),
        ("Hi {name", "not closed"),
        ("Hi {na{me}", "not closed"),
        ("Hi name}", "closes no field"),
    ],
)
def test_a_bad_template_is_refused_naming_the_problem(text: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=says) as refused:
        parse_template(text)
    assert refused.value.field == "template"


# -- send windows -----------------------------------------------------------------------

OPENING_CASES = {
    # An ordinary winter day: New York is UTC-5, Los Angeles UTC-8.
    "winter, New York": (NY, utc(2026, 1, 5, 2), utc(2026, 1, 5, 13), utc(2026, 1, 6, 2)),
    "winter, Los Angeles": (LA, utc(2026, 1, 5, 6), utc(2026, 1, 5, 16), utc(2026, 1, 6, 5)),
    # 2026-03-08, 02:00 local: clocks go forward (UTC-4, UTC-7) during the night before.
    "DST start, New York": (NY, utc(2026, 3, 8, 2), utc(2026, 3, 8, 12), utc(2026, 3, 9, 1)),
    "DST start, Los Angeles": (LA, utc(2026, 3, 8, 6), utc(2026, 3, 8, 15), utc(2026, 3, 9, 4)),
    # 2026-11-01, 02:00 local: clocks go back (UTC-5, UTC-8) during the night before.
    "DST end, New York": (NY, utc(2026, 11, 1, 2), utc(2026, 11, 1, 13), utc(2026, 11, 2, 2)),
    "DST end, Los Angeles": (LA, utc(2026, 11, 1, 6), utc(2026, 11, 1, 16), utc(2026, 11, 2, 5)),
    # A contact in both zones: open once Los Angeles opens, closed once New York closes.
    "DST start, both": (BOTH, utc(2026, 3, 8, 6), utc(2026, 3, 8, 15), utc(2026, 3, 9, 1)),
    "DST end, both": (BOTH, utc(2026, 11, 1, 6), utc(2026, 11, 1, 16), utc(2026, 11, 2, 2)),
}


@pytest.mark.parametrize(
    ("zones", "night", "opens", "closes"), OPENING_CASES.values(), ids=OPENING_CASES.keys()
)
def test_the_window_opens_and_closes_at_the_right_utc_instant(
    zones: str, night: datetime, opens: datetime, closes: datetime
) -> None:
    assert not DAY.is_open(zones, night)
    assert DAY.opens(zones, night) == opens
    assert not DAY.is_open(zones, opens - timedelta(microseconds=1))
    assert DAY.is_open(zones, opens)
    assert DAY.opens(zones, opens) == opens  # open already: now
    assert DAY.closes(zones, opens) == closes
    assert DAY.closes(zones, closes - SECOND) == closes
    assert DAY.is_open(zones, closes - timedelta(microseconds=1))
    assert not DAY.is_open(zones, closes)
    # The next morning, the window opens again at 08:00 local.
    assert DAY.opens(zones, closes) - opens in {timedelta(hours=h) for h in (23, 24, 25)}


def test_a_window_across_midnight() -> None:
    night = parse_window("22:00-06:00")

    assert str(night) == "22:00-06:00"
    assert night.contains(time(23, 30))
    assert night.contains(time(5, 59))
    assert not night.contains(time(6, 0))
    assert not night.contains(time(12, 0))
    noon = utc(2026, 1, 5, 17)  # 12:00 in New York
    assert night.opens(NY, noon) == utc(2026, 1, 6, 3)  # 22:00 EST
    assert night.closes(NY, utc(2026, 1, 6, 3)) == utc(2026, 1, 6, 11)  # 06:00 EST


def test_a_window_edge_the_clocks_skip_is_the_instant_they_jump() -> None:
    """On 2026-03-08 New York's wall clock goes from 01:59:59 EST to 03:00 EDT (07:00
    UTC): it never reads 02:30, and from the jump on it reads later than 02:30."""
    jump = utc(2026, 3, 8, 7)
    early = parse_window("02:30-21:00")
    assert early.is_open(NY, jump)
    assert early.opens(NY, utc(2026, 3, 8, 5)) == jump

    late = parse_window("20:00-02:30")
    assert not late.is_open(NY, jump)
    assert late.closes(NY, utc(2026, 3, 8, 3)) == jump


def test_a_window_edge_the_clocks_repeat_is_its_first_time() -> None:
    """On 2026-11-01 New York's wall clock reads 01:30 twice: 05:30 UTC (EDT), then
    06:30 UTC (EST)."""
    late = parse_window("20:00-01:30")
    assert late.closes(NY, utc(2026, 11, 1, 3)) == utc(2026, 11, 1, 5, 30)
    early = parse_window("01:30-21:00")
    assert early.opens(NY, utc(2026, 11, 1, 4)) == utc(2026, 11, 1, 5, 30)


@pytest.mark.parametrize("text", ["8am-9pm", "08:00", "08:00-21:00-22:00", "25:00-26:00", ""])
def test_a_bad_window_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="HH:MM-HH:MM") as refused:
        parse_window(text)
    assert refused.value.field == "send_window"


def test_an_empty_window_is_refused() -> None:
    with pytest.raises(InvalidInput, match="is empty"):
        parse_window("09:00-09:00")


def test_time_zones_come_from_the_name_or_the_number() -> None:
    assert check_zone("Europe/Paris") == "Europe/Paris"
    with pytest.raises(InvalidInput, match="'Mars/Olympus_Mons' is not a time zone") as refused:
        check_zone("Mars/Olympus_Mons", field="tz")
    assert refused.value.field == "tz"
    assert zones_of("+12125550100", "Etc/UTC") == NY
    assert zones_of("+14155550100", "Etc/UTC") == LA
    assert zones_of("+442079460018", "Etc/UTC") == "Europe/London"
    assert zones_of("+15550100001", "Etc/UTC") == "Etc/UTC"  # fictional: no region


# -- the sender pool --------------------------------------------------------------------


def test_a_contact_always_gets_the_same_pool_number_and_the_pool_is_shared() -> None:
    phones = [ny(i) for i in range(1000)]

    chosen = [sender_for(phone, POOL) for phone in phones]

    assert chosen == [sender_for(phone, POOL) for phone in phones]
    counts = Counter(chosen)
    assert set(counts) == set(POOL)
    assert min(counts.values()) > 400
    # Another process (another hash seed) chooses the same numbers: it survives restarts.
    code = (
        "import json, sys; from dispatcher.core.campaigns import sender_for; "
        f"print(json.dumps([sender_for(p, {list(POOL)!r}) for p in {phones[:50]!r}]))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(other.stdout) == chosen[:50]


# -- the contacts file ------------------------------------------------------------------


def test_the_reader_numbers_rows_by_their_line_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_bytes(
        b"\xef\xbb\xbfphone, name \n"  # a byte order mark; spaces around column names
        b"+12125550001,Ann\n"
        b"\n"  # a blank line: skipped, but it is a line
        b'+12125550002,"Bob\nSmith"\n'  # a quoted field over two lines
        b"+12125550003,Cy\r\n"
    )
    reader = CsvReader(path)

    rows = list(reader.rows())

    assert reader.header == ["phone", "name"]
    assert [(r.line, r.values, r.error) for r in rows] == [
        (2, {"phone": "+12125550001", "name": "Ann"}, None),
        (4, {"phone": "+12125550002", "name": "Bob\nSmith"}, None),
        (6, {"phone": "+12125550003", "name": "Cy"}, None),
    ]
    assert reader.bytes_read == path.stat().st_size


def test_a_bad_line_is_one_rejected_row_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_bytes(
        b"phone,name\n"
        b"+12125550001,Ren\xe9\n"  # Latin-1, not UTF-8
        b"+12125550002,Bob,extra\n"
        b"+12125550003\n"
        b"+12125550004,Di\n"
    )

    rows = list(CsvReader(path).rows())

    assert [(r.line, r.error) for r in rows] == [
        (2, "not UTF-8 text"),
        (3, "3 columns, the header has 2"),
        (4, "1 columns, the header has 2"),
        (5, None),
    ]
    assert rows[0].raw[0] == "+12125550001"  # what could be read is kept for the rejects
    assert rows[3].values == {"phone": "+12125550004", "name": "Di"}


def test_a_field_over_the_csv_limit_is_one_rejected_row(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_bytes(
        b"phone,name\n+12125550001,Ann\n+12125550002," + b"x" * 140_000 + b"\n"
        b'+12125550003,Cy\n+12125550004,"Di\nDo"\n+12125550005,Ed\n'
    )

    rows = list(CsvReader(path).rows())

    assert [(r.line, r.error) for r in rows] == [
        (2, None),
        (3, "not valid CSV: field larger than field limit (131072)"),
        (4, None),
        (5, None),
        (7, None),
    ]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "the file is empty"),
        (b"ph\xf6ne,name\n+12125550001,Ann\n", "the header line is not UTF-8 text"),
        (b"phone,name,phone\n", "the header repeats a column name"),
    ],
    ids=["empty", "header not UTF-8", "repeated column"],
)
def test_a_file_without_a_usable_header_is_refused(
    tmp_path: Path, content: bytes, says: str
) -> None:
    path = tmp_path / "contacts.csv"
    path.write_bytes(content)
    with pytest.raises(InvalidInput, match=says) as refused:
        list(CsvReader(path).rows())
    assert refused.value.field == "contacts"
    assert str(path) in str(refused.value)


# -- importing ----------------------------------------------------------------------------


def reject_rows(path: str | None) -> list[list[str]]:
    assert path is not None
    with Path(path).open(encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))


def read_rejects(path: str | None) -> dict[int, str]:
    """The reject file: each rejected row's line number and reason."""
    rows = reject_rows(path)
    assert rows[0][:2] == ["line", "reason"]
    lines = [int(row[0]) for row in rows[1:]]
    assert len(lines) == len(set(lines)), "each rejected row is listed once"
    return {int(row[0]): row[1] for row in rows[1:]}


AREAS = ("212", "415", "312", "617")
CITIES = ("Boston", "Austin", "Denver")
BIG_HEADER = ("phone", "name", "city", "plan", "tz")


@dataclass(slots=True)
class BigFile:
    """What the import of the generated file must find, row by row."""

    accepted: dict[int, str]  # line -> the contact's E.164 number
    rejected: dict[int, str]  # line -> words its reason must hold
    duplicate_of: dict[int, int]  # line -> the line of the contact's first row
    listed: list[str]  # on the Do Not Text list before the import
    multi_line: list[int]  # lines of rows with a quoted field over two lines
    line_of: dict[int, int]  # row index -> its first line


def big_row(i: int, line: int, earlier: str) -> tuple[bytes, str, bool]:
    """Row ``i`` of the generated file (on ``line``): its bytes, the words its reason
    must hold if it is rejected, and whether it repeats ``earlier``'s contact."""
    area, exchange, last = AREAS[i % 4], 200 + i // 10_000, f"{i % 10_000:04d}"
    phone = {3: f"({area}) {exchange}-{last}", 5: f"+1 {area} {exchange} {last}"}.get(
        i % 7, f"+1{area}{exchange}{last}"
    )
    name = f"Name{i}"
    if i % 2000 == 6:
        name = f'"{name}\nof line {line}"'  # a quoted field over two lines
    tz = "America/Chicago" if i % 11 == 0 else ""
    extra, why, repeats = "", "", False
    kind = i % 500
    if kind == 1:
        phone, why = "12345", "phone: '12345' has the wrong length"
    elif kind == 2:
        extra, why = ",surplus", "6 columns, the header has 5"
    elif kind == 3:
        name, why = "", "empty field {name}"
    elif kind == 5:
        tz, why = "Mars/Olympus_Mons", "'Mars/Olympus_Mons' is not a time zone"
    elif kind == 7:  # the contact of 7 rows earlier, written another way
        phone, repeats = f"{earlier[2:5]}.{earlier[5:8]}.{earlier[8:]}", True
    elif i % 25_000 == 9:
        name, why = "x" * 1700, "the text body has"
    record = f"{phone},{name},{CITIES[i % 3]},{'gold' if i % 2 else 'basic'},{tz}{extra}".encode()
    if kind == 4:  # a name in Latin-1: not UTF-8
        record, why = record.replace(b",Name", b",Ren\xe9", 1), "not UTF-8 text"
    return record + b"\n", why, repeats


def write_big_file(path: Path, rows: int) -> BigFile:
    """``rows`` contacts, about 1% of them bad in different ways, a few duplicates (the
    same number written another way), some contacts on the Do Not Text list, national
    numbers (read as US numbers), quoted fields over two lines and a blank line."""
    big = BigFile(accepted={}, rejected={}, duplicate_of={}, listed=[], multi_line=[], line_of={})
    line = 2
    e164 = [f"+1{AREAS[i % 4]}{200 + i // 10_000}{i % 10_000:04d}" for i in range(rows)]
    with path.open("wb") as out:
        out.write((",".join(BIG_HEADER) + "\n").encode())
        for i in range(rows):
            record, why, repeats = big_row(i, line, e164[i - 7])
            if i == rows // 2:
                record += b"\n"  # a blank line: skipped, not counted
            out.write(record)
            big.line_of[i] = line
            if i % 2000 == 6:
                big.multi_line.append(line)
            if why:
                big.rejected[line] = why
            elif repeats:
                big.duplicate_of[line] = big.line_of[i - 7]
            else:
                big.accepted[line] = e164[i]
                if i % 10_000 == 8:
                    big.listed.append(e164[i])
            line += record.count(b"\n")
    return big


@pytest.mark.timeout(120)
async def test_a_100000_row_file_is_imported_into_sqlite_with_exact_counts(
    tmp_path: Path,
) -> None:
    path = tmp_path / "contacts.csv"
    big = write_big_file(path, 100_000)
    config = load_config(home=tmp_path, env={})
    service = Dispatcher.from_config(config)  # SQLite in the home folder, the simulator
    async with service:
        for number in big.listed:
            await service.dnt_add(number, added_by="test", reason="asked by phone")
        spec = CampaignSpec(name="spring", contacts=path, senders=POOL, tz_column="tz",
                            template="Hi {name}, our {city} store has 20% off today.",
                            draft=True)  # fmt: skip
        created = await service.campaigns.create(spec)
        assert created.state is CampaignState.IMPORTING

        async def imported() -> bool:
            progress = (await service.campaigns.view(created.id)).progress
            return progress is not None and progress.done

        await wait_for(imported, within=100, what="the import")
        view = await service.campaigns.view(created.id)
        contacts = await service.store.contacts_in(created.id, list(ContactState), 1_000_000)

    suppressed = len(big.listed)
    campaign = view.campaign
    assert campaign.state is CampaignState.DRAFT
    assert len(big.rejected) > 1000
    assert (campaign.accepted, campaign.rejected, campaign.duplicates, campaign.suppressed) == (
        len(big.accepted) - suppressed, len(big.rejected), len(big.duplicate_of), suppressed,
    )  # fmt: skip
    assert campaign.accepted + campaign.rejected + campaign.duplicates + suppressed == 100_000
    assert view.progress is not None
    assert view.progress.rows == 100_000
    assert view.progress.bytes_read == view.progress.bytes_total == path.stat().st_size
    # Every bad row is in the reject file, with its line and why; so is every row not
    # imported: a duplicate (with its first line), a contact on the Do Not Text list.
    rejects = read_rejects(campaign.reject_file)
    duplicates = {line: why for line, why in rejects.items() if why.startswith("duplicate")}
    assert duplicates == {line: f"duplicate of line {first}"
                          for line, first in big.duplicate_of.items()}  # fmt: skip
    listed = [line for line, why in rejects.items() if why == "on the Do Not Text list"]
    assert sorted(big.accepted[line] for line in listed) == sorted(big.listed)
    for line in (*duplicates, *listed):
        del rejects[line]
    assert set(rejects) == set(big.rejected)
    wrong = {line: (rejects[line], why) for line, why in big.rejected.items()
             if why not in rejects[line]}  # fmt: skip
    assert wrong == {}
    # The contacts stored are the accepted ones, at their lines, in E.164.
    assert view.contacts == {ContactState.PENDING: campaign.accepted}
    stored = {c.line: c.phone for c in contacts}
    expected = {line: phone for line, phone in big.accepted.items() if phone not in big.listed}
    assert stored == expected
    assert big.multi_line
    assert all(line in stored for line in big.multi_line)
    by_line = {c.line: c for c in contacts}
    first = by_line[2]
    assert first.tz == "America/Chicago"  # the tz column
    assert first.fields["plan"] == "basic"  # a column the template does not use is kept
    assert first.sender == sender_for(first.phone, POOL)
    in_la = by_line[big.line_of[13]]
    assert (in_la.phone, in_la.tz) == ("+14152000013", LA)  # the zone from the number
    assert by_line[big.line_of[10]].phone == "+13122000010"  # written (312) 200-0010
    assert by_line[big.line_of[12]].phone == "+12122000012"  # written +1 212 200 0012
    # The cost and the projection (from the end of the import): one segment each, the
    # busiest pool number at one a second, in the contacts' windows: that pace alone
    # when every window is open until then.
    assert campaign.segments == campaign.accepted
    busiest = max(Counter(c.sender for c in contacts).values())
    pace_alone = campaign.updated_at + timedelta(seconds=busiest)
    assert campaign.projected_finish is not None
    assert campaign.projected_finish >= pace_alone
    window = parse_window(campaign.send_window)
    zones = {c.tz for c in contacts}
    if all(window.is_open(z, campaign.updated_at) and window.is_open(z, pace_alone) for z in zones):
        assert campaign.projected_finish == pace_alone


async def test_national_numbers_take_the_default_region_and_every_column_is_a_field(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, start=utc(2026, 1, 5, 17)) as h:  # 09:00 in Los Angeles
        path = h.contacts_file(
            [("(212) 555-0101", "Ann", "gold", "Boston"),
             ("212.555.0102", "Bob", "silver", "Albany"),
             ("+1 415 666 0001", "Cy", "gold", "San Francisco"),
             ("0044 20 7946 0018", "Di", "basic", "London")],
            header=("phone", "name", "plan", "city"),
        )  # fmt: skip
        campaign = await h.create(path, template="Hi {name}, your {plan} plan in {city}.")
        contacts = await h.contacts(campaign.id)
        await h.until_state(campaign.id, CampaignState.FINISHED)
        bodies = {}
        for sent in h.sends():
            message = await h.service.store.get(sent.item_id)
            assert message is not None
            bodies[sent.recipient] = message.body

    assert [c.phone for c in contacts] == [
        "+12125550101", "+12125550102", "+14156660001", "+442079460018"
    ]  # fmt: skip
    assert [c.tz for c in contacts] == [NY, NY, LA, "Europe/London"]
    assert contacts[0].fields == {"phone": "(212) 555-0101", "name": "Ann", "plan": "gold",
                                  "city": "Boston"}  # fmt: skip
    assert bodies == {
        "+12125550101": "Hi Ann, your gold plan in Boston.",
        "+12125550102": "Hi Bob, your silver plan in Albany.",
        "+14156660001": "Hi Cy, your gold plan in San Francisco.",
        "+442079460018": "Hi Di, your basic plan in London.",
    }


async def test_the_template_may_use_the_phone_column(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        path = h.contacts_file([("(212) 555-0101", "Ann"), (ny(2), "Bob")])
        campaign = await h.create(path, template="Hi {name}, this is for {phone}.")
        await h.until_state(campaign.id, CampaignState.FINISHED)
        bodies = sorted([(await h.service.store.get(s.item_id)).body  # type: ignore[union-attr]
                         for s in h.sends()])  # fmt: skip

    assert bodies == ["Hi Ann, this is for (212) 555-0101.", "Hi Bob, this is for +12125550002."]


async def test_another_default_region_from_the_environment_or_the_file(tmp_path: Path) -> None:
    config = load_config(env={"DISPATCHER_DEFAULT_REGION": " gb "})
    assert config.campaigns.default_region == "GB"
    toml = tmp_path / "dispatcher.toml"
    toml.write_text('[campaigns]\ndefault_region = "GB"\n')
    assert load_config(toml, env={}).campaigns.default_region == "GB"
    with pytest.raises(ConfigError, match="DISPATCHER_DEFAULT_REGION") as refused:
        load_config(env={"DISPATCHER_DEFAULT_REGION": "XX"})
    assert refused.value.field == "campaigns.default_region"

    async with running(tmp_path, campaigns=config.campaigns) as h:
        path = h.contacts_file([("020 7946 0018", "Ann"), ("07911 123456", "Bob"),
                                ("+1 212 555 0101", "Cy"), ("123", "Di")])  # fmt: skip
        campaign = await h.create(path)
        contacts = await h.contacts(campaign.id)
        view = await h.view(campaign.id)

    assert [c.phone for c in contacts] == ["+442079460018", "+447911123456", "+12125550101"]
    assert [c.tz for c in contacts] == [
        "Europe/London", "Europe/Guernsey|Europe/Isle_of_Man|Europe/Jersey|Europe/London", NY
    ]  # fmt: skip
    assert read_rejects(view.campaign.reject_file) == {
        5: "phone: '123' has the wrong length for a GB number"
    }


async def test_rows_with_an_unknown_time_zone_are_rejected_and_others_imported(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as h:
        path = h.contacts_file(
            [(ny(1), "Ann", "Mars/Base"), (ny(2), "Bob", "America/Chicago"), (ny(3), "Cy", ""),
             (ny(4), "Di", " Europe/Paris ")],
            header=("phone", "name", "tz"),
        )  # fmt: skip
        campaign = await h.create(path, tz_column="tz")
        contacts = await h.contacts(campaign.id)
        stored = await h.desk.get(campaign.id)

    assert (stored.accepted, stored.rejected) == (3, 1)
    assert read_rejects(stored.reject_file) == {
        2: "'Mars/Base' is not a time zone (use an IANA name like America/New_York)"
    }
    assert [(c.line, c.tz) for c in contacts] == [(3, "America/Chicago"), (4, NY),
                                                  (5, "Europe/Paris")]  # fmt: skip


async def test_duplicates_and_do_not_text_contacts_are_counted_not_imported(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as h:
        await h.service.dnt_add(ny(3), added_by="contact", reason="replied STOP")
        path = h.contacts_file([(ny(1), "Ann"), ("(212) 555-0001", "Ann again"), (ny(3), "Cy"),
                                (ny(3), "Cy again"), (ny(4), "Di"), ("bad", "Ed")])  # fmt: skip
        campaign = await h.create(path)
        stored = await h.desk.get(campaign.id)
        contacts = await h.contacts(campaign.id)
        await h.until_state(campaign.id, CampaignState.FINISHED)

    assert (stored.accepted, stored.rejected, stored.duplicates, stored.suppressed) == (2, 1, 2, 1)
    assert [(c.line, c.phone) for c in contacts] == [(2, ny(1)), (6, ny(4))]
    assert reject_rows(stored.reject_file) == [  # each row not imported as it was, and why
        ["line", "reason", "phone", "name"],
        ["3", "duplicate of line 2", "(212) 555-0001", "Ann again"],
        ["4", "on the Do Not Text list", ny(3), "Cy"],
        ["5", "duplicate of line 4", ny(3), "Cy again"],
        ["7", "phone: 'bad' is not a phone number ((1) The string supplied did not seem "
         "to be a phone number.)", "bad", "Ed"],
    ]  # fmt: skip
    assert per_recipient(h.sends()) == {ny(1): 1, ny(4): 1}


async def test_a_file_with_only_good_rows_has_no_reject_file_and_counts_its_cost(
    tmp_path: Path,
) -> None:
    long_name = "y" * 150  # the text is over 160 characters: 2 segments
    async with running(tmp_path) as h:
        path = h.contacts_file([(ny(i), long_name if i < 3 else f"N{i}") for i in range(8)])
        campaign = await h.create(path, start_at=h.now() + timedelta(hours=1))
        stored = await h.desk.get(campaign.id)
        contacts = await h.contacts(campaign.id)

    assert stored.reject_file is None
    assert (stored.accepted, stored.rejected) == (8, 0)
    assert stored.segments == 3 * 2 + 5
    per_sender = Counter()  # type: Counter[str]
    for contact in contacts:
        per_sender[contact.sender] += 2 if contact.line < 5 else 1
    start = stored.start_at
    assert start is not None
    assert stored.projected_finish == start + timedelta(seconds=max(per_sender.values()))


# -- bad input --------------------------------------------------------------------------

GOOD_ROWS = b"phone,name\n+12125550001,Ann\n+12125550002,Bob\n"
CREATE_ERRORS: dict[str, tuple[dict[str, Any], bytes | None, str, str]] = {
    "a template field the file has no column for": (
        {"template": "Hi {name}, your {plan} plan ends {when}"}, GOOD_ROWS,
        "the template uses {plan}, {when}, which", "template",
    ),
    "an empty template": ({"template": "  "}, GOOD_ROWS, "the template is empty", "template"),
    "an unknown phone column": (
        {"phone_column": "mobile"}, GOOD_ROWS,
        "no column 'mobile' for the contact's number (columns: phone, name)", "phone_column",
    ),
    "an unknown time-zone column": (
        {"tz_column": "zone"}, GOOD_ROWS, "no time-zone column 'zone'", "tz_column",
    ),
    "a header that is not UTF-8": (
        {}, b"ph\xf6ne,name\n+12125550001,Ann\n", "the header line is not UTF-8 text", "contacts",
    ),
    "a header that repeats a column": (
        {}, b"phone,name,name\n+12125550001,Ann,Ann\n", "the header repeats a column", "contacts",
    ),
    "an empty file": ({}, b"", "the file is empty", "contacts"),
    "a file that does not exist": ({}, None, "no such file", "contacts"),
    "a bad send window": (
        {"send_window": "8am-9pm"}, GOOD_ROWS, "is not HH:MM-HH:MM", "send_window",
    ),
    "an empty send window": (
        {"send_window": "09:00-09:00"}, GOOD_ROWS, "is empty", "send_window",
    ),
    "a bad outside-window": (
        {"outside_window": "skip"}, GOOD_ROWS,
        "outside_window must be hold or expire, not 'skip'", "outside_window",
    ),
    "no pool": ({"senders": []}, GOOD_ROWS, "at least one number to send from", "from"),
    "a bad pool number": ({"senders": [POOL[0], "12"]}, GOOD_ROWS, "'12'", "from"),
    "no name": ({"name": " "}, GOOD_ROWS, "the campaign needs a name", "name"),
    "an unknown channel": (
        {"channel": "fax"}, GOOD_ROWS, "text, voice or email, not 'fax'", "channel"
    ),
    "an unknown script": (
        {"channel": "voice", "template": "remind"}, GOOD_ROWS,
        "no script is named 'remind' (known: reminder)", "template",
    ),
    "a validity of zero": (
        {"validity": timedelta(0)}, GOOD_ROWS, "validity must be positive", "validity",
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    ("options", "content", "says", "field"), CREATE_ERRORS.values(), ids=CREATE_ERRORS.keys()
)
async def test_bad_input_is_refused_before_anything_is_imported(
    tmp_path: Path, options: dict[str, Any], content: bytes | None, says: str, field: str
) -> None:
    path = tmp_path / "contacts.csv"
    if content is not None:
        path.write_bytes(content)
    async with running(tmp_path) as h:
        with pytest.raises(InvalidInput) as refused:
            await h.create(path, **options)
        await h.clock.advance(5)
        assert await h.service.store.list_campaigns(10) == []

    assert says in str(refused.value)
    assert refused.value.field == field
    assert not (tmp_path / "campaigns").exists()  # no reject file either
    assert h.sends() == []


CONTROL_ERRORS = {
    "start-at without offset": ({"start_at": "2026-01-05T10:00:00"}, "with its offset",
                                "start_at"),
    "start-at not a time": ({"start_at": "tomorrow"}, "is not an ISO 8601 time", "start_at"),
    "a relative path": ({"contacts": "contacts.csv"}, "absolute path", "contacts"),
    "a validity that is not a duration": ({"validity": "10 parsecs"}, "is not a duration",
                                          "validity"),
    "a validity of 0s": ({"validity": "0s"}, "validity must be positive", "validity"),
    "a pool that is not numbers": ({"from": [1, 2]}, "a list of numbers", "from"),
    "an unknown argument": ({"speed": "fast"}, "unknown argument speed", "speed"),
}  # fmt: skip


def request(cmd: str, args: dict[str, Any]) -> bytes:
    return json.dumps({"id": 7, "cmd": cmd, "args": args}).encode()


CONTROL_GOOD = {"start_at": "2026-01-05T10:00:00+00:00", "contacts": None, "validity": "1h",
                "from": list(POOL), "speed": None}  # fmt: skip


@pytest.mark.parametrize(
    ("changed", "says", "field"), CONTROL_ERRORS.values(), ids=CONTROL_ERRORS.keys()
)
async def test_campaign_create_on_the_socket_refuses_bad_arguments(
    tmp_path: Path, changed: dict[str, Any], says: str, field: str
) -> None:
    path = tmp_path / "contacts.csv"
    path.write_bytes(GOOD_ROWS)
    base = {"name": "spring", "contacts": str(path), "template": "Hi {name}",
            "from": ",".join(POOL)}  # fmt: skip
    put_right = {k: CONTROL_GOOD[k] for k in changed if CONTROL_GOOD[k] is not None}
    async with running(tmp_path) as h:
        server = ControlServer(h.service, tmp_path / "unused.sock")
        answer = await server.handle(request("campaign_create", {**base, **changed}))
        good = await server.handle(request("campaign_create", {**base, **put_right}))
        stored = await h.service.store.list_campaigns(10)

    assert answer["ok"] is False
    assert answer["error"]["code"] in {"invalid_input", "config_error"}
    assert says in answer["error"]["message"]
    assert answer["error"]["field"] == field
    assert good["ok"] is True, good  # the same request, put right, is taken
    assert [c.id for c in stored] == [good["result"]["id"]]


async def test_an_import_that_fails_half_way_marks_the_campaign_failed(tmp_path: Path) -> None:
    class DiskFull(MemoryStore):
        async def add_contacts(self, contacts: Any) -> None:
            raise OSError(28, "No space left on device")

    async with running(tmp_path, store=DiskFull()) as h:
        path = h.contacts_file([(ny(i), f"N{i}") for i in range(3)])
        campaign = await h.create(path)
        view = await h.view(campaign.id)
        await h.clock.advance(10)
        with pytest.raises(Conflict, match="failed"):
            await h.desk.resume(campaign.id)

    assert view.campaign.state is CampaignState.FAILED
    assert view.progress is not None
    assert view.progress.error is not None
    assert "No space left on device" in view.progress.error
    assert h.sends() == []


async def test_contacts_written_a_few_at_a_time_keep_every_row_and_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Read 2 rows at a time and written 3 contacts at a time: chunks with nothing to
    # reject, with only a listed contact, writes that span chunks, a last short write.
    monkeypatch.setattr(campaign_import, "BATCH", 2)
    monkeypatch.setattr(campaign_import, "STORE_BATCH", 3)
    async with running(tmp_path) as h:
        await h.service.dnt_add(ny(3), added_by="contact", reason="replied STOP")
        await h.service.dnt_add(ny(9), added_by="contact", reason="replied STOP")
        path = h.contacts_file([
            (ny(1), "A"), (ny(2), "B"),  # lines 2-3: all good
            (ny(3), "C"), ("bad", "D"),  # 4-5: listed, bad
            (ny(5), "E"), (ny(6), "F"),  # 6-7
            ("(212) 555-0001", "A again"), (ny(8), "H"),  # 8-9: a duplicate
            (ny(9), "I"), (ny(10), "J"),  # 10-11: listed
            (ny(11), "K"),  # 12
        ])  # fmt: skip
        campaign = await h.create(path, draft=True)
        contacts = await h.contacts(campaign.id)
        stored = await h.desk.get(campaign.id)
        progress = (await h.view(campaign.id)).progress

    assert [(c.line, c.phone) for c in sorted(contacts, key=lambda c: c.line)] == [
        (2, ny(1)), (3, ny(2)), (6, ny(5)), (7, ny(6)), (9, ny(8)), (11, ny(10)), (12, ny(11)),
    ]  # fmt: skip
    assert (stored.accepted, stored.rejected, stored.duplicates, stored.suppressed) == (7, 1, 1, 2)
    assert progress is not None
    assert progress.stored == 7
    assert [row[:2] for row in reject_rows(stored.reject_file)] == [
        ["line", "reason"], ["4", "on the Do Not Text list"],
        ["5", "phone: 'bad' is not a phone number ((1) The string supplied did not seem to "
              "be a phone number.)"],
        ["8", "duplicate of line 2"], ["10", "on the Do Not Text list"],
    ]  # fmt: skip


async def test_an_import_whose_second_write_fails_is_failed_with_that_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The second write fails while the rows after it are read: the import stops there
    # with the write's error, and that error is not left unretrieved in a task.
    monkeypatch.setattr(campaign_import, "BATCH", 2)
    monkeypatch.setattr(campaign_import, "STORE_BATCH", 2)

    class FullAfterOne(MemoryStore):
        writes = 0

        async def add_contacts(self, contacts: Any) -> None:
            self.writes += 1
            if self.writes == 2:
                raise OSError(28, "No space left on device")
            await super().add_contacts(contacts)

    loop = asyncio.get_running_loop()
    unhandled: list[str] = []
    loop.set_exception_handler(lambda _, context: unhandled.append(str(context["message"])))
    try:
        async with running(tmp_path, store=FullAfterOne()) as h:
            path = h.contacts_file([(ny(i), f"N{i}") for i in range(9)])
            campaign = await h.create(path)
            view = await h.view(campaign.id)
            contacts = await h.contacts(campaign.id)
            await h.clock.advance(10)
        gc.collect()
    finally:
        loop.set_exception_handler(None)

    assert view.campaign.state is CampaignState.FAILED
    assert view.progress is not None
    assert view.progress.error is not None
    assert "No space left on device" in view.progress.error
    assert [c.line for c in contacts] == [2, 3]  # the first write's
    assert h.sends() == []
    assert [m for m in unhandled if "never retrieved" in m] == []


@pytest.mark.timeout(60)
async def test_a_campaign_created_while_the_service_starts_is_imported_not_failed(
    tmp_path: Path,
) -> None:
    """At start the service fails the campaigns a crash left importing. One created at
    that moment, stored before the start reads the campaigns and registered after, is
    this process's own import: it runs to its end and is never marked failed."""
    stored, listed = asyncio.Event(), asyncio.Event()
    states: list[CampaignState] = []  # every state the campaign was stored with

    class StartReadsBetween(MemoryStore):
        """The start's read of the campaigns comes between the new campaign's store
        write and the end of its creation."""

        async def list_campaigns(self, limit: int) -> list[Campaign]:
            if listed.is_set():
                return await super().list_campaigns(limit)
            await stored.wait()
            try:
                return await super().list_campaigns(limit)
            finally:
                listed.set()

        async def create_campaign(self, campaign: Campaign) -> None:
            states.append(campaign.state)
            await super().create_campaign(campaign)
            stored.set()
            await listed.wait()

        async def update_campaign(self, campaign: Campaign) -> None:
            states.append(campaign.state)
            await super().update_campaign(campaign)

    async with running(tmp_path, store=StartReadsBetween()) as h:
        path = h.contacts_file([(ny(i), f"N{i}") for i in range(3)])
        campaign = await h.create(path)
        view = await h.view(campaign.id)

    assert listed.is_set()  # the start read the campaigns while this one was created
    assert CampaignState.FAILED not in states, states
    assert view.campaign.state is CampaignState.RUNNING, view.campaign.state
    assert view.campaign.accepted == 3


# -- pause, resume, cancel ----------------------------------------------------------------


async def test_pause_resume_and_cancel_refuse_what_does_not_apply(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        path = h.contacts_file([(ny(i), f"N{i}") for i in range(3)])
        campaign = await h.create(path, start_at=h.now() + timedelta(hours=1))
        cid = campaign.id
        assert await h.state(cid) is CampaignState.RUNNING  # waiting for its start

        with pytest.raises(Conflict, match=f"campaign {cid} is running"):
            await h.desk.resume(cid)
        assert (await h.during(h.desk.pause(cid))).campaign.state is CampaignState.PAUSED
        with pytest.raises(Conflict, match="is paused; it can be made paused only when running"):
            await h.desk.pause(cid)
        assert (await h.desk.resume(cid)).campaign.state is CampaignState.RUNNING
        assert (await h.during(h.desk.pause(cid))).campaign.state is CampaignState.PAUSED
        assert (await h.desk.resume(cid)).campaign.state is CampaignState.RUNNING
        assert (await h.during(h.desk.cancel(cid))).campaign.state is CampaignState.CANCELED
        for verb in (h.desk.cancel, h.desk.pause, h.desk.resume):
            with pytest.raises(Conflict, match="is canceled"):
                await verb(cid)
        verbs: list[Callable[[str], Awaitable[object]]] = [
            h.desk.get, h.desk.view, h.desk.pause, h.desk.resume, h.desk.cancel
        ]  # fmt: skip
        for ask in verbs:
            with pytest.raises(NotFound, match="no campaign with id 'cmp_nope'"):
                await ask("cmp_nope")
        await h.clock.advance(3 * 3600)
        contacts = await h.contacts(cid)

    assert {c.state for c in contacts} == {ContactState.CANCELED}
    assert h.sends() == []


async def test_a_draft_waits_for_resume_and_a_start_time_is_kept(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        draft = await h.create(h.contacts_file([(ny(1), "Ann")], name="a.csv"), draft=True)
        later = await h.create(h.contacts_file([(ny(2), "Bob")], name="b.csv"),
                               start_at=h.now() + timedelta(minutes=10))  # fmt: skip
        start = h.now()
        with pytest.raises(Conflict, match="is draft"):
            await h.desk.pause(draft.id)
        await h.clock.advance(9 * 60)
        assert h.sends() == []
        assert await h.state(draft.id) is CampaignState.DRAFT
        await h.until_sent(1)
        launched = await h.desk.resume(draft.id)
        assert launched.campaign.state is CampaignState.RUNNING
        await h.until_state(draft.id, CampaignState.FINISHED)
        await h.until_state(later.id, CampaignState.FINISHED)

    sends = {s.recipient: s.at for s in h.sends()}
    assert sends[ny(2)] >= start + timedelta(minutes=10)
    assert sends[ny(1)] > sends[ny(2)]
    assert per_recipient(h.sends()) == {ny(1): 1, ny(2): 1}


async def statuses(h: Harness, campaign_id: str) -> dict[str, TextStatus]:
    """The status of each contact's current text, by text id."""
    found = {}
    for contact in await h.contacts(campaign_id):
        if contact.message_id is not None:
            message = await h.service.store.get(contact.message_id)
            assert message is not None
            found[message.id] = message.status
    return found


async def test_every_contact_exactly_once_across_pause_resume_and_cancel(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        path = h.contacts_file([(ny(i), f"N{i}") for i in range(30)])
        campaign = await h.create(path)
        cid = campaign.id
        await h.until_sent(8)

        paused = await h.during(h.desk.pause(cid))
        assert paused.campaign.state is CampaignState.PAUSED
        sending = {i for i, s in (await statuses(h, cid)).items() if s is TextStatus.SENDING}
        before = len(h.sends())
        await h.clock.advance(60)
        during_pause = h.sends()[before:]
        assert {s.item_id for s in during_pause} <= sending  # only what had already started
        assert len(during_pause) <= len(POOL)
        view = await h.view(cid)
        assert ContactState.QUEUED not in view.contacts  # the queued ones were handed back
        assert view.contacts[ContactState.PENDING] == 30 - len(h.sends())

        await h.desk.resume(cid)
        await h.until_sent(len(h.sends()) + 10)
        canceled = await h.during(h.desk.cancel(cid))
        assert canceled.campaign.state is CampaignState.CANCELED
        sending = {i for i, s in (await statuses(h, cid)).items() if s is TextStatus.SENDING}
        before = len(h.sends())
        await h.clock.advance(60)
        assert {s.item_id for s in h.sends()[before:]} <= sending
        contacts = await h.contacts(cid)
        messages = {c.line: await h.service.store.get(c.message_id or "") for c in contacts}
        final = await h.view(cid)

    sends = h.sends()
    sent = {c.phone for c in contacts if c.state is ContactState.SENT}
    dropped = {c.phone for c in contacts if c.state is ContactState.CANCELED}
    assert {c.state for c in contacts} == {ContactState.SENT, ContactState.CANCELED}
    assert final.campaign.state is CampaignState.CANCELED
    # At most once, and every contact not cancelled was sent.
    assert per_recipient(sends) == dict.fromkeys(sent, 1)
    assert not dropped & set(per_recipient(sends))
    assert 18 <= len(sent) < 30
    # From its own pool number, always; each number at most once a second.
    by_phone = {c.phone: c for c in contacts}
    for s in sends:
        assert s.sender == by_phone[s.recipient].sender == sender_for(s.recipient, POOL)
    assert set(min_gap_by_sender(sends)) == set(POOL)
    assert min(min_gap_by_sender(sends).values()) >= 1.0
    # The text that went is the contact's current attempt; those handed back at the
    # pause went on a later attempt.
    for contact in contacts:
        if contact.state is ContactState.SENT:
            message = messages[contact.line]
            assert message is not None
            assert message.idempotency_key == f"{cid}:{contact.line}:{contact.attempt}"
    assert any(c.attempt > 0 for c in contacts if c.state is ContactState.SENT)


async def test_a_quick_pause_and_resume_skips_no_contact(tmp_path: Path) -> None:
    """The texts withdrawn by the pause were accepted less than a second before they
    are submitted again: the same-second rule must not swallow the new attempt."""
    async with running(tmp_path) as h:
        phones = [ny(i) for i in range(10)]
        campaign = await h.create(h.contacts_file([(p, "N") for p in phones]))
        await h.until_sent(2)
        await h.during(h.desk.pause(campaign.id))
        await h.desk.resume(campaign.id)
        await h.until_state(campaign.id, CampaignState.FINISHED)
        contacts = await h.contacts(campaign.id)

    assert per_recipient(h.sends()) == dict.fromkeys(phones, 1)
    assert {c.state for c in contacts} == {ContactState.SENT}


async def test_a_pause_and_resume_between_two_turns_skips_no_contact(tmp_path: Path) -> None:
    """The operator paused the sending number, then paused and resumed the campaign
    before the desk's next turn: the withdrawn contacts are handed back, not dropped."""
    sender = POOL[0]
    async with running(tmp_path, campaigns=campaigns_config(tick=timedelta(minutes=1))) as h:
        await h.service.pause(sender)
        phones = [ny(i) for i in range(5)]
        campaign = await h.create(h.contacts_file([(p, "N") for p in phones]), senders=[sender])
        await h.clock.advance(2)
        assert (await h.view(campaign.id)).contacts[ContactState.QUEUED] == 2
        await h.desk.pause(campaign.id)
        await h.desk.resume(campaign.id)
        await h.service.resume(sender)
        await h.until_state(campaign.id, CampaignState.FINISHED, step=1)
        contacts = await h.contacts(campaign.id)

    assert per_recipient(h.sends()) == dict.fromkeys(phones, 1)
    assert {c.state for c in contacts} == {ContactState.SENT}


# -- quiet hours --------------------------------------------------------------------------

TICK = timedelta(seconds=5)
MORNINGS = {
    # (the clock starts, the window opens in New York, then in Los Angeles)
    "winter": (utc(2026, 1, 5, 12, 30), utc(2026, 1, 5, 13), utc(2026, 1, 5, 16)),
    "DST start": (utc(2026, 3, 8, 6), utc(2026, 3, 8, 12), utc(2026, 3, 8, 15)),
    "DST end": (utc(2026, 11, 1, 5), utc(2026, 11, 1, 13), utc(2026, 11, 1, 16)),
}
ZONED = [  # (number, name, tz column): the zone from the column, else from the number
    (ny(1), "Ann", ""),
    ("+15550100001", "Bob", NY),
    ("+15550100003", "Ed", ""),  # fictional, no column: campaigns.default_time_zone (NY)
    (la(1), "Cy", ""),
    ("+15550100002", "Di", LA),
]
IN_NY = {ny(1), "+15550100001", "+15550100003"}
IN_LA = {la(1), "+15550100002"}


def assert_in_window(sends: list[Sent], zones: dict[str, str], window: str = "08:00-21:00") -> None:
    parsed = parse_window(window)
    outside = [(s.recipient, s.at) for s in sends if not parsed.is_open(zones[s.recipient], s.at)]
    assert outside == []


@pytest.mark.parametrize(("start", "ny_opens", "la_opens"), MORNINGS.values(), ids=MORNINGS.keys())
async def test_each_contact_is_texted_from_08_00_in_its_own_time_zone(
    tmp_path: Path, start: datetime, ny_opens: datetime, la_opens: datetime
) -> None:
    async with running(tmp_path, start=start, campaigns=campaigns_config(tick=TICK)) as h:
        path = h.contacts_file(ZONED, header=("phone", "name", "tz"))
        campaign = await h.create(path, tz_column="tz")
        zones = {c.phone: c.tz for c in await h.contacts(campaign.id)}
        await h.clock.advance((ny_opens - h.now()).total_seconds() - 1)
        assert h.sends() == []  # nothing before 08:00 in New York
        await h.clock.advance(61)
        in_new_york = per_recipient(h.sends())
        await h.clock.advance((la_opens - h.now()).total_seconds() - 1)
        assert per_recipient(h.sends()) == in_new_york  # Los Angeles waits for its 08:00
        await h.until_state(campaign.id, CampaignState.FINISHED, step=1)

    assert zones == dict.fromkeys(IN_NY, NY) | dict.fromkeys(IN_LA, LA)
    assert in_new_york == dict.fromkeys(IN_NY, 1)
    sends = h.sends()
    assert per_recipient(sends) == dict.fromkeys(IN_NY | IN_LA, 1)
    first_ny = min(s.at for s in sends if s.recipient in IN_NY)
    first_la = min(s.at for s in sends if s.recipient in IN_LA)
    assert ny_opens <= first_ny < ny_opens + TICK
    assert la_opens <= first_la < la_opens + TICK
    assert_in_window(sends, zones)


CLOSES = utc(2026, 11, 1, 4)  # 21:00 PDT on 2026-10-31 in Los Angeles
NEXT_MORNING = utc(2026, 11, 1, 16)  # 08:00 PST: the clocks went back in the night


async def close_on_a_queue(h: Harness, outside: str) -> tuple[Campaign, dict[int, str]]:
    """A campaign in Los Angeles started 20 s before its window closes, with more
    contacts than one number sends by then: returns it and the texts queued (by the
    contact's line) just before the window closes."""
    phones = [la(i) for i in range(30)]
    campaign = await h.create(h.contacts_file([(p, "N") for p in phones]), senders=[POOL[0]],
                              outside_window=outside)  # fmt: skip
    await h.clock.advance((CLOSES - h.now()).total_seconds() - 0.5)
    queued = {c.line: c.message_id or "" for c in await h.contacts(campaign.id)
              if c.state is ContactState.QUEUED}  # fmt: skip
    assert queued
    return campaign, queued


async def left_at_the_close(h: Harness, queued: dict[int, str]) -> set[int]:
    """The lines of the texts ``queued`` that were not sent before the window closed:
    each ended Unsent (expired) at the close, the end of its validity."""
    sent = {s.item_id for s in h.sends() if s.at < CLOSES}
    left = set()
    for line, message_id in queued.items():
        if message_id in sent:
            continue
        message = await h.service.store.get(message_id)
        assert message is not None
        assert (message.status, message.reason) == (TextStatus.UNSENT, Reason.EXPIRED)
        assert message.expires_at == CLOSES
        left.add(line)
    assert len(left) >= 2
    return left


async def test_a_text_queued_when_the_window_closes_is_held_for_the_next_morning(
    tmp_path: Path,
) -> None:
    config = campaigns_config(tick=TICK, feed_ahead=8)
    async with running(tmp_path, start=CLOSES - timedelta(seconds=20), campaigns=config) as h:
        campaign, queued = await close_on_a_queue(h, "hold")
        await h.until_state(campaign.id, CampaignState.FINISHED, step=60, max_steps=1000)
        left = await left_at_the_close(h, queued)
        contacts = {c.line: c for c in await h.contacts(campaign.id)}

    sends = h.sends()
    assert per_recipient(sends) == dict.fromkeys((la(i) for i in range(30)), 1)
    evening = [s for s in sends if s.at < CLOSES]
    assert 15 <= len(evening) <= 20
    assert all(s.at >= NEXT_MORNING for s in sends[len(evening) :])
    assert_in_window(sends, dict.fromkeys(per_recipient(sends), LA))
    for line in left:  # held: the contact went the next morning, on a new attempt
        assert contacts[line].state is ContactState.SENT
        assert contacts[line].attempt >= 1


async def test_a_text_queued_when_the_window_closes_expires_with_expire(tmp_path: Path) -> None:
    config = campaigns_config(tick=TICK, feed_ahead=8)
    async with running(tmp_path, start=CLOSES - timedelta(seconds=20), campaigns=config) as h:
        campaign, queued = await close_on_a_queue(h, "expire")
        await h.until_state(campaign.id, CampaignState.FINISHED, step=60, max_steps=1000)
        await h.clock.advance(24 * 3600)
        left = await left_at_the_close(h, queued)
        contacts = await h.contacts(campaign.id)

    sends = h.sends()
    assert all(s.at < CLOSES for s in sends)
    assert per_recipient(sends) == dict.fromkeys((s.recipient for s in sends), 1)
    states = Counter(c.state for c in contacts)
    assert states == {ContactState.SENT: len(sends), ContactState.EXPIRED: 30 - len(sends)}
    assert {c.line for c in contacts if c.state is ContactState.EXPIRED} >= left


async def test_a_text_that_expired_at_the_close_while_the_service_was_down_is_held(
    tmp_path: Path,
) -> None:
    """The service stops with texts queued, their validity ending at the close; it
    starts again the next morning: those contacts are held, not expired."""
    store = MemoryStore()
    config = campaigns_config(tick=TICK, feed_ahead=8)
    start = CLOSES - timedelta(seconds=20)
    async with running(tmp_path, start=start, campaigns=config, store=store) as h:
        campaign, queued = await close_on_a_queue(h, "hold")
    morning = NEXT_MORNING + timedelta(minutes=30)
    async with running(tmp_path, start=morning, campaigns=config, store=store) as h:
        await h.until_state(campaign.id, CampaignState.FINISHED, step=1)
        contacts = {c.line: c for c in await h.contacts(campaign.id)}

    assert per_recipient(h.sends()) == dict.fromkeys((la(i) for i in range(30)), 1)
    assert {contacts[line].state for line in queued} == {ContactState.SENT}


# -- progress -------------------------------------------------------------------------------


async def assert_not_finished_early(h: Harness, campaign_id: str) -> None:
    """A finished campaign has no contact pending or queued, and none of its texts is
    still waiting to go."""
    view = await h.view(campaign_id)
    if view.campaign.state is not CampaignState.FINISHED:
        return
    assert not [s for s in WAITING if view.contacts.get(s)], view.contacts
    waiting = {TextStatus.PENDING, TextStatus.QUEUED, TextStatus.SENDING}
    assert not [i for i, s in (await statuses(h, campaign_id)).items() if s in waiting]


async def test_a_campaign_is_never_finished_while_a_contact_waits(tmp_path: Path) -> None:
    start = utc(2026, 1, 5, 15, 59)  # 10:59 in New York, 07:59 in Los Angeles
    async with running(tmp_path, start=start) as h:
        rows = [(ny(i), "N") for i in range(6)] + [(la(i), "N") for i in range(6)]
        campaign = await h.create(h.contacts_file(rows))
        cid = campaign.id

        async def finished() -> bool:
            return await h.state(cid) is CampaignState.FINISHED

        async def check() -> None:
            await assert_not_finished_early(h, cid)

        await h.advance_until(lambda: asyncio.sleep(0, result=h.now() >= start + 55 * SECOND),
                              check=check)  # fmt: skip
        view = await h.view(cid)
        assert view.campaign.state is CampaignState.RUNNING
        assert view.contacts == {ContactState.SENT: 6, ContactState.PENDING: 6}
        await h.advance_until(finished, step=0.05, check=check)
        view = await h.view(cid)

    assert view.contacts == {ContactState.SENT: 12}
    assert view.settled == view.total == 12
    assert per_recipient(h.sends()) == dict.fromkeys((r for r, _ in rows), 1)


class BusyOnce(Simulator):
    """The simulator, taking its time and then asking to retry the first text it is
    given for each recipient (as a carrier does with a 429)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.refused: set[str] = set()

    async def send(self, request: SendRequest) -> Any:
        if request.recipient not in self.refused:
            self.refused.add(request.recipient)
            await self._clock.sleep(1.5)
            raise ProviderError("too many requests", provider_code="429", retryable=True)
        return await super().send(request)


async def test_a_text_the_carrier_asks_to_retry_still_counts_as_waiting(tmp_path: Path) -> None:
    async with running(tmp_path, channel=BusyOnce) as h:
        phones = [ny(i) for i in range(3)]
        campaign = await h.create(h.contacts_file([(p, "N") for p in phones]), senders=[POOL[0]])
        cid = campaign.id

        async def finished() -> bool:
            return await h.state(cid) is CampaignState.FINISHED

        async def check() -> None:
            await assert_not_finished_early(h, cid)

        await h.advance_until(finished, step=0.1, check=check)
        retried = [await h.service.store.history(m) for m in await statuses(h, cid)]

    assert per_recipient(h.sends()) == dict.fromkeys(phones, 1)
    assert all(any(e.reason == Reason.RETRY for e in history) for history in retried)


class ReadCounting(MemoryStore):
    """The in-memory store, counting the reads a campaign's progress could make."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: Counter[str] = Counter()

    async def get(self, message_id: str) -> Any:
        self.reads["get"] += 1
        return await super().get(message_id)

    async def list_campaigns(self, limit: int) -> list[Campaign]:
        self.reads["list_campaigns"] += 1
        return await super().list_campaigns(limit)


async def test_a_running_campaign_follows_its_texts_by_their_outcomes(tmp_path: Path) -> None:
    """The desk hears what became of each text from the service's events: it reads no
    text back from the store, and lists the campaigns once, at start."""
    store = ReadCounting()
    async with running(tmp_path, store=store) as h:
        phones = [ny(i) for i in range(20)]
        campaign = await h.create(h.contacts_file([(p, "N") for p in phones]))
        await h.until_state(campaign.id, CampaignState.FINISHED)
        view = await h.view(campaign.id)

    assert per_recipient(h.sends()) == dict.fromkeys(phones, 1)
    assert view.contacts == {ContactState.SENT: 20}
    assert store.reads == {"list_campaigns": 1}


async def test_after_a_restart_each_queued_contact_is_read_back_once(tmp_path: Path) -> None:
    """Events were missed while the service was down: at start the desk reads what
    became of each queued contact's text, once, then follows the events again."""
    store = ReadCounting()
    sender = POOL[0]
    phones = [ny(i) for i in range(6)]
    async with running(tmp_path, store=store) as h:
        await h.service.pause(sender)  # the texts handed over stay queued
        campaign = await h.create(h.contacts_file([(p, "N") for p in phones]), senders=[sender])
        await h.clock.advance(5)
        queued = (await h.view(campaign.id)).contacts[ContactState.QUEUED]
    store.reads.clear()
    async with running(tmp_path, store=store) as h:
        await h.clock.advance(30)
        assert store.reads == {"list_campaigns": 1, "get": queued}
        await h.service.resume(sender)
        await h.until_state(campaign.id, CampaignState.FINISHED)
        contacts = await h.contacts(campaign.id)

    assert queued == 2
    assert per_recipient(h.sends()) == dict.fromkeys(phones, 1)
    assert {c.state for c in contacts} == {ContactState.SENT}
    assert {c.attempt for c in contacts} == {0}


async def test_a_contact_listed_after_the_import_is_never_texted(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        phones = [ny(i) for i in range(4)]
        campaign = await h.create(h.contacts_file([(p, "N") for p in phones]),
                                  start_at=h.now() + timedelta(minutes=1))  # fmt: skip
        await h.service.dnt_add(ny(2), added_by="contact", reason="replied STOP")
        await h.until_state(campaign.id, CampaignState.FINISHED)
        contacts = {c.phone: c for c in await h.contacts(campaign.id)}
        listed = await h.service.store.get(contacts[ny(2)].message_id or "")

    assert per_recipient(h.sends()) == dict.fromkeys((ny(0), ny(1), ny(3)), 1)
    assert listed is not None
    assert (listed.status, listed.reason) == (TextStatus.FAILED, Reason.DO_NOT_TEXT)
    assert contacts[ny(2)].state is ContactState.SENT  # ended by a rule: settled


async def test_automation_texts_go_ahead_of_a_campaign_on_the_same_number(
    tmp_path: Path,
) -> None:
    sender = POOL[0]
    async with running(tmp_path) as h:
        phones = [ny(i) for i in range(6)]
        campaign = await h.create(h.contacts_file([(p, "N") for p in phones]), senders=[sender])
        await h.until_sent(2)
        urgent = [
            (await h.service.submit(TextRequest(sender=sender, recipient=la(i),
                                                body="Your code is 1234"))).message.id
            for i in range(2)
        ]  # fmt: skip
        await h.until_state(campaign.id, CampaignState.FINISHED)
        await h.until_sent(8)

    order = [s.item_id for s in h.sends()]
    assert order[2:4] == urgent  # ahead of the campaign texts already queued
    assert per_recipient(h.sends()) == dict.fromkeys([*phones, la(0), la(1)], 1)


# -- voice ----------------------------------------------------------------------------------


async def test_a_voice_campaign_calls_each_contact_once_across_a_pause(tmp_path: Path) -> None:
    start = utc(2026, 1, 5, 15, 59, second=50)  # Los Angeles opens in 10 s
    async with running(tmp_path, start=start) as h:
        phones = [ny(i) for i in range(8)] + [la(1)]
        campaign = await h.create(h.contacts_file([(p, "N") for p in phones]), channel="voice",
                                  template="reminder", senders=[POOL[0]])  # fmt: skip
        cid = campaign.id

        async def called(n: int) -> Callable[[], Awaitable[bool]]:
            async def enough() -> bool:
                return len(h.calls()) >= n

            return enough

        await h.advance_until(await called(3), step=0.1)
        await h.during(h.desk.pause(cid))
        before = len(h.calls())
        await h.clock.advance(30)
        assert len(h.calls()) <= before + 1  # at most the call already being placed
        assert await h.state(cid) is CampaignState.PAUSED
        await h.desk.resume(cid)
        await h.until_state(cid, CampaignState.FINISHED, step=0.1)
        contacts = await h.contacts(cid)
        calls = [await h.service.store.get_call(c.message_id or "") for c in contacts]

    placed = h.calls()
    assert per_recipient(placed) == dict.fromkeys(phones, 1)
    assert h.sends() == []  # calls, not texts
    assert min_gap_by_sender(placed)[POOL[0]] >= 1.0
    assert min(p.at for p in placed if p.recipient == la(1)) >= utc(2026, 1, 5, 16)
    assert {c.state for c in contacts} == {ContactState.SENT}
    assert {c.status.value for c in calls if c is not None} == {"Completed"}
    assert {c.campaign_id for c in calls if c is not None} == {cid}


# -- the store ------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/t.db"
    async with open_store(url) as opened:
        yield opened


async def test_the_store_keeps_campaigns_and_their_contacts(store: Store) -> None:
    t0 = datetime(2026, 1, 5, 15, 0, 0, 123456, tzinfo=UTC)
    first = Campaign(
        id="cmp_a", name="Spring", channel=CampaignChannel.TEXT, template="Hi {name}", senders=POOL,
        send_window="08:00-21:00", outside_window=OutsideWindow.HOLD,
        validity=timedelta(hours=10), start_at=None, state=CampaignState.IMPORTING,
        created_at=t0, updated_at=t0, source="/data/contacts.csv",
    )  # fmt: skip
    second = replace(first, id="cmp_b", channel=CampaignChannel.VOICE, template="reminder",
                     outside_window=OutsideWindow.EXPIRE, start_at=t0 + timedelta(hours=1),
                     created_at=t0 + SECOND, updated_at=t0 + SECOND)  # fmt: skip
    await store.create_campaign(first)
    await store.create_campaign(second)
    assert await store.get_campaign("cmp_a") == first
    assert await store.get_campaign("cmp_b") == second
    assert await store.get_campaign("cmp_nope") is None
    assert [c.id for c in await store.list_campaigns(10)] == ["cmp_b", "cmp_a"]  # newest first
    assert [c.id for c in await store.list_campaigns(1)] == ["cmp_b"]

    imported = replace(first, state=CampaignState.RUNNING, accepted=4, rejected=1, duplicates=2,
                       suppressed=1, reject_file="/var/campaigns/cmp_a-rejects.csv", segments=5,
                       projected_finish=t0 + timedelta(minutes=2), start_at=t0 + SECOND,
                       updated_at=t0 + 2 * SECOND)  # fmt: skip
    await store.update_campaign(imported)
    assert await store.get_campaign("cmp_a") == imported

    a, b = POOL
    contacts = [
        Contact(campaign_id="cmp_a", line=line, phone=ny(line), sender=sender, tz=tz,
                fields={"phone": ny(line), "name": f"Zoë {line}"})
        for line, sender, tz in [(9, a, NY), (2, a, NY), (4, b, LA), (5, a, BOTH), (7, a, NY)]
    ]  # fmt: skip
    other = Contact(campaign_id="cmp_b", line=2, phone=ny(2), sender=a, tz=NY, fields={})
    await store.add_contacts(contacts)
    await store.add_contacts([other])

    # Pending contacts of one number in the zones asked for, in file order.
    assert [c.line for c in await store.next_contacts("cmp_a", a, {NY}, 10)] == [2, 7, 9]
    assert [c.line for c in await store.next_contacts("cmp_a", a, {NY}, 2)] == [2, 7]
    assert [c.line for c in await store.next_contacts("cmp_a", a, {BOTH, LA}, 10)] == [5]
    assert await store.next_contacts("cmp_a", a, set(), 10) == []
    assert [c.line for c in await store.next_contacts("cmp_a", b, {NY, LA}, 10)] == [4]
    assert sorted(await store.contact_zones("cmp_a")) == sorted([NY, LA, BOTH])

    queued = replace(contacts[1], state=ContactState.QUEUED, attempt=1, message_id="msg_1")
    expired = replace(contacts[2], state=ContactState.EXPIRED)
    await store.set_contacts([queued, expired])
    assert [c.line for c in await store.next_contacts("cmp_a", a, {NY}, 10)] == [7, 9]
    assert await store.contacts_in("cmp_a", [ContactState.QUEUED], 10) == [queued]
    assert [c.line for c in await store.contacts_in("cmp_a", list(ContactState), 10)] == [
        2, 4, 5, 7, 9
    ]  # fmt: skip
    assert [c.line for c in await store.contacts_in("cmp_a", list(ContactState), 2)] == [2, 4]
    assert sorted(await store.contact_zones("cmp_a")) == sorted([NY, BOTH])
    assert await store.contact_counts("cmp_a") == {
        ContactState.PENDING: 3, ContactState.QUEUED: 1, ContactState.EXPIRED: 1
    }  # fmt: skip
    assert await store.contact_counts("cmp_b") == {ContactState.PENDING: 1}
    assert await store.contact_counts("cmp_nope") == {}


async def test_sqlite_keeps_a_campaign_across_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    t0 = utc(2026, 1, 5, 15)
    campaign = Campaign(
        id="cmp_a", name="Spring", channel=CampaignChannel.TEXT, template="Hi {name}", senders=POOL,
        send_window="22:00-06:00", outside_window=OutsideWindow.EXPIRE,
        validity=timedelta(minutes=90), start_at=t0, state=CampaignState.PAUSED,
        created_at=t0, updated_at=t0, projected_finish=t0 + timedelta(hours=1),
    )  # fmt: skip
    contact = Contact(campaign_id="cmp_a", line=2, phone=ny(1), sender=POOL[0], tz=NY,
                      fields={"name": "Ann"}, state=ContactState.QUEUED, attempt=2,
                      message_id="msg_1")  # fmt: skip
    async with open_store(url) as store:
        await store.create_campaign(campaign)
        await store.add_contacts([contact])
    async with open_store(url) as store:
        assert await store.get_campaign("cmp_a") == campaign
        assert await store.contacts_in("cmp_a", [ContactState.QUEUED], 10) == [contact]


# -- the command line -----------------------------------------------------------------------


def open_window() -> str:
    """A send window open now and for the next hours, in UTC (the contacts' tz column)."""
    now = datetime.now(UTC)
    return f"{now - timedelta(hours=1):%H:%M}-{now + timedelta(hours=3):%H:%M}"


def utc_contacts(path: Path, phones: list[str]) -> Path:
    return write_contacts(path, ("phone", "name", "tz"), [(p, "N", "Etc/UTC") for p in phones])


@pytest.fixture
async def live(home: Path) -> AsyncIterator[Dispatcher]:
    """The service, as ``dispatcher serve`` runs it, in the test's event loop."""
    config = load_config(home=home, env={})
    service = Dispatcher.from_config(config)
    async with (
        service,
        ControlServer(service, config.socket_path, max_line=config.control.max_line),
    ):
        yield service


async def campaign(home: Path, *args: str) -> Run:
    return await dispatcher(home, "campaign", *args)


def create_args(contacts: Path, *more: str) -> list[str]:
    return ["create", "--name", "Spring", "--contacts", str(contacts), "--template",
            "Hi {name}, 20% off today", "--from", ",".join(POOL), "--tz-column", "tz",
            "--send-window", open_window(), *more]  # fmt: skip


SUMMARY_KEYS = {"id", "accepted", "rejected", "duplicates", "suppressed", "reject_file"}


async def test_campaign_create_list_show_pause_resume_and_cancel(
    home: Path, live: Dispatcher
) -> None:
    listed = "+12125550666"
    assert (await dispatcher(home, "dnt", "add", listed)).code == 0
    path = write_contacts(home / "contacts.csv", ("phone", "name", "tz"), [
        (ny(1), "Ann", "Etc/UTC"), ("(212) 555-0002", "Bob", "Etc/UTC"),
        (ny(3), "Cy", "Etc/UTC"), ("not a number", "Di", "Etc/UTC"),
        ("+1 212 555 0001", "Ann again", "Etc/UTC"), (listed, "Ed", "Etc/UTC"),
    ])  # fmt: skip
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat(timespec="seconds")

    created = (await campaign(home, *create_args(path, "--start-at", later, "--json"))).json()

    assert set(created) == SUMMARY_KEYS
    cid = created["id"]
    assert cid.startswith("cmp_")
    assert (created["accepted"], created["rejected"], created["duplicates"],
            created["suppressed"]) == (3, 1, 1, 1)  # fmt: skip
    assert read_rejects(created["reject_file"]) == {  # every row not imported, and why
        5: "phone: 'not a number' is not a phone number ((1) The string supplied did not "
        "seem to be a phone number.)", 6: "duplicate of line 2", 7: "on the Do Not Text list",
    }  # fmt: skip

    listing = (await campaign(home, "list", "--json")).json()
    assert [(c["id"], c["state"], c["total"]) for c in listing["campaigns"]] == [
        (cid, "running", 3)
    ]
    human_list = await campaign(home, "list")
    assert human_list.code == 0, human_list.err
    assert cid in human_list.out
    assert "0/3" in human_list.out  # settled of total
    shown = (await campaign(home, "show", cid, "--json")).json()
    assert shown["contacts"] == {"pending": 3}
    assert shown["start_at"] == later
    assert (shown["total"], shown["done"], shown["pending"], shown["queued"]) == (3, 0, 3, 0)
    human = await campaign(home, "show", cid)
    assert human.out.startswith(f"{cid}  Spring  running  (text, from {', '.join(POOL)})")
    assert "imported: 3 accepted, 1 rejected, 1 duplicates, 1 on the Do Not Text list" in human.out
    assert f"rejected rows: {created['reject_file']}" in human.out

    paused = await campaign(home, "pause", cid)
    assert paused.code == 0, paused.err
    assert paused.out.startswith(f"{cid}  Spring  paused")
    assert "is paused" in assert_clean_error(await campaign(home, "pause", cid), 1)
    assert (await campaign(home, "resume", cid, "--json")).json()["state"] == "running"
    assert "is running" in assert_clean_error(await campaign(home, "resume", cid), 1)
    assert (await campaign(home, "pause", cid, "--json")).json()["state"] == "paused"
    canceled = (await campaign(home, "cancel", cid, "--json")).json()
    assert canceled["state"] == "canceled"
    assert "is canceled" in assert_clean_error(await campaign(home, "cancel", cid), 1)
    assert "is canceled" in assert_clean_error(await campaign(home, "resume", cid), 1)
    unknown = assert_clean_error(await campaign(home, "show", "cmp_nope"), 1)
    assert "no campaign with id 'cmp_nope'" in unknown

    async def all_canceled() -> bool:
        view = (await campaign(home, "show", cid, "--json")).json()
        return bool(view["contacts"] == {"canceled": 3})

    await wait_for(all_canceled, within=30, what="the contacts to be cancelled")
    assert send_log(home) == []


async def test_show_follow_ends_when_the_campaign_finishes(home: Path, live: Dispatcher) -> None:
    phones = [ny(i) for i in range(3)]
    path = utc_contacts(home / "contacts.csv", phones)
    created = (await campaign(home, *create_args(path, "--from", POOL[0], "--json"))).json()

    followed = await campaign(home, "show", created["id"], "--follow")

    assert followed.code == 0, followed.err
    assert f"{created['id']}  Spring  finished" in followed.out
    assert "3/3 settled" in followed.out
    shown = (await campaign(home, "show", created["id"], "--json")).json()
    assert shown["state"] == "finished"
    assert shown["contacts"] == {"sent": 3}
    assert Counter(r["to"] for r in send_log(home)) == dict.fromkeys(phones, 1)


CLI_ERRORS = {
    "a template field without a column": (
        ["--template", "Hi {name}, your {plan} plan"], "the template uses {plan}"),
    "an unknown phone column": (["--phone-column", "mobile"], "no column 'mobile'"),
    "an unknown tz column": (["--tz-column", "zone"], "no time-zone column 'zone'"),
    "a file that does not exist": (["--contacts", "missing.csv"], "missing.csv: no such file"),
    "a bad send window": (["--send-window", "8-21"], "send window '8-21' is not HH:MM-HH:MM"),
    "a start time without offset": (["--start-at", "2026-01-05T10:00"], "with its offset"),
    "a bad validity": (["--validity", "soon"], "validity: 'soon' is not a duration"),
    "an unknown script": (["--channel", "voice", "--template", "nope"], "no script is named"),
    "a bad pool number": (["--from", "+14155550100,12"], "'12'"),
}  # fmt: skip


@pytest.mark.parametrize(("changed", "says"), CLI_ERRORS.values(), ids=CLI_ERRORS.keys())
async def test_campaign_create_with_bad_input_exits_2_and_stores_nothing(
    home: Path, live: Dispatcher, changed: list[str], says: str
) -> None:
    path = utc_contacts(home / "contacts.csv", [ny(1)])

    run = await campaign(home, *create_args(path), *changed)

    assert says in assert_clean_error(run, 2)
    assert (await campaign(home, "list", "--json")).json() == {"campaigns": []}


@pytest.mark.parametrize(
    ("content", "says"),
    [(b"", "the file is empty"), (b"ph\xf6ne,name,tz\n+12125550001,Ann,UTC\n", "not UTF-8")],
    ids=["empty", "header not UTF-8"],
)
async def test_campaign_create_with_a_bad_file_exits_2(
    home: Path, live: Dispatcher, content: bytes, says: str
) -> None:
    path = home / "contacts.csv"
    path.write_bytes(content)
    assert says in assert_clean_error(await campaign(home, *create_args(path)), 2)
    assert (await campaign(home, "list", "--json")).json() == {"campaigns": []}


@pytest.mark.parametrize(
    "args",
    [["--outside-window", "skip"], ["--channel", "fax"]],
    ids=["outside window", "channel"],
)
async def test_campaign_create_with_a_bad_choice_is_a_usage_error(
    home: Path, live: Dispatcher, args: list[str]
) -> None:
    path = utc_contacts(home / "contacts.csv", [ny(1)])
    run = await campaign(home, *create_args(path), *args)
    assert run.code == 2
    assert "usage: dispatcher campaign create" in run.err
    assert "invalid choice" in run.err
    assert (await campaign(home, "list", "--json")).json() == {"campaigns": []}


async def test_campaign_commands_without_a_service_exit_3(home: Path) -> None:
    for args in (["list"], ["show", "cmp_x"], ["pause", "cmp_x"]):
        assert "not running" in assert_clean_error(await campaign(home, *args), 3)


async def test_no_campaign_call_is_placed_after_the_window_closes(tmp_path: Path) -> None:
    closes = utc(2026, 1, 6, 2)  # 21:00 in New York
    pool = [f"+1415555{i:04d}" for i in range(6)]
    config = campaigns_config(tick=TICK)
    async with running(tmp_path, start=closes - 10 * SECOND, campaigns=config) as h:
        phones = [ny(i) for i in range(40)]
        campaign = await h.create(h.contacts_file([(p, "N") for p in phones]), channel="voice",
                                  template="reminder", senders=pool)  # fmt: skip
        await h.until_state(campaign.id, CampaignState.FINISHED, step=60, max_steps=1000)

    placed = h.calls()
    assert per_recipient(placed) == dict.fromkeys(phones, 1)
    assert_in_window(placed, dict.fromkeys(phones, NY))
