"""The engagement report's data: what its page draws, computed from the engagement rows.

Pure, like :mod:`dispatcher.core.metrics` (no I/O, no clock): :func:`build` turns the
engagement rows of a time range into the data the page draws (the answer of the
``report_data`` control command, counted in a worker thread): the totals and rates,
the breakdown by campaign and the time series, with the functions of
:mod:`dispatcher.core.metrics`. The page itself is drawn by the command that writes
it (:mod:`dispatcher.cli.report_page`).

The channels, their names and their rates come with the data, so a channel the
metrics gain (email) gets its totals, series and campaign charts without a change
here; a funnel is drawn for each channel :data:`FUNNELS` describes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dispatcher.core import metrics
from dispatcher.core.channel import Channel
from dispatcher.core.metrics import EngagementRow, MetricsQuery
from dispatcher.errors import InvalidInput

JSON = dict[str, Any]

BUCKETS: Mapping[str, timedelta] = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
"""The steps of the time series a report can ask for."""
HOURLY_UP_TO = timedelta(days=7)
"""Without a bucket asked for, events spanning up to this long are counted per hour,
longer spans per day."""
MAX_POINTS = 2000
"""At most this many buckets in a series (twelve weeks of hours, five years of days)."""


def check_bucket(bucket: str | None, *, prefix: str = "") -> str | None:
    """``bucket`` if it is one of :data:`BUCKETS` (None lets :func:`build` choose)."""
    if bucket is not None and bucket not in BUCKETS:
        raise InvalidInput(
            f"{prefix}bucket: {bucket!r} is not one of {', '.join(BUCKETS)}",
            field=f"{prefix}bucket",
        )
    return bucket


def build(
    rows: Sequence[EngagementRow], *, query: MetricsQuery, bucket: str | None, now: datetime
) -> JSON:
    """What the page draws, from the rows ``query`` matched; ``now`` is when.

    ``bucket`` None: hours when the events span up to :data:`HOURLY_UP_TO`, else days.
    A series over :data:`MAX_POINTS` buckets is refused, naming ``bucket`` (hours) or
    ``since`` (days).
    ``campaign_names`` is left empty: the caller knows the campaigns.
    """
    first = min((row.at for row in rows), default=None)
    last = max((row.at for row in rows), default=None)
    span = last - first if first is not None and last is not None else timedelta(0)
    chosen = check_bucket(bucket) or ("hour" if span <= HOURLY_UP_TO else "day")
    step = BUCKETS[chosen]
    points = math.floor(span / step) + 2 if rows else 0  # an upper bound
    if points > MAX_POINTS:
        field, ask = ("bucket", "day buckets or ") if chosen == "hour" else ("since", "")
        raise InvalidInput(
            f"{field}: the events span {span.days} days, over {MAX_POINTS} {chosen}s; "
            f"ask for {ask}a shorter range (since, until)",
            field=field,
        )
    return {
        "generated_at": _iso(now),
        "since": _iso(query.since),
        "until": _iso(query.until),
        "campaign": query.campaign_id,
        "first_at": _iso(first),
        "last_at": _iso(last),
        "bucket": chosen,
        "channels": [channel.value for channel in metrics.CHANNELS],
        "names": {c.value: list(metrics.NAMES[c]) for c in metrics.CHANNELS},
        "channel_rates": {c.value: list(metrics.CHANNEL_RATES[c]) for c in metrics.CHANNELS},
        "totals": metrics.to_json(metrics.compute(rows)),
        "campaigns": {
            key: metrics.to_json(part) for key, part in metrics.breakdown(rows, "campaign").items()
        },
        "campaign_names": {},
        "series": [
            {"at": _iso(at), **metrics.to_json(part)} for at, part in metrics.series(rows, step)
        ],
    }


def _iso(at: datetime | None) -> str | None:
    return at.isoformat(timespec="microseconds") if at is not None else None


# -- the funnels -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Funnel:
    """A channel's funnel: its stages in order, what drops off, and its rate."""

    title: str
    stages: tuple[str, ...]
    drops: tuple[str, ...]
    rate: str


FUNNELS: Mapping[Channel, Funnel] = {
    Channel.TEXT: Funnel(
        "Texts: Sent → Delivered", ("Sent", "Delivered"), ("Undelivered", "Failed"),
        "delivery_rate",
    ),
    Channel.VOICE: Funnel(
        "Calls: Queued → Ringing → Answered → Completed",
        ("Queued", "Ringing", "Answered", "Completed"),
        ("Unanswered", "Busy", "Failed", "Canceled", "Hangup"), "answer_rate",
    ),
}  # fmt: skip
