"""The engagement report: the pure renderer (numbers, names, escaping, nothing fetched),
the ``report_data`` command through a real control socket, ``dispatcher report`` as a
user runs it against ``dispatcher serve`` on the simulator, and the page in a real
headless Chromium driven over the DevTools protocol (charts painted in their colours,
no console error, no request leaving the file, no script run from a campaign's name).

Chromium is Debian's ``chromium`` (``scripts/test`` installs it; ``CHROMIUM`` names
another binary). Without it the browser tests fail, saying how to install it: they
never skip.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import os
import re
import shutil
import signal
import struct
import zlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dispatcher.cli import report_page
from dispatcher.control.client import ControlClient
from dispatcher.core import metrics, report
from dispatcher.core.campaigns import Campaign, CampaignChannel, CampaignState, OutsideWindow
from dispatcher.core.channel import Channel
from dispatcher.core.metrics import EMAIL, NO_KEY, TEXT, VOICE, EngagementRow, MetricsQuery
from dispatcher.errors import InvalidInput
from dispatcher.service import Dispatcher
from dispatcher.store.memory import MemoryStore
from tests import test_cli, test_control
from tests.helpers import Service, free_port, wait_for
from tests.test_email_metrics import write_email_history
from tests.test_metrics import TOTAL, TOTAL_RATES
from tests.test_store_contract import SPRING, at, write_history

# The control tests' service on a MemoryStore, its socket and a client of it.
dispatcher = test_control.dispatcher
server = test_control.server
sock = test_control.sock
client = test_control.client
run = test_cli.dispatcher

EVIL = "<script>alert(1)</script>"
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
DEADLINE = 30.0
SCREENSHOT_FOR_THE_LEAD = Path("/tmp/report.png")


async def scripted_data() -> dict[str, Any]:
    """``report_data`` of the store contract's scripted history (every name counts at
    least once), its campaign named by a user who tried a script."""
    store = MemoryStore()
    await write_history(store)
    await write_email_history(store)
    rows = await store.engagement(MetricsQuery())
    data = report.build(rows, query=MetricsQuery(), bucket=None, now=NOW)
    data["campaign_names"] = {SPRING: EVIL}
    return data


@pytest.fixture
async def data() -> dict[str, Any]:
    return await scripted_data()


# -- reading the page back ---------------------------------------------------------------


class Tables(HTMLParser):
    """Every table of a page by caption: its rows of cell texts (a count's cell gives
    its exact ``data-value``)."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._caption: list[str] | None = None
        self._rows: list[list[str]] = []
        self._cell: list[str] | None = None
        self._exact = False
        self.caption = ""
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._rows = []
        elif tag == "caption":
            self._caption = []
        elif tag == "tr":
            self._rows.append([])
        elif tag in ("td", "th"):
            value = dict(attrs).get("data-value")
            self._cell = [] if value is None else [value]
            self._exact = value is not None

    def handle_endtag(self, tag: str) -> None:
        if tag == "caption" and self._caption is not None:
            self.caption = "".join(self._caption)
            self._caption = None
        elif tag in ("td", "th") and self._cell is not None:
            self._rows[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self.tables[self.caption] = self._rows

    def handle_data(self, data: str) -> None:
        if self._caption is not None:
            self._caption.append(data)
        elif self._cell is not None and not self._exact:
            self._cell.append(data)


def counts_in(page: str, caption: str) -> dict[str, int]:
    """A ``Result | Count`` table's counts (its rate rows left out)."""
    rows = Tables(page).tables[caption]
    return {name: int(value) for name, value in rows[1:] if value.isdigit()}


class Fetches(HTMLParser):
    """What a page would fetch: elements that load something, attributes naming a
    resource, CSS ``url()`` and ``@import`` (user text is data, not markup)."""

    LOADERS = frozenset({"script", "link", "img", "iframe", "object", "embed", "source",
                         "video", "audio", "image", "use", "base", "form"})  # fmt: skip

    def __init__(self, page: str) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_style = False
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_style = tag == "style"
        if tag in self.LOADERS:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name in ("src", "srcset", "xlink:href", "action", "poster", "data") or (
                name == "href" and not (value or "").startswith("#")
            ):
                self.found.append(f"{tag} {name}={value}")
            if name == "style":
                self._css(value or "")

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self._css(data)

    def _css(self, css: str) -> None:
        self.found += re.findall(r"url\(|@import", css, flags=re.IGNORECASE)


def assert_self_contained(page: str) -> None:
    """Nothing in the page is fetched, and nothing in it names a web address."""
    assert page.startswith("<!DOCTYPE html>")
    assert Fetches(page).found == []
    assert "http://" not in page.lower()
    assert "https://" not in page.lower()


# -- the renderer ------------------------------------------------------------------------


def test_every_name_and_count_is_in_the_totals(data: dict[str, Any]) -> None:
    page = report_page.render(data)
    assert counts_in(page, "Calls: totals (exact counts)") == TOTAL["voice"]
    assert counts_in(page, "Texts: totals (exact counts)") == TOTAL["text"]
    assert counts_in(page, "Email: totals (exact counts)") == TOTAL["email"]
    rows = Tables(page).tables
    assert ["delivery rate", "50.0%"] in rows["Texts: totals (exact counts)"]
    assert ["answer rate", "66.7%"] in rows["Calls: totals (exact counts)"]
    for channel, names in (("voice", VOICE), ("text", TEXT), ("email", EMAIL)):
        for name in names:  # a bar per name, with its count
            count = TOTAL[channel][name]
            assert f'data-name="{escape(name)}" data-value="{count}"' in page, (channel, name)


def test_the_funnels(data: dict[str, Any]) -> None:
    tables = Tables(report_page.render(data)).tables
    texts = tables["Texts: Sent → Delivered (exact counts)"]
    assert texts[1:] == [
        ["Sent", "10", "100.0% of Sent"],
        ["Delivered", "5", "50.0% of Sent"],
        ["dropped: Undelivered", "2", report_page.NONE],
        ["dropped: Failed", "2", report_page.NONE],
        ["delivery rate", "50.0%", report_page.NONE],
    ]
    calls = tables["Calls: Queued → Ringing → Answered → Completed (exact counts)"]
    assert [row[:2] for row in calls[1:]] == [
        ["Queued", "8"], ["Ringing", "4"], ["Answered", "4"], ["Completed", "3"],
        ["dropped: Unanswered", "1"], ["dropped: Busy", "1"], ["dropped: Failed", "1"],
        ["dropped: Canceled", "1"], ["dropped: Hangup", "1"], ["answer rate", "66.7%"],
    ]  # fmt: skip


def test_each_campaign_has_its_chart_and_numbers(data: dict[str, Any]) -> None:
    page = report_page.render(data)
    for key, label in ((SPRING, f"{EVIL} ({SPRING})"), (NO_KEY, report_page.NO_CAMPAIGN)):
        expected = data["campaigns"][key]
        assert counts_in(page, f"{label}: texts (exact counts)") == expected["text"]
        assert counts_in(page, f"{label}: calls (exact counts)") == expected["voice"]
        assert counts_in(page, f"{label}: email (exact counts)") == expected["email"]
        assert any(expected["text"].values())
        assert any(expected["email"].values())
    assert page.index(escape(EVIL)) < page.index(report_page.NO_CAMPAIGN + ": texts")


def test_the_series_tables_add_up_to_the_totals(data: dict[str, Any]) -> None:
    tables = Tables(report_page.render(data)).tables
    for channel, title in (("voice", "Calls"), ("text", "Texts"), ("email", "Email")):
        header, *rows = tables[f"{title} per hour (exact counts)"]
        assert header[0] == "Start (UTC)"
        assert len(rows) == len(data["series"]) == 1
        sums = {name: sum(int(row[i]) for row in rows) for i, name in enumerate(header) if i}
        assert sums == {n: c for n, c in TOTAL[channel].items() if c}


def test_user_text_is_escaped_everywhere(data: dict[str, Any]) -> None:
    sneaky = '"><img src=x onerror=alert(2)> & co'
    data["campaign_names"][SPRING] = sneaky
    data["campaigns"][EVIL] = data["campaigns"].pop(NO_KEY)  # a key is escaped too
    data["campaign"] = SPRING
    page = report_page.render(data)
    assert escape(sneaky) in page
    assert escape(EVIL) in page
    assert sneaky not in page
    assert EVIL not in page
    assert_self_contained(page)


def test_the_page_is_self_contained_and_accessible(data: dict[str, Any]) -> None:
    page = report_page.render(data)
    assert_self_contained(page)
    svgs = re.findall(r"<svg\b[^>]*>.*?</svg>", page, flags=re.DOTALL)
    assert len(svgs) == 3 + 2 * 2 + 3 + 2 * 3  # totals, funnels (2 each), series, campaigns
    for svg in svgs:
        labelled = re.search(r'aria-labelledby="([^"]+)-t \1-d"', svg)
        assert labelled, svg[:200]
        assert 'role="img"' in svg
        assert re.search(rf'<title id="{labelled[1]}-t">[^<]+</title>', svg)
        assert re.search(rf'<desc id="{labelled[1]}-d">[^<]+</desc>', svg)
    figures = re.findall(r"<figure\b.*?</figure>", page, flags=re.DOTALL)
    assert figures
    assert all("<svg" in f and "<table>" in f and "<caption>" in f for f in figures)


def test_the_header_says_the_range_and_when(data: dict[str, Any]) -> None:
    page = report_page.render(data)
    assert "<dt>Time range</dt><dd>all time</dd>" in page
    assert "<dt>Generated</dt><dd>2026-03-15 12:00:00 UTC</dd>" in page
    assert "<dt>Campaign</dt><dd>every campaign</dd>" in page
    data.update(since=at(0).isoformat(), until=at(3600).isoformat(), campaign=SPRING)
    page = report_page.render(data)
    span = f"{at(0):%Y-%m-%d %H:%M:%S} UTC to {at(3600):%Y-%m-%d %H:%M:%S} UTC"
    assert f"<dt>Time range</dt><dd>{span} (until not included)</dd>" in page
    assert f"<dt>Campaign</dt><dd>{escape(EVIL)} ({SPRING})</dd>" in page
    assert f"<title>Engagement report: {span}</title>" in page


def test_an_empty_range_still_makes_a_page() -> None:
    data = report.build([], query=MetricsQuery(since=NOW), bucket=None, now=NOW)
    assert data["series"] == []
    assert data["campaigns"] == {}
    assert data["first_at"] is None
    page = report_page.render(data)
    assert_self_contained(page)
    assert "No events in this range" in page
    assert "<dt>Events</dt><dd>none in this range</dd>" in page
    assert counts_in(page, "Texts: totals (exact counts)") == dict.fromkeys(TEXT, 0)
    assert ["delivery rate", report_page.NONE] in Tables(page).tables[
        "Texts: totals (exact counts)"
    ]
    assert '<section id="campaigns"><h2>Campaigns</h2><div class="grid"><p class="empty">' in page


# -- the data --------------------------------------------------------------------------


def rows_over(span: timedelta, n: int = 10) -> list[EngagementRow]:
    return [
        EngagementRow(
            channel=Channel.TEXT,
            item_id=f"msg_{i}",
            at=NOW + span * i / (n - 1),
            status="Delivered",
            taken=True,
            campaign_id="cmp_1",
        )
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("span", "asked", "chosen", "points"),
    [
        (timedelta(hours=5), None, "hour", 6),
        (timedelta(days=7), None, "hour", 7 * 24 + 1),
        (timedelta(days=8), None, "day", 9),
        (timedelta(days=8), "hour", "hour", 8 * 24 + 1),
        (timedelta(hours=5), "day", "day", 1),
    ],
)
def test_the_bucket_is_asked_for_or_follows_the_span(
    span: timedelta, asked: str | None, chosen: str, points: int
) -> None:
    data = report.build(rows_over(span), query=MetricsQuery(), bucket=asked, now=NOW)
    assert data["bucket"] == chosen
    assert len(data["series"]) == points
    assert sum(p["text"]["Delivered"] for p in data["series"]) == 10
    assert data["totals"] == metrics.to_json(metrics.compute(rows_over(span)))
    assert list(data["campaigns"]) == ["cmp_1"]


def test_too_many_points_or_an_unknown_bucket_are_refused() -> None:
    with pytest.raises(InvalidInput, match="day buckets") as hours:
        report.build(rows_over(timedelta(days=100)), query=MetricsQuery(), bucket="hour", now=NOW)
    assert hours.value.field == "bucket"
    with pytest.raises(InvalidInput, match="shorter range") as days:
        report.build(rows_over(timedelta(days=2500)), query=MetricsQuery(), bucket=None, now=NOW)
    assert days.value.field == "since"
    with pytest.raises(InvalidInput, match="'week' is not one of hour, day") as week:
        report.check_bucket("week", prefix="--")
    assert week.value.field == "--bucket"


# -- the socket command ------------------------------------------------------------------


async def test_the_report_data_command(dispatcher: Dispatcher, client: ControlClient) -> None:
    await write_history(dispatcher.store)
    await write_email_history(dispatcher.store)
    await dispatcher.store.create_campaign(Campaign(
        id=SPRING, name=EVIL, channel=CampaignChannel.TEXT, template="Hi",
        senders=("+15550000001",), send_window="08:00-21:00", outside_window=OutsideWindow.HOLD,
        validity=timedelta(hours=10), start_at=None, state=CampaignState.FINISHED,
        created_at=NOW, updated_at=NOW,
    ))  # fmt: skip

    answer = await client.call("report_data")
    assert answer["totals"] == {**TOTAL, "rates": TOTAL_RATES}
    assert answer["campaign_names"] == {SPRING: EVIL}
    assert set(answer["campaigns"]) == {SPRING, NO_KEY}
    assert answer["bucket"] == "hour"
    assert answer["names"] == {"voice": list(VOICE), "text": list(TEXT), "email": list(EMAIL)}
    assert answer["channels"] == list(metrics.CHANNELS)
    generated = datetime.fromisoformat(answer["generated_at"])
    assert abs(generated - datetime.now(UTC)) < timedelta(minutes=1)
    assert answer["since"] is None
    assert answer["until"] is None

    spring = await client.call("report_data", campaign=SPRING, bucket="day")
    assert list(spring["campaigns"]) == [SPRING]
    assert spring["campaign"] == SPRING
    assert spring["bucket"] == "day"
    assert spring["series"][0]["at"] == "2026-03-14T00:00:00.000000+00:00"
    assert spring["totals"]["text"]["Sent"] == 3

    # The history is in March 2026; relative times are read on the service's clock.
    recent = await client.call("report_data", since="1d")
    assert recent["series"] == []
    assert datetime.fromisoformat(recent["since"]) < generated
    window = await client.call("report_data", since=at(11).isoformat(), until=at(20).isoformat())
    assert window["totals"]["text"]["Sent"] == 6
    assert (
        counts_in(report_page.render(window), "Texts: totals (exact counts)")
        == window["totals"]["text"]
    )


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"since": "soon"}, "since"),
        ({"bucket": "week"}, "bucket"),
        ({"campaign": 7}, "campaign"),
        ({"by": "campaign"}, "by"),
    ],
)
async def test_the_report_data_command_refuses_bad_arguments(
    client: ControlClient, args: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        await client.call("report_data", **args)
    assert info.value.field == field


# -- dispatcher report, as a user runs it --------------------------------------------------

SPRING_SALE = 'Spring <sale> & "friends"'
TEXTED_OK, UNDELIVERED, NOT_IN_SERVICE, REJECTED = (
    "+15550300001", "+15550300002", "+15550300003", "+15550300004",
)  # fmt: skip
ANSWERS, BUSY, NO_ANSWER = "+15550400001", "+15550400002", "+15550400003"
CONFIG = f"""
[voice]
calls_per_second = 20
[simulator]
undelivered = ["{UNDELIVERED}"]
not_in_service = ["{NOT_IN_SERVICE}"]
rejected = ["{REJECTED}"]
busy = ["{BUSY}"]
no_answer = ["{NO_ANSWER}"]
"""
FINAL_TEXTS = {"Delivered", "Undelivered", "Unreachable", "Failed", "Unsent", "Completed"}
FINAL_CALLS = {"Completed", "Hangup", "Busy", "No answer", "Failed", "Canceled"}


@dataclass(frozen=True, slots=True)
class History:
    service: Service
    campaigns: dict[str, str]  # name -> id


@pytest.fixture
async def history(home: Path) -> AsyncIterator[History]:
    """``dispatcher serve`` on the simulator, after two campaigns, two texts of an
    operator and three calls have all ended."""
    (home / "dispatcher.toml").write_text(CONFIG)
    service = Service(home, config=home / "dispatcher.toml")
    await service.start()
    try:
        async with ControlClient(service.socket) as control:
            ids = {
                SPRING_SALE: await campaign(control, home, SPRING_SALE,
                                            [TEXTED_OK, UNDELIVERED, "+15550300005"],
                                            ["+15550000011", "+15550000012"]),
                EVIL: await campaign(control, home, EVIL, ["+15550300006", REJECTED],
                                     ["+15550000013"]),
            }  # fmt: skip
            for to in ("+15550300007", NOT_IN_SERVICE):
                await control.call("submit", **{"from": "+15550000014"}, to=to, body="Hi")
            for to in (ANSWERS, BUSY, NO_ANSWER):
                await control.call("call", **{"from": "+15550000015"}, to=to,
                                   script=[{"say": "Your table is ready."}])  # fmt: skip

            async def all_ended() -> bool:
                status = await control.call("status")
                shown = [await control.call("campaign_show", id=i) for i in ids.values()]
                return (
                    all(c["state"] == "finished" for c in shown)
                    and set(status["counts"]) <= FINAL_TEXTS
                    and set(status["calls"]["counts"]) <= FINAL_CALLS
                    and sum(status["calls"]["counts"].values()) == 3
                )

            await wait_for(all_ended, within=DEADLINE, what="every text and call to end")
        yield History(service, ids)
    finally:
        service.stop()


async def campaign(
    control: ControlClient, home: Path, name: str, phones: Sequence[str], senders: list[str]
) -> str:
    contacts = home / f"contacts-{len(phones)}.csv"
    contacts.write_text("phone,tz\n" + "".join(f"{p},UTC\n" for p in phones))
    now = datetime.now(UTC)  # a send window open now, whatever the time of day
    window = f"{now - timedelta(hours=1):%H:%M}-{now + timedelta(hours=3):%H:%M}"
    created = await control.call(
        "campaign_create", name=name, contacts=str(contacts), template="Spring is here",
        **{"from": senders}, tz_column="tz", send_window=window,
    )  # fmt: skip
    campaign_id: str = created["id"]
    return campaign_id


@pytest.mark.acceptance
async def test_dispatcher_report_end_to_end(home: Path, history: History, tmp_path: Path) -> None:
    out = tmp_path / "out" / "report.html"
    out.parent.mkdir()
    written, totals, by_campaign = await asyncio.gather(
        run(home, "report", "--out", str(out), "--bucket", "hour"),
        run(home, "metrics", "--json"),
        run(home, "metrics", "--by", "campaign", "--json"),
    )
    assert written.code == 0, written.err
    assert written.out == f"{out.resolve()}\n"
    page = out.read_text(encoding="utf-8")
    assert_self_contained(page)

    # The numbers are those of ``dispatcher metrics``, and those the history made.
    expected = totals.json()
    assert counts_in(page, "Texts: totals (exact counts)") == expected["text"]
    assert counts_in(page, "Calls: totals (exact counts)") == expected["voice"]
    assert {k: v for k, v in expected["text"].items() if v} == {
        "Sent": 6, "Delivered": 4, "Undelivered": 1, "Failed": 2,
    }  # fmt: skip
    calls = expected["voice"]
    assert (calls["Queued"], calls["Answered"], calls["Busy"], calls["Unanswered"]) == (3, 1, 1, 1)
    assert calls["Completed"] == calls["Say"] == 1
    parts = by_campaign.json()["breakdown"]
    assert set(parts) == {*history.campaigns.values(), NO_KEY}
    for name, campaign_id in history.campaigns.items():
        label = f"{name} ({campaign_id})"
        assert counts_in(page, f"{label}: texts (exact counts)") == parts[campaign_id]["text"]
        assert escape(label) in page
    assert EVIL not in page
    assert SPRING_SALE not in page

    await check_in_browser(out, tmp_path, screenshot=SCREENSHOT_FOR_THE_LEAD)

    # One campaign, since an hour ago, per day.
    spring = history.campaigns[SPRING_SALE]
    only = tmp_path / "spring.html"
    one = await run(home, "report", "--out", str(only), "--campaign", spring,
                    "--since", "1h", "--bucket", "day")  # fmt: skip
    assert one.code == 0, one.err
    page = only.read_text(encoding="utf-8")
    texts = counts_in(page, f"{SPRING_SALE} ({spring}): texts (exact counts)")
    assert texts == parts[spring]["text"]
    assert f"<dt>Campaign</dt><dd>{escape(SPRING_SALE)} ({spring})</dd>" in page
    assert escape(EVIL) not in page
    assert "Texts per day (exact counts)" in Tables(page).tables


async def test_dispatcher_report_refuses_what_it_cannot_do(home: Path, tmp_path: Path) -> None:
    elsewhere = home / "not-running"
    missing = tmp_path / "no-such-folder" / "report.html"
    runs = await asyncio.gather(
        run(home, "report", "--out", str(missing)),
        run(home, "report", "--out", str(tmp_path)),
        run(home, "report", "--out", str(tmp_path / "r.html"), "--since", "soon"),
        run(home, "report", "--out", str(tmp_path / "r.html"), "--bucket", "week"),
        run(elsewhere, "report", "--out", str(tmp_path / "r.html")),
    )
    no_folder, a_folder, bad_since, bad_bucket, not_running = runs
    assert str(missing) in test_cli.assert_clean_error(no_folder, 2)
    assert f"cannot write {tmp_path}: it is a folder" in test_cli.assert_clean_error(a_folder, 2)
    assert "--since" in test_cli.assert_clean_error(bad_since, 2)
    assert bad_bucket.code == 2
    assert "--bucket: invalid choice: 'week'" in bad_bucket.err
    assert "not running" in test_cli.assert_clean_error(not_running, 3)
    assert not (tmp_path / "r.html").exists()


@pytest.mark.acceptance
async def test_dispatcher_report_says_when_the_page_cannot_be_written(
    home: Path, history: History
) -> None:
    full = await run(home, "report", "--out", "/dev/full")  # every write: no space left
    err = test_cli.assert_clean_error(full, 2)
    assert "--out: cannot write /dev/full: No space left on device" in err


# -- in a real browser ---------------------------------------------------------------------


async def test_the_page_in_a_headless_browser(data: dict[str, Any], tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(report_page.render(data), encoding="utf-8")
    visit = await check_in_browser(page, tmp_path)
    titles = [chart["title"] for chart in visit.charts]
    assert len(titles) == 16
    assert f"{EVIL} ({SPRING}): texts" in titles  # shown as text, never run
    assert {"Email: totals", f"{EVIL} ({SPRING}): email"} <= set(titles)
    assert visit.text.count(EVIL) >= 3  # heading, chart title, table caption


async def test_the_browser_check_sees_console_errors(tmp_path: Path) -> None:
    """The harness is not blind: a broken page is caught."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><title>broken</title><p>x</p><script>console.error('bad thing');"
        "alert('hi');undefinedFunction();</script>",
        encoding="utf-8",
    )
    async with browser(tmp_path) as tab:
        visit = await tab.visit(page, tmp_path / "broken.png")
    assert any("bad thing" in error for error in visit.errors), visit.errors
    assert any("undefinedFunction" in error for error in visit.errors), visit.errors
    assert visit.dialogs == ["hi"]


async def check_in_browser(page: Path, tmp_path: Path, *, screenshot: Path | None = None) -> Visit:
    """Open the report in Chromium and check it drew: every chart sized, every chart
    with a count painted, a table under each, the bars in their colours on the
    screenshot, nothing fetched, no console error, no dialog."""
    async with browser(tmp_path) as tab:
        visit = await tab.visit(page, tmp_path / "report.png")
    assert visit.errors == []
    assert visit.dialogs == []
    assert visit.requests == [page.as_uri()]
    assert visit.scripts == 0
    assert visit.charts
    for chart in visit.charts:
        assert chart["width"] > 300, chart
        assert chart["height"] > 40, chart
        assert chart["painted"] >= (1 if chart["total"] > 0 else 0), chart
    assert visit.figures
    assert all(charts >= 1 and tables >= 1 for charts, tables in visit.figures), visit.figures
    assert sum(charts for charts, _ in visit.figures) == len(visit.charts)
    assert visit.samples, "no bar wide enough to sample"
    for fill, pixel in visit.samples:
        assert close(pixel, rgb(fill)), (fill, pixel)
    assert_a_real_picture(visit.screenshot, visit.size)
    if screenshot is not None:
        await asyncio.to_thread(screenshot.write_bytes, visit.screenshot)
    return visit


# -- Chromium over the DevTools protocol -----------------------------------------------------

INSPECT = """(() => {
  const charts = [...document.querySelectorAll('svg.chart')].map(svg => {
    const box = svg.getBoundingClientRect();
    const marks = [...svg.querySelectorAll('.mark')];
    return {
      title: svg.querySelector('title').textContent, width: box.width, height: box.height,
      total: Number(svg.dataset.total),
      painted: marks.filter(m => { const b = m.getBBox(); return b.width > 0 || b.height > 0; })
        .length,
    };
  });
  const bars = [...document.querySelectorAll('svg.bars rect.bar')].map(bar => {
    const b = bar.getBoundingClientRect();
    return {fill: bar.getAttribute('fill'), x: b.x + scrollX, y: b.y + scrollY,
            width: b.width, height: b.height};
  }).filter(b => b.width >= 8 && b.height >= 8);
  const seen = new Set();
  return {
    charts, figures: [...document.querySelectorAll('figure')].map(
      f => [f.querySelectorAll('svg.chart').length, f.querySelectorAll('table').length]),
    scripts: document.scripts.length, text: document.body.innerText,
    bars: bars.filter(b => !seen.has(b.fill) && seen.add(b.fill)).slice(0, 6),
  };
})()"""


@dataclass(slots=True)
class Visit:
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    charts: list[dict[str, Any]] = field(default_factory=list)
    figures: list[list[int]] = field(default_factory=list)  # [charts, tables] of each
    scripts: int = 0
    text: str = ""
    samples: list[tuple[str, tuple[int, int, int]]] = field(default_factory=list)
    screenshot: bytes = b""
    size: tuple[int, int] = (0, 0)


class DevTools:
    """One page's DevTools websocket: commands and their answers, and the events."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._next = 0
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self._dismissing: set[asyncio.Task[dict[str, Any]]] = set()

    async def read(self) -> None:
        async for message in self._ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            answer = json.loads(message.data)
            waiting = self._answers.pop(answer.get("id", -1), None)
            if waiting is not None and not waiting.done():
                waiting.set_result(answer)
            elif "method" in answer:
                self.events.append(answer)
                self._arrived.set()
                if answer["method"] == "Page.javascriptDialogOpening":  # or the page hangs
                    dismiss = self.send("Page.handleJavaScriptDialog", accept=True)
                    self._dismissing.add(task := asyncio.create_task(dismiss))
                    task.add_done_callback(self._dismissing.discard)
        for waiting in self._answers.values():
            waiting.cancel()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        answer = self._answers[self._next] = asyncio.get_running_loop().create_future()
        await self._ws.send_json({"id": self._next, "method": method, "params": params})
        async with asyncio.timeout(DEADLINE):
            reply = await answer
        assert "error" not in reply, (method, reply)
        result: dict[str, Any] = reply["result"]
        return result

    async def event(self, method: str) -> dict[str, Any]:
        async with asyncio.timeout(DEADLINE):
            while True:
                self._arrived.clear()
                if found := next((e for e in self.events if e["method"] == method), None):
                    return found
                await self._arrived.wait()

    def seen(self, method: str) -> list[dict[str, Any]]:
        return [e["params"] for e in self.events if e["method"] == method]

    async def visit(self, page: Path, shot: Path) -> Visit:
        for domain in ("Page", "Runtime", "Log", "Network"):
            await self.send(f"{domain}.enable")
        await self.send("Emulation.setDeviceMetricsOverride", width=1280, height=900,
                        deviceScaleFactor=1, mobile=False)  # fmt: skip
        navigated = await self.send("Page.navigate", url=page.as_uri())
        assert "errorText" not in navigated, navigated
        await self.event("Page.loadEventFired")
        await self.evaluate("document.fonts.ready.then(() => true)")
        found = await self.evaluate(INSPECT)
        layout = await self.send("Page.getLayoutMetrics")
        width, height = (math.ceil(layout["cssContentSize"][k]) for k in ("width", "height"))
        full = await self.screenshot(x=0, y=0, width=width, height=height)
        await asyncio.to_thread(shot.write_bytes, full)
        samples = []
        for bar in found["bars"]:
            x, y = bar["x"] + bar["width"] / 2 - 1, bar["y"] + bar["height"] / 2 - 1
            pixels = png_pixels(await self.screenshot(x=x, y=y, width=2, height=2))
            samples.append((bar["fill"], pixels[0][0]))
        return Visit(
            errors=self.errors(), dialogs=[d["message"] for d in
                                           self.seen("Page.javascriptDialogOpening")],
            requests=[r["request"]["url"] for r in self.seen("Network.requestWillBeSent")],
            charts=found["charts"], figures=found["figures"], scripts=found["scripts"],
            text=found["text"], samples=samples, screenshot=full, size=(width, height),
        )  # fmt: skip

    async def evaluate(self, expression: str) -> Any:
        done = await self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                               awaitPromise=True)  # fmt: skip
        assert "exceptionDetails" not in done, done
        return done["result"]["value"]

    async def screenshot(self, **clip: float) -> bytes:
        taken = await self.send("Page.captureScreenshot", format="png",
                                captureBeyondViewport=True, clip={**clip, "scale": 1})  # fmt: skip
        return base64.b64decode(taken["data"])

    def errors(self) -> list[str]:
        console = [
            " ".join(str(a.get("value", a.get("description", ""))) for a in e["args"])
            for e in self.seen("Runtime.consoleAPICalled")
            if e["type"] in ("error", "assert")
        ]
        thrown = [
            e["exceptionDetails"].get("exception", {}).get("description")
            or e["exceptionDetails"]["text"]
            for e in self.seen("Runtime.exceptionThrown")
        ]
        logged = [e["entry"]["text"] for e in self.seen("Log.entryAdded")
                  if e["entry"]["level"] == "error"]  # fmt: skip
        return [*console, *thrown, *logged]


def chromium() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail(
            "Chromium is not installed: scripts/test installs it with "
            "`apt-get install -y --no-install-recommends chromium` (or set CHROMIUM to a "
            "Chromium or Chrome binary); the report's browser tests need it",
            pytrace=False,
        )
    return found


@contextlib.asynccontextmanager
async def browser(tmp_path: Path) -> AsyncIterator[DevTools]:
    """Headless Chromium on about:blank, its page's DevTools; killed at the end (its
    whole process group), whatever happened."""
    port = free_port()
    log = tmp_path / "chromium.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
            "--hide-scrollbars", "--force-device-scale-factor=1", "--window-size=1280,900",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            f"--remote-debugging-port={port}", "about:blank",
            stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=output,
            start_new_session=True,
        )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:
            targets: list[dict[str, Any]] = []

            async def listening() -> bool:
                if process.returncode is not None:
                    raise AssertionError(f"Chromium exited early:\n{log.read_text()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"http://127.0.0.1:{port}/json") as answer:
                        targets[:] = [t for t in await answer.json() if t["type"] == "page"]
                return bool(targets)

            await wait_for(listening, within=DEADLINE, what="Chromium's DevTools to answer")
            url = targets[0]["webSocketDebuggerUrl"]
            async with session.ws_connect(url, max_msg_size=0) as ws:
                tools = DevTools(ws)
                reader = asyncio.create_task(tools.read())
                try:
                    yield tools
                finally:
                    await ws.close()
                    await asyncio.wait_for(reader, DEADLINE)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await asyncio.wait_for(process.wait(), DEADLINE)


# -- PNG, without Pillow -----------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n"


def png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    assert data.startswith(PNG), data[:16]
    offset = len(PNG)
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        yield kind, data[offset + 8 : offset + 8 + length]
        offset += 12 + length  # length, kind, body, CRC


def png_header(data: bytes) -> tuple[int, int, int, int]:
    """Width, height, bit depth and colour type."""
    kind, body = next(png_chunks(data))
    assert kind == b"IHDR"
    width, height, depth, colour = struct.unpack(">IIBB", body[:10])
    return width, height, depth, colour


def png_pixels(data: bytes) -> list[list[tuple[int, int, int]]]:
    """The RGB pixels of a small 8-bit RGB or RGBA PNG, rows of columns."""
    width, height, depth, colour = png_header(data)
    assert depth == 8
    assert colour in (2, 6)
    size = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(body for kind, body in png_chunks(data) if kind == b"IDAT"))
    stride = width * size
    previous = bytearray(stride)
    rows = []
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - size] if i >= size else 0
            up = previous[i]
            corner = previous[i - size] if i >= size else 0
            line[i] = (line[i] + _predict(kind, left, up, corner)) & 0xFF
        rows.append([(line[o], line[o + 1], line[o + 2]) for o in range(0, stride, size)])
        previous = line
    return rows


def _predict(kind: int, left: int, up: int, corner: int) -> int:
    if kind == 0:
        return 0
    if kind == 1:
        return left
    if kind == 2:
        return up
    if kind == 3:
        return (left + up) // 2
    guess = left + up - corner
    near = min((abs(guess - left), 0), (abs(guess - up), 1), (abs(guess - corner), 2))
    return (left, up, corner)[near[1]]


def assert_a_real_picture(data: bytes, size: tuple[int, int]) -> None:
    """A PNG of the whole page, with content: one flat colour compresses to almost
    nothing and its filtered scanlines hold a handful of byte values."""
    width, height, depth, _ = png_header(data)
    assert (width, height) == size
    assert width >= 800
    assert height >= 1000
    assert depth == 8
    idat = b"".join(body for kind, body in png_chunks(data) if kind == b"IDAT")
    assert len(idat) > 50_000, len(idat)
    assert len(set(zlib.decompress(idat)[::13])) > 64


def rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def close(a: Sequence[int], b: Sequence[int], tolerance: int = 3) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))
