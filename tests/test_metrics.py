"""Engagement metrics: the pure counting rules (with hypothesis where natural), the
request and answer shapes, and the ``metrics`` command through a real control socket
and as a user runs it.

The scripted history every adapter counts alike (and its counts, worked out by hand)
lives with the store contract: ``tests/test_store_contract.py``.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.config import Config
from dispatcher.control.client import ControlClient
from dispatcher.core import metrics
from dispatcher.core.calls import CallReason, CallStatus, VoiceResult
from dispatcher.core.campaigns import Campaign, CampaignChannel, CampaignState, OutsideWindow
from dispatcher.core.channel import Channel
from dispatcher.core.metrics import (
    BY,
    EMAIL,
    NO_KEY,
    TEXT,
    VOICE,
    EngagementRow,
    Metrics,
    MetricsQuery,
    breakdown,
    compute,
    series,
)
from dispatcher.core.model import Source, TextStatus, transition
from dispatcher.errors import InvalidInput, NotFound
from dispatcher.service import Dispatcher
from dispatcher.store import open_store
from tests import test_cli, test_control
from tests.test_email_metrics import NEWS, SHOP, TOTAL_EMAIL, write_email_history
from tests.test_store_contract import (
    FILTERS,
    OTHER_SENDER,
    SENDER,
    SPRING,
    TOTAL_TEXT,
    TOTAL_VOICE,
    at,
    counts,
    first_events,
    insert,
    insert_call,
    make_call,
    make_message,
    write_history,
)

# The control tests' service on a MemoryStore, its socket and a client of it; and the
# service as ``dispatcher serve`` runs it (SQLite), for the command line.
dispatcher = test_control.dispatcher
server = test_control.server
sock = test_control.sock
client = test_control.client
service = test_cli.service
run = test_cli.dispatcher

TOTAL = {
    "voice": counts(VOICE, TOTAL_VOICE),
    "text": counts(TEXT, TOTAL_TEXT),
    "email": counts(EMAIL, TOTAL_EMAIL),
}
TOTAL_RATES = {"delivery_rate": 0.5, "answer_rate": 4 / 6}


def row(channel: str = "text", **fields: Any) -> EngagementRow:
    return EngagementRow(channel=Channel(channel), item_id="x", at=at(0), **fields)


def nonzero(computed: Metrics) -> dict[tuple[str, str], int]:
    return {
        (channel, name): n
        for channel in metrics.CHANNELS
        for name, n in computed.counts(channel).items()
        if n
    }


# -- the names -------------------------------------------------------------------------


def test_the_names_of_each_channel_in_order() -> None:
    assert VOICE == (
        "Queued", "Ringing", "Answered", "Unanswered", "Machine", "Human", "Hangup", "Busy",
        "Failed", "Canceled", "Completed", "Voicemail Drop", "Play Drop", "Play", "Say",
        "Gather", "Prompt", "Conference", "Notify", "Dial", "Pause", "Record", "Activity",
    )  # fmt: skip
    assert TEXT == ("Sent", "Delivered", "Undelivered", "Activity", "Play", "Failed")
    assert EMAIL == (
        "Sent", "Delivered", "Open", "Click", "Bounce", "Activity", "Unsubscribe", "Complaint",
        "Play",
    )  # fmt: skip
    assert metrics.CHANNELS == ("voice", "text", "email")
    # Every voice result the service records is a name the metrics count.
    assert {r.value for r in VoiceResult} <= set(VOICE)


def test_the_scripted_history_exercises_every_name() -> None:
    assert all(TOTAL["voice"].values())
    assert all(TOTAL["text"].values())


# -- counting rules ----------------------------------------------------------------------

_TAKEN: dict[str, Any] = {"status": "Delivered", "taken": True}
COUNTING = {
    "a text's first carrier event is its Sent": ([row(**_TAKEN)], {"Sent": 1, "Delivered": 1}),
    "a later receipt is not another Sent": (
        [row(status="Sent", taken=True), row(status="Delivered")], {"Sent": 1, "Delivered": 1}
    ),
    "Unreachable is Undelivered": ([row(status="Unreachable", taken=True)],
                                   {"Sent": 1, "Undelivered": 1}),
    "Completed is only Sent": ([row(status="Completed", taken=True)], {"Sent": 1}),
    "a refusal before sending is Failed, not Sent": ([row(status="Failed")], {"Failed": 1}),
    "an unapplied event counts nowhere": (
        [row(applied=False, **_TAKEN), row("voice", status="Ringing", applied=False)], {}
    ),
    "a play counts for the text carrying the link": ([row(kind="play")], {"Play": 1}),
    "an accepted call is Queued": (
        [row("voice", status="Queued", reason=CallReason.ACCEPTED)], {"v:Queued": 1}
    ),
    "a retry back to Queued is not a new call": (
        [row("voice", status="Queued", reason=CallReason.RETRY)], {}
    ),
    "No answer is Unanswered": ([row("voice", status="No answer")], {"v:Unanswered": 1}),
    "statuses that are not counted": (
        [row("voice", status="Placing"), row("voice", status="Initiated"), row(status="Sending")],
        {},
    ),
    "a result counts with its status": (
        [row("voice", status="Answered", result="Human")], {"v:Answered": 1, "v:Human": 1}
    ),
    "a result is a fact, whatever its status": (
        [row("voice", status="Ringing", applied=False, result="Prompt")], {"v:Prompt": 1}
    ),
    "an automation's engagement is an Activity of its source's channel": (
        [row("voice", kind="activity", source_channel=Channel.TEXT),
         row("text", kind="activity", source_channel=Channel.VOICE)],
        {"Activity": 1, "v:Activity": 1},
    ),
    "a source of no counted channel": ([row(kind="activity", source_channel="fax")], {}),
    "an email's first relay event is its Sent": (
        [row("email", status="Bounced", taken=True), row("email", status="Delivered")],
        {"e:Sent": 1, "e:Bounce": 1, "e:Delivered": 1},
    ),
    "email results count every time, whatever the status": (
        [row("email", result=r) for r in ("Open", "Open", "Click", "Unsubscribe", "Complaint")],
        {"e:Open": 2, "e:Click": 1, "e:Unsubscribe": 1, "e:Complaint": 1},
    ),
    "an email's unapplied or uncounted statuses count nowhere": (
        [row("email", status="Delivered", applied=False, taken=True),
         row("email", status="Failed"), row("email", status="Unconfirmed")],
        {},
    ),
    "an email play and an Activity of an email": (
        [row("email", kind="play"), row(kind="activity", source_channel=Channel.EMAIL)],
        {"e:Play": 1, "e:Activity": 1},
    ),
}  # fmt: skip


@pytest.mark.parametrize(("rows", "expected"), COUNTING.values(), ids=COUNTING.keys())
def test_counting_rules(rows: list[EngagementRow], expected: dict[str, int]) -> None:
    """``expected`` names text counts plainly, voice counts as ``v:Name`` and email
    counts as ``e:Name``."""
    prefixes = {"v:": "voice", "e:": "email"}
    wanted = {
        (prefixes[k[:2]], k[2:]) if k[:2] in prefixes else ("text", k): n
        for k, n in expected.items()
    }
    assert nonzero(compute(rows)) == wanted


TRIGGERS = {
    "automation:thanks:msg_1": ("thanks", "msg_1", Channel.TEXT),
    "automation:on:call:call_2": ("on:call", "call_2", Channel.VOICE),
    "automation:solo": ("solo", None, None),
    "call_1:step4": (None, None, None),
    "": (None, None, None),
}


@pytest.mark.parametrize(("trigger", "expected"), TRIGGERS.items())
def test_triggers_name_the_automation_and_the_source(
    trigger: str, expected: tuple[str | None, str | None, Channel | None]
) -> None:
    """``channel``: the channel of the source the store holds (None: it holds none)."""
    rule, source, channel = expected
    assert metrics.parse_trigger(trigger) == (rule, source)
    held = (
        metrics.ActivitySource(channel=channel, sender=SENDER, campaign_id=SPRING)
        if channel
        else None
    )
    made = metrics.activity_row(
        channel=Channel.VOICE, item_id="call_9", at=at(1), trigger=trigger, source=held
    )
    if channel is None:
        assert made is None  # a call's step: its own Activity result counted it already
    else:
        assert made == EngagementRow(
            channel=Channel.VOICE, item_id="call_9", at=at(1), kind="activity", campaign_id=SPRING,
            sender=SENDER, automation=rule, source_channel=channel,
        )  # fmt: skip


def test_a_step_trigger_makes_no_activity_even_with_its_source() -> None:
    """A call's step names its call, but no automation: the call's own Activity result
    counted it already."""
    held = metrics.ActivitySource(channel=Channel.VOICE, sender=SENDER, campaign_id=SPRING)
    made = metrics.activity_row(
        channel=Channel.TEXT, item_id="msg_9", at=at(1), trigger="call_1:step4", source=held
    )
    assert made is None


async def test_an_activity_counts_under_the_channel_the_store_holds_its_source_in(
    tmp_path: Path,
) -> None:
    """Not under a guess from the source's id: ``call_x`` here is a text, ``msg_y`` a
    call; a source the store does not hold counts nowhere."""
    for url in ("memory://", f"sqlite:///{tmp_path}/t.db"):
        async with open_store(url) as store:
            await insert(store, make_message("call_x"))
            await insert_call(store, make_call("msg_y"))
            made = {"m1": "automation:r:call_x", "m2": "automation:r:msg_y",
                    "m3": "automation:r:msg_404"}  # fmt: skip
            for item_id, trigger in made.items():
                await insert(store, msgspec.structs.replace(make_message(item_id), trigger=trigger))

            computed = compute(await store.engagement(MetricsQuery(automation="r")))

            assert (computed.text["Activity"], computed.voice["Activity"]) == (1, 1), url


@settings(max_examples=200)
@given(reported=st.lists(st.sampled_from(list(TextStatus)), max_size=12))
def test_a_text_is_sent_once_at_its_first_carrier_event(reported: list[TextStatus]) -> None:
    message = make_message("msg_1", status=TextStatus.SENDING)
    events = first_events(message)
    for i, status in enumerate(reported, start=1):
        step, message = transition(message, status, at=at(i), source=Source.RECEIPT)
        events.append(step.event)

    rows = metrics.text_rows(message, events)
    computed = compute(rows).text

    took = [e for e in events if e.applied and e.status in metrics.TAKEN]
    assert computed["Sent"] == (1 if took else 0)
    assert [r.at for r in rows if r.taken] == [e.at for e in took[:1]]
    assert computed["Delivered"] + computed["Undelivered"] <= computed["Sent"]
    assert all(r.applied for r in rows)


# -- breakdowns, series and rates ------------------------------------------------------

KEYS = [None, "a", "b"]
rows_strategy = st.lists(
    st.builds(
        EngagementRow,
        channel=st.sampled_from([Channel.TEXT, Channel.VOICE]),
        item_id=st.sampled_from(["msg_1", "call_1"]),
        at=st.integers(min_value=0, max_value=3 * 86_400).map(at),
        kind=st.sampled_from(["event", "play", "activity"]),
        status=st.sampled_from([None, *TextStatus, *CallStatus]),
        result=st.sampled_from([None, *VoiceResult]),
        applied=st.booleans(),
        reason=st.sampled_from([None, "accepted", "retry"]),
        campaign_id=st.sampled_from(KEYS),
        sender=st.sampled_from(KEYS),
        automation=st.sampled_from(KEYS),
        source_channel=st.sampled_from([None, *Channel]),
        taken=st.booleans(),
    ),
    max_size=30,
)


def total(parts: Sequence[Metrics]) -> dict[tuple[str, str], int]:
    summed: Counter[tuple[str, str]] = Counter()
    for part in parts:
        summed.update(nonzero(part))
    return dict(summed)


@settings(max_examples=200)
@given(rows=rows_strategy, by=st.sampled_from(BY))
def test_a_breakdown_adds_up_to_the_total(rows: list[EngagementRow], by: metrics.By) -> None:
    groups = breakdown(rows, by)

    assert total(list(groups.values())) == nonzero(compute(rows))
    assert list(groups) == sorted(groups)
    for key, part in groups.items():
        if key != NO_KEY:
            assert compute([r for r in rows if FILTERS[by](key).matches(r)]) == part


@settings(max_examples=200)
@given(rows=rows_strategy, hours=st.integers(min_value=1, max_value=48))
def test_a_series_adds_up_to_the_total(rows: list[EngagementRow], hours: int) -> None:
    bucket = timedelta(hours=hours)

    points = series(rows, bucket)

    assert total([m for _, m in points]) == nonzero(compute(rows))
    if not rows:
        assert points == []
        return
    starts = [start for start, _ in points]  # contiguous, from the first row's bucket
    assert starts == [starts[0] + i * bucket for i in range(len(starts))]
    assert starts[0] <= min(r.at for r in rows) < starts[0] + bucket
    for start, part in points:
        inside = [r for r in rows if start <= r.at < start + bucket]
        assert part == compute(inside)


def test_a_series_needs_a_bucket() -> None:
    with pytest.raises(InvalidInput, match="bucket"):
        series([], timedelta(0))


def repeated(n: int, channel: str, status: str) -> list[EngagementRow]:
    return [row(channel, status=status, taken=status == "Sent")] * n


RATES = {
    "none sent, none called": ([], None, None),
    "half delivered": (repeated(4, "text", "Sent") + repeated(2, "text", "Delivered"), 0.5, None),
    "sent, none delivered": (repeated(3, "text", "Sent"), 0.0, None),
    "answered, unanswered and busy": (
        repeated(2, "voice", "Answered") + repeated(1, "voice", "No answer")
        + repeated(1, "voice", "Busy") + repeated(5, "voice", "Failed"),
        None, 0.5,
    ),
    "only failed calls": (repeated(2, "voice", "Failed"), None, None),
}  # fmt: skip


@pytest.mark.parametrize(("rows", "delivery", "answer"), RATES.values(), ids=RATES.keys())
def test_rates(rows: list[EngagementRow], delivery: float | None, answer: float | None) -> None:
    assert compute(rows).rates == {"delivery_rate": delivery, "answer_rate": answer}


# -- requests and answers --------------------------------------------------------------

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
TIMES = {
    "2026-03-14T09:00:00+00:00": datetime(2026, 3, 14, 9, tzinfo=UTC),
    "2026-03-14T09:00:00Z": datetime(2026, 3, 14, 9, tzinfo=UTC),
    "2026-03-14T11:00:00+02:00": datetime(2026, 3, 14, 9, tzinfo=UTC),
    "2026-03-14 09:00": datetime(2026, 3, 14, 9, tzinfo=UTC),  # no offset: UTC
    "2026-03-14": datetime(2026, 3, 14, tzinfo=UTC),
    "24h": NOW - timedelta(hours=24),
    "7d": NOW - timedelta(days=7),
    "1h30m": NOW - timedelta(minutes=90),
}


@pytest.mark.parametrize(("text", "expected"), TIMES.items())
def test_times_are_iso_8601_or_a_duration_back_from_now(text: str, expected: datetime) -> None:
    query, by = metrics.request(now=NOW, since=text, campaign="c", sender="s", automation="a")
    assert query == MetricsQuery(since=expected, campaign_id="c", sender="s", automation="a")
    assert by is None


BAD_REQUESTS = {
    "a bad since": ({"since": "yesterday"}, "--since", "'yesterday' is neither"),
    "a bad until": ({"until": "12 parsecs"}, "--until", "ISO 8601"),
    "an empty range": ({"since": "1h", "until": "2h"}, "--until", "must be after --since"),
    "an unknown breakdown": ({"by": "day"}, "--by", "campaign, sender, automation"),
}


@pytest.mark.parametrize(("asked", "field", "says"), BAD_REQUESTS.values(), ids=BAD_REQUESTS)
def test_bad_requests_name_the_option(asked: dict[str, str], field: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=says) as info:
        metrics.request(now=NOW, prefix="--", **asked)
    assert info.value.field == field
    assert str(info.value).startswith(field)


def test_json_has_every_name_of_each_channel_in_order_and_the_rates() -> None:
    answer = metrics.report([])

    assert list(answer) == ["voice", "text", "email", "rates"]
    assert list(answer["voice"]) == list(VOICE)
    assert list(answer["text"]) == list(TEXT)
    assert list(answer["email"]) == list(EMAIL)
    assert {*answer["voice"].values(), *answer["text"].values(), *answer["email"].values()} == {0}
    assert answer["rates"] == {"delivery_rate": None, "answer_rate": None}
    assert json.loads(json.dumps(answer)) == answer


def test_a_breakdown_answer_has_an_object_per_key() -> None:
    rows = [row(campaign_id="c1", **_TAKEN), row(kind="play"), row("voice", status="Busy")]

    answer = metrics.report(rows, "campaign")

    assert answer["by"] == "campaign"
    assert list(answer["breakdown"]) == [NO_KEY, "c1"]
    assert answer["breakdown"]["c1"]["text"]["Sent"] == 1
    assert answer["breakdown"][NO_KEY]["text"]["Play"] == 1
    assert answer["breakdown"][NO_KEY]["voice"]["Busy"] == 1
    assert answer["text"]["Sent"] == 1
    assert answer["text"]["Play"] == 1


def test_csv_rows() -> None:
    answer = metrics.report([row(campaign_id="c1", **_TAKEN)])
    rows = metrics.csv_rows(answer)
    assert rows[0] == ["channel", "name", "count"]
    assert rows[1:] == [
        [channel, name, str(answer[channel][name])]
        for channel in metrics.CHANNELS
        for name in metrics.NAMES[channel]
    ]
    assert ["text", "Sent", "1"] in rows

    by_campaign = metrics.csv_rows(metrics.report([row(campaign_id="c1", **_TAKEN)], "campaign"))
    assert by_campaign[0] == ["key", "channel", "name", "count"]
    assert len(by_campaign) == 1 + len(VOICE) + len(TEXT) + len(EMAIL)
    assert ["c1", "text", "Delivered", "1"] in by_campaign


# -- the socket command --------------------------------------------------------------


async def test_the_metrics_command_over_the_socket(
    dispatcher: Dispatcher, client: ControlClient
) -> None:
    await write_history(dispatcher.store)
    await write_email_history(dispatcher.store)

    answer = await client.call("metrics")
    assert answer == {**TOTAL, "rates": TOTAL_RATES}

    # The history is in March 2026; relative times are read on the service's clock.
    recent = await client.call("metrics", since="1d", until=None)
    assert recent == metrics.report([])
    await dispatcher.store.create_campaign(campaign_named(SPRING, "Spring reminders"))
    year = await client.call("metrics", since="3650d", campaign=SPRING)
    assert year["text"] == counts(TEXT, {"Sent": 3, "Delivered": 2, "Undelivered": 1,
                                         "Activity": 2, "Play": 2})  # fmt: skip
    assert await client.call("metrics", since="3650d", campaign="Spring reminders") == year
    with pytest.raises(NotFound, match="no campaign has the id or name 'Autumn'"):
        await client.call("metrics", campaign="Autumn")  # never counts of zero
    await dispatcher.store.create_campaign(campaign_named("cmp_again", "Spring reminders"))
    with pytest.raises(InvalidInput, match="2 campaigns are named 'Spring reminders'"):
        await client.call("metrics", campaign="Spring reminders")
    window = await client.call("metrics", since=at(11).isoformat(), until=at(20).isoformat())
    assert window["text"] == counts(TEXT, {"Sent": 6, "Delivered": 1, "Failed": 1})

    # The call an automation made is its sender's; the Activity is its source text's.
    by_sender = await client.call("metrics", by="sender", automation="followup")
    assert list(by_sender["breakdown"]) == [SENDER, OTHER_SENDER]
    assert nonzero(Metrics(**by_sender["breakdown"][SENDER])) == {
        ("voice", name): 1 for name in ("Queued", "Ringing", "Answered", "Completed", "Say")
    }
    assert nonzero(Metrics(**by_sender["breakdown"][OTHER_SENDER])) == {("text", "Activity"): 1}
    by_campaign = await client.call("metrics", by="campaign")
    assert set(by_campaign["breakdown"]) == {NO_KEY, SPRING}


def campaign_named(campaign_id: str, name: str) -> Campaign:
    return Campaign(
        id=campaign_id, name=name, channel=CampaignChannel.TEXT, template="Hi",
        senders=(SENDER,), send_window="08:00-21:00", outside_window=OutsideWindow.HOLD,
        validity=timedelta(hours=10), start_at=None, state=CampaignState.FINISHED,
        created_at=at(0), updated_at=at(0),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "field"),
    [({"since": "soon"}, "since"), ({"by": "day"}, "by"), ({"campaign": 7}, "campaign")],
)
async def test_the_metrics_command_refuses_bad_arguments(
    client: ControlClient, args: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        await client.call("metrics", **args)
    assert info.value.field == field


# -- the command line ----------------------------------------------------------------


@pytest.fixture
async def history(service: Config) -> Config:
    """The running service's database holds the scripted history."""
    async with open_store(service.store_url) as store:
        await write_history(store)
        await write_email_history(store)
    return service


