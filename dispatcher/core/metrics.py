"""Engagement metrics: the product's result counts by channel, for any time range.

Pure, like :mod:`dispatcher.core.model`: no I/O and no clock. The store turns its
histories into :class:`EngagementRow` values (``Store.engagement``); this module
counts them, breaks them down and shapes them for the socket and the command line.

The counts, by channel, in this order:

- voice: Queued, Ringing, Answered, Unanswered, Machine, Human, Hangup, Busy, Failed,
  Canceled, Completed, Voicemail Drop, Play Drop, Play, Say, Gather, Prompt,
  Conference, Notify, Dial, Pause, Record, Activity;
- text: Sent, Delivered, Undelivered, Activity, Play, Failed;
- email: Sent, Delivered, Open, Click, Bounce, Activity, Unsubscribe, Complaint, Play.

How each is counted (``docs/metrics.md`` says the same for operators):

- text **Sent**: a text the carrier took, once, at the time of its first applied
  event among Sent, Delivered, Undelivered, Unreachable and Completed (a receipt can
  beat the acknowledgement: Sending -> Delivered with no Sent event still counts).
  The store marks that event (``EngagementRow.taken``).
- text **Delivered**, **Failed**: applied events of that status; **Undelivered**:
  applied Undelivered and Unreachable events. Inbound texts count nowhere.
- text **Play**: each play of a voice link, for the text carrying the link.
- email **Sent**: an email the relay took, once, at the time of its first applied
  event among Sent, Delivered and Bounced (a notification can beat the relay's answer
  being recorded, as receipts do for texts; the store marks it, ``taken``).
  **Delivered**: applied Delivered events; **Bounce**: applied Bounced events (hard or
  soft, from a delivery status notification).
  **Open**, **Click**, **Unsubscribe**, **Complaint**: events with that result, every
  time (totals, not unique). **Play**: each play of a voice link an email carries.
- voice **Queued**: calls accepted (the applied Queued event with reason
  ``accepted``; a retry back to Queued is not a new call). **Ringing**, **Answered**,
  **Hangup**, **Busy**, **Failed**, **Canceled**, **Completed**: applied events with
  that status; **Unanswered**: applied "No answer" events.
- voice **Machine**, **Human** and every step name: call events whose result is that
  name (a result is a fact recorded once; its event's ``applied`` concerns a status).
- **Activity**: an engagement (text or call) an automation made, whose trigger is
  ``automation:<rule>:<source id>``, counts under the *source's* channel at the time
  the engagement was accepted. The channel is the store's answer, not a guess from the
  id: the table holding the source (:class:`ActivitySource`); a source the store does
  not hold counts nowhere. Voice Activity also counts a call's own Activity results
  (the steps of its script that triggered something); the engagement such a step made
  (trigger ``<call id>:step<N>``) is not counted again.

Every row carries what it is attributed to. An event or a play belongs to its text or
call: its campaign, its sender (the text's or call's own number) and its automation
(the rule in its trigger). An Activity is a result its source got: it counts under
the source's campaign and sender, and under the automation that made it.

Rates: ``delivery_rate`` = Delivered / Sent; ``answer_rate`` = Answered / (Answered +
Unanswered + Busy); None when the denominator is 0.

Channels are :class:`~dispatcher.core.channel.Channel` values: voice, text and email,
in that order in every answer.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any, Literal

from dispatcher.core.calls import Call, CallEvent, CallReason, CallStatus, VoiceResult
from dispatcher.core.channel import Channel
from dispatcher.core.durations import DurationOutOfRange, parse_duration
from dispatcher.core.emails import Email, EmailEvent, EmailStatus, address
from dispatcher.core.model import Event, Message, TextStatus
from dispatcher.core.results import Trigger
from dispatcher.errors import InvalidInput

VOICE: tuple[str, ...] = (
    "Queued", "Ringing", "Answered", "Unanswered", "Machine", "Human", "Hangup", "Busy",
    "Failed", "Canceled", "Completed", "Voicemail Drop", "Play Drop", "Play", "Say",
    "Gather", "Prompt", "Conference", "Notify", "Dial", "Pause", "Record", "Activity",
)  # fmt: skip
TEXT: tuple[str, ...] = ("Sent", "Delivered", "Undelivered", "Activity", "Play", "Failed")
EMAIL: tuple[str, ...] = (
    "Sent", "Delivered", "Open", "Click", "Bounce", "Activity", "Unsubscribe", "Complaint",
    "Play",
)  # fmt: skip
CHANNELS: tuple[Channel, ...] = (Channel.VOICE, Channel.TEXT, Channel.EMAIL)
"""The channels counted, in output order."""
NAMES: Mapping[Channel, tuple[str, ...]] = {
    Channel.VOICE: VOICE, Channel.TEXT: TEXT, Channel.EMAIL: EMAIL,
}  # fmt: skip
CHANNEL_RATES: Mapping[Channel, tuple[str, ...]] = {
    Channel.VOICE: ("answer_rate",),
    Channel.TEXT: ("delivery_rate",),
    Channel.EMAIL: (),
}
"""The rates of each channel."""

By = Literal["campaign", "sender", "automation"]
BY: tuple[By, ...] = ("campaign", "sender", "automation")
NO_KEY = "(none)"
"""The breakdown key of rows with no campaign (sender, automation)."""

Kind = Literal["event", "play", "activity"]

_T = TextStatus
TAKEN: frozenset[TextStatus] = frozenset(
    {_T.SENT, _T.DELIVERED, _T.UNDELIVERED, _T.UNREACHABLE, _T.COMPLETED}
)
"""Text statuses that mean the carrier took the text: the first applied one is Sent."""
_TEXT_NAMES: Mapping[str, str] = {
    _T.DELIVERED: "Delivered", _T.UNDELIVERED: "Undelivered",
    _T.UNREACHABLE: "Undelivered", _T.FAILED: "Failed",
}  # fmt: skip
TEXT_STATUSES: frozenset[TextStatus] = TAKEN | {_T.FAILED}
"""Text statuses whose applied events are engagement rows."""

_C = CallStatus
_VOICE_NAMES: Mapping[str, str] = {
    _C.RINGING: "Ringing", _C.ANSWERED: "Answered", _C.NO_ANSWER: "Unanswered",
    _C.HANGUP: "Hangup", _C.BUSY: "Busy", _C.FAILED: "Failed", _C.CANCELED: "Canceled",
    _C.COMPLETED: "Completed",
}  # fmt: skip
VOICE_STATUSES: frozenset[CallStatus] = frozenset({_C.QUEUED, *map(CallStatus, _VOICE_NAMES)})
"""Call statuses whose applied events are engagement rows (besides every result)."""
_RESULTS = frozenset(r.value for r in VoiceResult) & set(VOICE)

_E = EmailStatus
EMAIL_TAKEN: frozenset[EmailStatus] = frozenset({_E.SENT, _E.DELIVERED, _E.BOUNCED})
"""Email statuses that mean the relay took the email: the first applied one is Sent."""
_EMAIL_RESULTS = frozenset({"Open", "Click", "Unsubscribe", "Complaint"})
"""Email results counted under their own name (Bounce is the status Bounced)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EngagementRow:
    """One countable fact: an event of a text or call, a voice-link play, or an
    engagement an automation made (an Activity of its source's channel)."""

    channel: Channel  # the channel of ``item_id``
    item_id: str  # the text or call (for an activity: the engagement it made)
    at: datetime
    kind: Kind = "event"
    status: str | None = None
    result: str | None = None  # a voice result: Human, Say, Prompt, Activity, ...
    applied: bool = True
    reason: str | None = None
    campaign_id: str | None = None
    sender: str | None = None
    automation: str | None = None  # the rule named in the trigger
    source_channel: Channel | None = None  # activity rows: the channel it counts under
    taken: bool = False  # text events: the first that says the carrier took it (Sent)


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsQuery:
    """Which rows count: ``since <= at < until``, and the attributions asked for."""

    since: datetime | None = None
    until: datetime | None = None
    campaign_id: str | None = None
    sender: str | None = None
    automation: str | None = None

    def matches(self, row: EngagementRow) -> bool:
        return (
            (self.since is None or row.at >= self.since)
            and (self.until is None or row.at < self.until)
            and (self.campaign_id is None or row.campaign_id == self.campaign_id)
            and (self.sender is None or row.sender == self.sender)
            and (self.automation is None or row.automation == self.automation)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Metrics:
    """The counts of each channel (every name, in order) and the rates."""

    voice: dict[str, int]
    text: dict[str, int]
    rates: dict[str, float | None]
    email: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(EMAIL, 0))

    def counts(self, channel: Channel) -> dict[str, int]:
        """Every name of ``channel`` with its count."""
        if channel is Channel.VOICE:
            return self.voice
        return self.text if channel is Channel.TEXT else self.email


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivitySource:
    """The text or call an automation's engagement was made from, as the store holds
    it: its Activity counts under this channel, campaign and sender."""

    channel: Channel
    sender: str
    campaign_id: str | None