async def test_metrics_json(home: Path, history: Config) -> None:
    assert (await run(home, "metrics", "--json")).json() == {**TOTAL, "rates": TOTAL_RATES}

    other = (await run(home, "metrics", "--sender", OTHER_SENDER, "--json")).json()
    assert other["text"] == counts(TEXT, {"Sent": 3, "Undelivered": 2, "Activity": 1})

    window = ("--since", at(11).isoformat(), "--until", at(20).isoformat())
    by = (await run(home, "metrics", *window, "--by", "campaign", "--json")).json()
    assert by["text"]["Sent"] == 6
    # msg_b (its receipt was its Sent) and msg_c; msg_a was sent before the window.
    assert by["breakdown"][SPRING]["text"]["Sent"] == 2
    assert by["breakdown"][NO_KEY]["voice"] == counts(VOICE, {})

    # Email per sender (its From address) and per campaign, every name of the nine.
    senders = (await run(home, "metrics", "--by", "sender", "--json")).json()["breakdown"]
    assert senders[SHOP]["email"] == counts(EMAIL, {"Sent": 1, "Delivered": 1,
                                                    "Unsubscribe": 1, "Complaint": 1})  # fmt: skip
    campaigns = (await run(home, "metrics", "--by", "campaign", "--json")).json()["breakdown"]
    spring = {"Sent": 2, "Delivered": 2, "Open": 2, "Click": 1, "Unsubscribe": 1,
              "Complaint": 1, "Activity": 1, "Play": 1}  # fmt: skip
    assert campaigns[SPRING]["email"] == counts(EMAIL, spring)
    clicked = (await run(home, "metrics", "--automation", "on_click", "--json")).json()
    assert clicked["email"] == counts(EMAIL, {"Activity": 1})