# -- rows from histories (the in-memory store; SQLite does the same in SQL) -----------


def parse_trigger(trigger: str | None) -> tuple[str | None, str | None]:
    """``(rule, source id)`` of ``automation:<rule>:<source id>``; ``(None, None)`` for
    any other trigger (a call's step, none). See :class:`Trigger`."""
    found = Trigger.parse(trigger)
    return (found.rule, found.source_id) if found else (None, None)


def automation_range(rule: str | None) -> tuple[str, str]:
    """``[low, high)`` of the triggers an automation writes (every automation when
    ``rule`` is None), for an index range scan. A rule holding ``:`` also takes in
    longer rules; :meth:`MetricsQuery.matches` keeps the exact one."""
    low = Trigger.prefix(rule)
    return low, low[:-1] + chr(ord(":") + 1)


def text_rows(message: Message, events: Iterable[Event]) -> list[EngagementRow]:
    """The rows of a text's history (in the order it was appended)."""
    rows: list[EngagementRow] = []
    taken = False
    automation, _ = parse_trigger(message.trigger)
    for e in events:
        if not e.applied or e.status not in TEXT_STATUSES:
            continue
        first = e.status in TAKEN and not taken
        taken = taken or first
        rows.append(EngagementRow(
            channel=Channel.TEXT, item_id=message.id, at=e.at, status=e.status.value,
            reason=e.reason, campaign_id=message.campaign_id, sender=message.sender,
            automation=automation, taken=first,
        ))  # fmt: skip
    return rows


def call_rows(call: Call, events: Iterable[CallEvent]) -> list[EngagementRow]:
    """The rows of a call's history: its results and its applied, counted statuses."""
    automation, _ = parse_trigger(call.trigger)
    rows: list[EngagementRow] = []
    for e in events:
        if e.result is None and not (e.applied and e.status in VOICE_STATUSES):
            continue
        rows.append(EngagementRow(
            channel=Channel.VOICE, item_id=call.id, at=e.at,
            status=e.status.value if e.status is not None else None,
            result=e.result.value if e.result is not None else None, applied=e.applied,
            reason=e.reason, campaign_id=call.campaign_id, sender=call.sender,
            automation=automation,
        ))  # fmt: skip
    return rows


def email_rows(email: Email, events: Iterable[EmailEvent]) -> list[EngagementRow]:
    """The rows of an email's history: its results and its applied, counted statuses."""
    automation, _ = parse_trigger(email.trigger)
    rows: list[EngagementRow] = []
    taken = False
    for e in events:
        counted_status = e.applied and e.status in EMAIL_TAKEN
        if e.result is None and not counted_status:
            continue
        first = counted_status and not taken
        taken = taken or first
        rows.append(EngagementRow(
            channel=Channel.EMAIL, item_id=email.id, at=e.at,
            status=e.status.value if e.status is not None else None,
            result=e.result.value if e.result is not None else None, applied=e.applied,
            reason=e.reason, campaign_id=email.campaign_id, sender=email.sender,
            automation=automation, taken=first,
        ))  # fmt: skip
    return rows


def play_row(
    *,
    message_id: str,
    at: datetime,
    campaign_id: str | None,
    message: Message | Email | None,
) -> EngagementRow:
    """A play of a voice link carried by ``message_id``, a text or an email (the link's
    campaign, else the text's or email's)."""
    return EngagementRow(
        channel=Channel.EMAIL if isinstance(message, Email) else Channel.TEXT,
        item_id=message_id, at=at, kind="play",
        campaign_id=campaign_id or (message.campaign_id if message else None),
        sender=message.sender if message else None,
        automation=parse_trigger(message.trigger)[0] if message else None,
    )  # fmt: skip