async def test_metrics_of_an_email_sender_by_its_from_address(home: Path, history: Config) -> None:
    shop = {"Sent": 1, "Delivered": 1, "Unsubscribe": 1, "Complaint": 1}
    for sender in (SHOP, "Shop <shop@EXAMPLE.com>"):  # normalised as an email's From is
        one = (await run(home, "metrics", "--sender", sender, "--json")).json()
        assert one["email"] == counts(EMAIL, shop), sender
        assert one["text"] == counts(TEXT, {})  # a text is never sent from an address
    news = (await run(home, "metrics", "--sender", NEWS, "--json")).json()
    assert news["email"]["Sent"] == 2
    for bad in ("ann", "ann@", "+1"):
        refused = await run(home, "metrics", "--sender", bad)
        assert refused.code == 2, bad
        assert refused.err.startswith(f"dispatcher: error: --sender: {bad!r}"), refused.err
    assert "neither a phone number" in (await run(home, "metrics", "--sender", "ann")).err


async def test_metrics_csv(home: Path, history: Config) -> None:
    rows = list(csv.reader((await run(home, "metrics", "--csv")).out.splitlines()))
    assert rows[0] == ["channel", "name", "count"]
    assert {(c, n): int(k) for c, n, k in rows[1:]} == {
        (channel, name): n for channel, names in TOTAL.items() for name, n in names.items()
    }

    thanks = await run(home, "metrics", "--automation", "thanks", "--by", "automation", "--csv")
    rows = list(csv.reader(thanks.out.splitlines()))
    assert rows[0] == ["key", "channel", "name", "count"]
    assert ["thanks", "text", "Play", "1"] in rows
    assert {key for key, *_ in rows[1:]} == {"thanks"}