def activity_row(
    *,
    channel: Channel,
    item_id: str,
    at: datetime,
    trigger: str | None,
    source: ActivitySource | None,
) -> EngagementRow | None:
    """The Activity row of an engagement an automation made from ``source`` (the text
    or call its trigger names, as the store holds it), or None when no automation made
    it or the store holds no such source."""
    rule, _ = parse_trigger(trigger)
    if rule is None or source is None:
        return None
    return EngagementRow(
        channel=channel, item_id=item_id, at=at, kind="activity",
        campaign_id=source.campaign_id, sender=source.sender, automation=rule,
        source_channel=source.channel,
    )  # fmt: skip


# -- counting ------------------------------------------------------------------------


def counted(row: EngagementRow) -> Iterator[tuple[Channel, str]]:
    """The ``(channel, name)`` counts one row adds to."""
    if row.kind == "play":
        yield row.channel, "Play"
    elif row.kind == "activity":
        if row.source_channel is not None and row.source_channel in NAMES:
            yield row.source_channel, "Activity"
    else:
        yield from _event_counts(row)


def _event_counts(row: EngagementRow) -> Iterator[tuple[Channel, str]]:
    status = row.status if row.applied else None
    if row.channel is Channel.TEXT:
        if row.taken and status is not None:
            yield Channel.TEXT, "Sent"
        if name := _TEXT_NAMES.get(status or ""):
            yield Channel.TEXT, name
    elif row.channel is Channel.VOICE:
        if status == _C.QUEUED and row.reason == CallReason.ACCEPTED:
            yield Channel.VOICE, "Queued"
        elif name := _VOICE_NAMES.get(status or ""):
            yield Channel.VOICE, name
        if row.result in _RESULTS:
            yield Channel.VOICE, str(row.result)
    elif row.channel is Channel.EMAIL:
        yield from _email_counts(row, status)


def _email_counts(row: EngagementRow, status: str | None) -> Iterator[tuple[Channel, str]]:
    if row.taken and status is not None:
        yield Channel.EMAIL, "Sent"
    if status == _E.DELIVERED:
        yield Channel.EMAIL, "Delivered"
    if status == _E.BOUNCED:
        yield Channel.EMAIL, "Bounce"
    if row.result in _EMAIL_RESULTS:
        yield Channel.EMAIL, str(row.result)


def compute(rows: Iterable[EngagementRow]) -> Metrics:
    return _metrics(Counter(pair for row in rows for pair in counted(row)))


def _metrics(tally: Mapping[tuple[Channel, str], int]) -> Metrics:
    voice = {name: tally.get((Channel.VOICE, name), 0) for name in VOICE}
    text = {name: tally.get((Channel.TEXT, name), 0) for name in TEXT}
    email = {name: tally.get((Channel.EMAIL, name), 0) for name in EMAIL}
    answered = voice["Answered"]
    rates = {
        "delivery_rate": _ratio(text["Delivered"], text["Sent"]),
        "answer_rate": _ratio(answered, answered + voice["Unanswered"] + voice["Busy"]),
    }
    return Metrics(voice=voice, text=text, email=email, rates=rates)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


_KEYS = {
    "campaign": attrgetter("campaign_id"),
    "sender": attrgetter("sender"),
    "automation": attrgetter("automation"),
}


def breakdown(rows: Iterable[EngagementRow], by: By) -> dict[str, Metrics]:
    """The metrics of each campaign (sender, automation), sorted by key; rows without
    one are under ``(none)``."""
    key = _KEYS[by]
    groups: dict[str, list[EngagementRow]] = {}
    for row in rows:
        groups.setdefault(key(row) or NO_KEY, []).append(row)
    return {k: compute(groups[k]) for k in sorted(groups)}


def series(rows: Iterable[EngagementRow], bucket: timedelta) -> list[tuple[datetime, Metrics]]:
    """The metrics of each ``bucket`` (aligned on the Unix epoch, UTC) from the first
    row's to the last row's, empty buckets included: points for a chart."""
    if bucket <= timedelta(0):
        raise InvalidInput("a series bucket must be longer than zero", field="bucket")
    tallies: dict[int, Counter[tuple[Channel, str]]] = {}
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for row in rows:
        index = math.floor((row.at - epoch) / bucket)
        tallies.setdefault(index, Counter()).update(counted(row))
    if not tallies:
        return []
    empty: Counter[tuple[Channel, str]] = Counter()
    return [
        (epoch + i * bucket, _metrics(tallies.get(i, empty)))
        for i in range(min(tallies), max(tallies) + 1)
    ]


# -- requests and answers ------------------------------------------------------------


def parse_time(text: str, *, now: datetime, field: str) -> datetime:
    """An ISO 8601 time (UTC when it names no offset) or a duration back from ``now``
    (``24h``, ``7d``, ``1h30m``)."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        try:
            return now - parse_duration(text, field=field)
        except DurationOutOfRange:
            raise
        except InvalidInput:
            raise InvalidInput(
                f"{field}: {text!r} is neither an ISO 8601 time (2026-03-14T09:00:00Z) nor "
                "a duration back from now (e.g. 90m, 24h, 7d)",
                field=field,
            ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def request(
    *,
    now: datetime,
    since: str | None = None,
    until: str | None = None,
    campaign: str | None = None,
    sender: str | None = None,
    automation: str | None = None,
    by: str | None = None,
    prefix: str = "",
) -> tuple[MetricsQuery, By | None]:
    """The query and breakdown a request asks for; a bad value raises InvalidInput
    naming its field (``prefix`` + name: ``--since`` on the command line)."""
    start = parse_time(since, now=now, field=f"{prefix}since") if since is not None else None
    end = parse_time(until, now=now, field=f"{prefix}until") if until is not None else None
    if start is not None and end is not None and end <= start:
        raise InvalidInput(
            f"{prefix}until ({end.isoformat()}) must be after {prefix}since ({start.isoformat()})",
            field=f"{prefix}until",
        )
    if by is not None and by not in BY:
        raise InvalidInput(f"{prefix}by: {by!r} is not one of {', '.join(BY)}", field=f"{prefix}by")
    query = MetricsQuery(
        since=start, until=end, campaign_id=campaign, sender=sender, automation=automation
    )
    return query, by


_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


def sender_key(value: str, *, field: str, region: str) -> str:
    """A ``sender`` filter as the rows carry it: an email's From address (anything with
    an ``@``), normalised as an email's sender is (a display name kept: ``Shop
    <shop@example.com>``); or a phone number in E.164, a national one read as a number
    of ``region``. Anything else is refused naming ``field``."""
    if _E164.fullmatch(value):
        return value
    if "@" in value:
        return address(value, field=field, display_name=True)
    from dispatcher.core.numbers import normalise  # noqa: PLC0415 - only for national numbers

    try:
        return normalise(value, region, field=field)
    except InvalidInput:
        raise InvalidInput(
            f"{field}: {value!r} is neither a phone number (+14155550123, or national) nor "
            "an email address (shop@example.com)",
            field=field,
        ) from None


def to_json(metrics: Metrics) -> dict[str, Any]:
    """``{"voice": {...}, "text": {...}, "email": {...}, "rates": {...}}``: every name of
    each channel, in order."""
    return {
        **{channel.value: dict(metrics.counts(channel)) for channel in CHANNELS},
        "rates": dict(metrics.rates),
    }


def report(rows: Sequence[EngagementRow], by: By | None = None) -> dict[str, Any]:
    """The answer of the ``metrics`` command: the totals, and with ``by`` the
    ``breakdown`` (one object per key)."""
    answer = to_json(compute(rows))
    if by is not None:
        answer["by"] = by
        answer["breakdown"] = {k: to_json(m) for k, m in breakdown(rows, by).items()}
    return answer


def csv_rows(answer: Mapping[str, Any]) -> list[list[str]]:
    """A ``metrics`` answer as CSV rows with a header: ``channel,name,count``, or with
    a breakdown ``key,channel,name,count``."""
    if "breakdown" in answer:
        header = ["key", "channel", "name", "count"]
        groups: Mapping[str, Mapping[str, Any]] = answer["breakdown"]
        return [header] + [[key, *row] for key, part in groups.items() for row in _counts(part)]
    return [["channel", "name", "count"], *_counts(answer)]


def _counts(answer: Mapping[str, Any]) -> list[list[str]]:
    return [
        [channel.value, name, str(count)]
        for channel in CHANNELS
        for name, count in answer[channel].items()
    ]