async def test_metrics_of_a_campaign_by_name_or_id(home: Path, history: Config) -> None:
    async with open_store(history.store_url) as store:
        await store.create_campaign(campaign_named(SPRING, "Spring reminders"))
    by_id = (await run(home, "metrics", "--campaign", SPRING, "--json")).json()
    assert by_id["text"]["Sent"] == 3
    by_name = (await run(home, "metrics", "--campaign", "Spring reminders", "--json")).json()
    assert by_name == by_id
    unknown = await run(home, "metrics", "--campaign", "Autumn")
    assert "no campaign has the id or name 'Autumn'" in test_cli.assert_clean_error(unknown, 1)


async def test_metrics_human(home: Path, history: Config) -> None:
    shown = await run(home, "metrics", "--by", "campaign")
    assert shown.code == 0, shown.err
    for name in ("Voice", "Text", "Voicemail Drop", "Unanswered", SPRING, "delivery rate"):
        assert name in shown.out
    assert "50.0%" in shown.out  # delivery rate: 5 of 10
    assert "66.7%" in shown.out  # answer rate: 4 of 6


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--since", "last tuesday"], "--since"),
        (["--until", "2026-13-01"], "--until"),
        (["--by", "day"], "--by"),
    ],
)
async def test_metrics_bad_input_exits_2_naming_the_option(
    home: Path, history: Config, args: list[str], names: str
) -> None:
    err = test_cli.assert_clean_error(await run(home, "metrics", *args), 2)
    assert names in err
