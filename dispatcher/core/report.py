"""The engagement report: one self-contained HTML page of charts and tables.

Two pure halves, like :mod:`dispatcher.metrics` (no I/O, no clock):

- :func:`build` turns the engagement rows of a time range into the data the page
  draws (the answer of the ``report_data`` control command, counted in a worker
  thread): the totals and rates, the breakdown by campaign and the time series,
  with the functions of :mod:`dispatcher.metrics`;
- :func:`render` turns that data into the page: inline CSS and inline SVG, no
  script, nothing fetched (it opens without a network). Every chart is an
  ``<svg role="img">`` with a ``<title>`` and a ``<desc>``, and the exact numbers are
  in the HTML table under it. Every text value is escaped (campaign names come from
  users).

The channels, their names and their rates come with the data, so a channel the
metrics gain (email) gets its totals, series and campaign charts without a change
here; a funnel is drawn for each channel :data:`FUNNELS` describes.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dispatcher.core import metrics
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


# -- the data (in the service, in a worker thread) ------------------------------------


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
        "channels": list(metrics.CHANNELS),
        "names": {channel: list(metrics.NAMES[channel]) for channel in metrics.CHANNELS},
        "channel_rates": {c: list(metrics.CHANNEL_RATES[c]) for c in metrics.CHANNELS},
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


# -- the page ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Funnel:
    """A channel's funnel: its stages in order, what drops off, and its rate."""

    title: str
    stages: tuple[str, ...]
    drops: tuple[str, ...]
    rate: str


FUNNELS: Mapping[str, Funnel] = {
    "text": Funnel(
        "Texts: Sent → Delivered", ("Sent", "Delivered"), ("Undelivered", "Failed"),
        "delivery_rate",
    ),
    "voice": Funnel(
        "Calls: Queued → Ringing → Answered → Completed",
        ("Queued", "Ringing", "Answered", "Completed"),
        ("Unanswered", "Busy", "Failed", "Canceled", "Hangup"), "answer_rate",
    ),
}  # fmt: skip
OVER_TIME: Mapping[str, tuple[str, ...]] = {
    "voice": ("Queued", "Ringing", "Answered", "Unanswered", "Busy", "Failed", "Canceled",
              "Hangup", "Completed"),
}  # fmt: skip
"""The names drawn over time per channel (others: every name); the table under the
chart has every name with a count."""

_COLORS: Mapping[str, str] = {
    "Sent": "#2563eb", "Delivered": "#16a34a", "Undelivered": "#d97706", "Failed": "#dc2626",
    "Queued": "#64748b", "Ringing": "#0891b2", "Answered": "#16a34a", "Completed": "#2563eb",
    "Unanswered": "#d97706", "Busy": "#ea580c", "Canceled": "#a8a29e", "Hangup": "#db2777",
    "Activity": "#7c3aed", "Play": "#0d9488",
}  # fmt: skip
_PALETTE = ("#4f46e5", "#0d9488", "#c026d3", "#65a30d", "#0284c7", "#b45309", "#be123c",
            "#475569", "#059669", "#9333ea", "#ca8a04", "#0e7490")  # fmt: skip
_TITLES: Mapping[str, str] = {"voice": "Calls", "text": "Texts"}
NO_CAMPAIGN = "No campaign"
NONE = "\N{EN DASH}"
"""What a cell shows for no value (a rate of nothing)."""
Row = Sequence[str | int]


def render(data: Mapping[str, Any]) -> str:
    """The page of a ``report_data`` answer: a complete HTML document."""
    title = f"Engagement report: {_range_text(data)}"
    sections = [
        _section("totals", "Totals", [_totals(data, c) for c in data["channels"]]),
        _section(
            "funnels",
            "Delivery funnels",
            [_funnel(data, c, FUNNELS[c]) for c in data["channels"] if c in FUNNELS],
        ),
        _section(
            "over-time",
            f"Over time, per {data['bucket']}",
            [_over_time(data, channel) for channel in data["channels"]],
        ),
        _section("campaigns", "Campaigns", _campaigns(data)),
    ]
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        _header(data),
        "<main>",
        *sections,
        "</main>",
        "</body>",
        "</html>",
        "",
    ])  # fmt: skip


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _n(value: int) -> str:
    return f"{value:,}"


def _pct(rate: float | None) -> str:
    return NONE if rate is None else f"{rate:.1%}"


def _when(iso: str | None, *, bucket: str | None = None) -> str:
    if iso is None:
        return NONE
    at = datetime.fromisoformat(iso).astimezone(UTC)
    if bucket == "day":
        return f"{at:%Y-%m-%d}"
    if bucket == "hour":
        return f"{at:%Y-%m-%d %H:%M}"
    return f"{at:%Y-%m-%d %H:%M:%S} UTC"


def _range_text(data: Mapping[str, Any]) -> str:
    since, until = data["since"], data["until"]
    if since and until:
        return f"{_when(since)} to {_when(until)}"
    if since:
        return f"since {_when(since)}"
    if until:
        return f"until {_when(until)}"
    return "all time"


def _campaign_label(data: Mapping[str, Any], key: str) -> str:
    if key == metrics.NO_KEY:
        return NO_CAMPAIGN
    name = data["campaign_names"].get(key)
    return f"{name} ({key})" if name else key


def _header(data: Mapping[str, Any]) -> str:
    events = (
        f"{_when(data['first_at'])} to {_when(data['last_at'])}"
        if data["first_at"] else "none in this range"
    )  # fmt: skip
    campaign = _campaign_label(data, data["campaign"]) if data["campaign"] else "every campaign"
    facts = [
        ("Time range", _range_text(data) + (" (until not included)" if data["until"] else "")),
        ("Events", events),
        ("Campaign", campaign),
        ("Series step", f"one {data['bucket']} (UTC)"),
        ("Generated", _when(data["generated_at"])),
    ]
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    nav = "".join(
        f'<li><a href="#{anchor}">{_e(text)}</a></li>'
        for anchor, text in (("totals", "Totals"), ("funnels", "Funnels"),
                             ("over-time", "Over time"), ("campaigns", "Campaigns"))
    )  # fmt: skip
    return (
        f'<header><h1>Engagement report</h1><dl class="facts">{items}</dl>'
        f'<nav aria-label="Sections"><ul>{nav}</ul></nav></header>'
    )


def _section(anchor: str, heading: str, parts: Iterable[str]) -> str:
    body = "\n".join(parts) or '<p class="empty">Nothing to show.</p>'
    return f'<section id="{anchor}"><h2>{_e(heading)}</h2><div class="grid">{body}</div></section>'


def _color(name: str, names: Sequence[str]) -> str:
    if name in _COLORS:
        return _COLORS[name]
    return _PALETTE[(names.index(name) if name in names else len(name)) % len(_PALETTE)]


def _figure(anchor: str, caption: str, chart: str, table: str) -> str:
    return f'<figure id="{anchor}"><figcaption>{_e(caption)}</figcaption>{chart}{table}</figure>'


def _table(caption: str, header: Sequence[str], rows: Iterable[Row]) -> str:
    """A table of text cells and counts (a count's cell carries its exact value)."""
    head = "".join(f'<th scope="col">{_e(h)}</th>' for h in header)
    body = "".join(
        "<tr>" + "".join(_cell(i, cell) for i, cell in enumerate(row)) + "</tr>" for row in rows
    )
    return (
        f"<table><caption>{_e(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def _cell(index: int, cell: str | int) -> str:
    if isinstance(cell, int):
        return f'<td class="num" data-value="{cell}">{_n(cell)}</td>'
    if index == 0:
        return f'<th scope="row">{_e(cell)}</th>'
    return f'<td class="num">{_e(cell)}</td>'


# -- horizontal bars: totals, funnels, campaigns ----------------------------------------


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: int
    color: str
    note: str = ""


_BAR_W, _LABEL_W, _ROW_H, _BAR_H = 640, 130, 26, 16
_PLOT_W = _BAR_W - _LABEL_W - 150


def _bars(
    anchor: str, title: str, bars: Sequence[Bar], *, centered: bool = False, top: int | None = None
) -> str:
    """A horizontal bar chart (a funnel's stages when ``centered``); the longest bar is
    ``top`` (default: the largest value)."""
    top = max((bar.value for bar in bars), default=0) if top is None else top
    height = len(bars) * _ROW_H + 8
    rows = []
    for i, bar in enumerate(bars):
        y = 4 + i * _ROW_H
        width = _PLOT_W * bar.value / top if top else 0.0
        x = _LABEL_W + ((_PLOT_W - width) / 2 if centered else 0.0)
        text = f"{bar.label}: {_n(bar.value)}" + (f" ({bar.note})" if bar.note else "")
        rows.append(
            f'<g class="row"><text class="label" x="{_LABEL_W - 8}" y="{y + _BAR_H - 3}">'
            f"{_e(bar.label)}</text>"
            f'<rect class="track" x="{_LABEL_W}" y="{y}" width="{_PLOT_W}" height="{_BAR_H}"/>'
            f'<rect class="mark bar" x="{x:.1f}" y="{y}" width="{width:.1f}" height="{_BAR_H}" '
            f'fill="{bar.color}" data-name="{_e(bar.label)}" data-value="{bar.value}">'
            f"<title>{_e(text)}</title></rect>"
            f'<text class="value" x="{_LABEL_W + _PLOT_W + 8}" y="{y + _BAR_H - 3}">'
            f"{_e(_n(bar.value))}{_e(' · ' + bar.note if bar.note else '')}</text></g>"
        )
    desc = "; ".join(f"{bar.label} {_n(bar.value)}" for bar in bars)
    return _svg(anchor, title, desc=desc, size=(_BAR_W, height), total=top,
                body="".join(rows), kind="bars")  # fmt: skip


def _svg(
    anchor: str, title: str, *, desc: str, size: tuple[int, int], total: int, body: str, kind: str
) -> str:
    width, height = size
    return (
        f'<svg class="chart {kind}" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-labelledby="{anchor}-t {anchor}-d" '
        f'data-total="{total}"><title id="{anchor}-t">{_e(title)}</title>'
        f'<desc id="{anchor}-d">{_e(desc)}</desc>{body}</svg>'
    )


def _counts(part: Mapping[str, Any], channel: str) -> Mapping[str, int]:
    counts: Mapping[str, int] = part[channel]
    return counts


def _rates(data: Mapping[str, Any], part: Mapping[str, Any], channel: str) -> list[Row]:
    return [
        [rate.replace("_", " "), _pct(part["rates"].get(rate))]
        for rate in data["channel_rates"].get(channel, [])
    ]


def _totals(data: Mapping[str, Any], channel: str) -> str:
    names: Sequence[str] = data["names"][channel]
    counts = _counts(data["totals"], channel)
    title = f"{_TITLES.get(channel, channel.capitalize())}: totals"
    bars = [Bar(name, counts[name], _color(name, names)) for name in names]
    rows: list[Row] = [[name, counts[name]] for name in names]
    rows += _rates(data, data["totals"], channel)
    table = _table(f"{title} (exact counts)", ["Result", "Count"], rows)
    anchor = f"totals-{_slug(channel)}"
    return _figure(anchor, title, _bars(f"{anchor}-chart", title, bars), table)


def _funnel(data: Mapping[str, Any], channel: str, funnel: Funnel) -> str:
    names: Sequence[str] = data["names"][channel]
    counts = _counts(data["totals"], channel)
    rate = data["totals"]["rates"].get(funnel.rate)
    first = counts[funnel.stages[0]]

    def share(value: int) -> str:
        return f"{value / first:.1%} of {funnel.stages[0]}" if first else ""

    stages = [Bar(name, counts[name], _color(name, names), share(counts[name]))
              for name in funnel.stages]  # fmt: skip
    drops = [Bar(name, counts[name], _color(name, names), "dropped") for name in funnel.drops]
    title = f"{funnel.title}; {funnel.rate.replace('_', ' ')} {_pct(rate)}"
    anchor = f"funnel-{_slug(channel)}"
    rows: list[Row] = [[bar.label, bar.value, bar.note or NONE] for bar in stages]
    rows += [[f"dropped: {bar.label}", bar.value, NONE] for bar in drops]
    rows.append([funnel.rate.replace("_", " "), _pct(rate), NONE])
    top = max(bar.value for bar in [*stages, *drops])  # one scale for both
    chart = _bars(
        f"{anchor}-stages", f"{funnel.title}: stages", stages, centered=True, top=top
    ) + _bars(f"{anchor}-drops", f"{funnel.title}: drop-offs", drops, top=top)
    table = _table(f"{funnel.title} (exact counts)", ["Stage", "Count", "Share"], rows)
    return _figure(anchor, title, chart, table)


def _campaigns(data: Mapping[str, Any]) -> list[str]:
    campaigns: Mapping[str, Mapping[str, Any]] = data["campaigns"]
    keys = sorted(campaigns, key=lambda k: (k == metrics.NO_KEY, k))
    figures = []
    for i, key in enumerate(keys, 1):
        part = campaigns[key]
        label = _campaign_label(data, key)
        charts, tables = [], []
        for channel in sorted(data["channels"], key=lambda c: c != "text"):  # texts first
            names: Sequence[str] = data["names"][channel]
            counts = _counts(part, channel)
            if channel != "text" and not any(counts.values()):
                continue
            what = _TITLES.get(channel, channel.capitalize())
            title = f"{label}: {what.lower()}"
            bars = [Bar(name, counts[name], _color(name, names)) for name in names]
            charts.append(_bars(f"campaign-{i}-{_slug(channel)}", title, bars))
            rows: list[Row] = [[name, counts[name]] for name in names]
            rows += _rates(data, part, channel)
            tables.append(_table(f"{title} (exact counts)", ["Result", "Count"], rows))
        figures.append(_figure(f"campaign-{i}", label, "".join(charts), "".join(tables)))
    return figures


# -- over time: a line per name ----------------------------------------------------------

_LINE_W, _LINE_H = 760, 280
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 16, 14, 44
_MAX_MARKERS = 150
_OPEN_TABLE = 24
"""A table over time of up to this many rows is shown open; a longer one, folded."""


def _over_time(data: Mapping[str, Any], channel: str) -> str:
    names: Sequence[str] = data["names"][channel]
    series: Sequence[Mapping[str, Any]] = data["series"]
    sums = {name: sum(point[channel][name] for point in series) for name in names}
    drawn = [n for n in OVER_TIME.get(channel, names) if sums.get(n)]
    listed = [n for n in names if sums[n]]
    what = _TITLES.get(channel, channel.capitalize())
    title = f"{what} per {data['bucket']}"
    anchor = f"series-{_slug(channel)}"
    chart = _lines(f"{anchor}-chart", title, Plot(data["bucket"], series, channel, drawn, names))
    legend = "".join(
        f'<li><span class="swatch" style="background:{_color(n, names)}"></span>{_e(n)}</li>'
        for n in drawn
    )
    rows: list[Row] = [
        [_when(point["at"], bucket=data["bucket"]), *(point[channel][n] for n in listed)]
        for point in series
    ]
    table = _table(f"{title} (exact counts)", ["Start (UTC)", *listed], rows)
    shown = " open" if len(series) <= _OPEN_TABLE else ""
    more = f"<details{shown}><summary>Numbers per {_e(data['bucket'])}</summary>{table}</details>"
    return _figure(anchor, title, chart + f'<ul class="legend">{legend}</ul>', more)


@dataclass(frozen=True, slots=True)
class Plot:
    """What a chart over time draws: a line per name of ``drawn``."""

    bucket: str
    series: Sequence[Mapping[str, Any]]
    channel: str
    drawn: Sequence[str]
    names: Sequence[str]  # every name of the channel (for the colours)


def _lines(anchor: str, title: str, plot: Plot) -> str:
    bucket, series, channel, drawn, names = (
        plot.bucket, plot.series, plot.channel, plot.drawn, plot.names
    )  # fmt: skip
    plot_w, plot_h = _LINE_W - _LEFT - _RIGHT, _LINE_H - _TOP - _BOTTOM
    peak = max((point[channel][n] for point in series for n in drawn), default=0)
    top, ticks = _ticks(peak)
    count = len(series)

    def x(i: int) -> float:
        return _LEFT + (plot_w * i / (count - 1) if count > 1 else plot_w / 2)

    def y(value: int) -> float:
        return _TOP + plot_h - plot_h * value / top

    parts = [f'<line class="axis" x1="{_LEFT}" y1="{y(0):.1f}" x2="{_LEFT + plot_w}" '
             f'y2="{y(0):.1f}"/>']  # fmt: skip
    parts.extend(
        f'<line class="grid" x1="{_LEFT}" y1="{y(tick):.1f}" x2="{_LEFT + plot_w}" '
        f'y2="{y(tick):.1f}"/><text class="tick" x="{_LEFT - 6}" y="{y(tick) + 4:.1f}">'
        f"{_e(_n(tick))}</text>"
        for tick in ticks
    )
    parts.extend(
        f'<text class="when" x="{x(i):.1f}" y="{_TOP + plot_h + 18}">'
        f"{_e(_when(series[i]['at'], bucket=bucket))}</text>"
        for i in _label_indices(count)
    )
    for name in drawn:
        color = _color(name, names)
        points = " ".join(f"{x(i):.1f},{y(p[channel][name]):.1f}" for i, p in enumerate(series))
        parts.append(
            f'<polyline class="mark line" points="{points}" stroke="{color}" '
            f'data-name="{_e(name)}"><title>{_e(name)}</title></polyline>'
        )
        if count <= _MAX_MARKERS:
            parts.extend(
                f'<circle class="mark dot" cx="{x(i):.1f}" cy="{y(p[channel][name]):.1f}" r="4" '
                f'fill="{color}"><title>{_e(_when(p["at"], bucket=bucket))} {_e(name)}: '
                f"{_e(_n(p[channel][name]))}</title></circle>"
                for i, p in enumerate(series)
            )
    if not drawn:
        parts.append(
            f'<text class="nothing" x="{_LEFT + plot_w / 2}" y="{_TOP + plot_h / 2}">'
            "No events in this range</text>"
        )
    first = _when(series[0]["at"], bucket=bucket) if series else NONE
    last = _when(series[-1]["at"], bucket=bucket) if series else NONE
    desc = f"{count} points from {first} to {last}; highest: " + (
        ", ".join(f"{n} {max(p[channel][n] for p in series)}" for n in drawn) or "none"
    )
    return _svg(anchor, title, desc=desc, size=(_LINE_W, _LINE_H), total=peak,
                body="".join(parts), kind="lines")  # fmt: skip


def _ticks(peak: int) -> tuple[int, list[int]]:
    """The top of the y axis for ``peak`` and its ticks: round steps, at most five."""
    peak = max(peak, 1)
    raw = peak / 4
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = max(1, next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw))
    top = math.ceil(peak / step) * step
    return top, list(range(0, top + 1, step))


def _label_indices(count: int, most: int = 6) -> list[int]:
    if count <= 0:
        return []
    k = min(count, most)
    return sorted({round(i * (count - 1) / (k - 1)) for i in range(k)} if k > 1 else {0})


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower())


_CSS = """
:root { color-scheme: light; --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, "DejaVu Sans", "Helvetica Neue", Arial, sans-serif;
  color: var(--ink); background: #f8fafc; }
header, main { max-width: 1400px; margin: 0 auto; padding: 16px 24px; }
header { border-bottom: 1px solid var(--line); background: #fff; }
h1 { margin: 0 0 8px; font-size: 22px; }
h2 { margin: 24px 0 8px; font-size: 18px; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; }
nav ul { display: flex; gap: 16px; list-style: none; padding: 0; margin: 8px 0 0; }
.grid { display: grid; gap: 16px;
  grid-template-columns: repeat(auto-fit, minmax(min(100%, 560px), 1fr)); }
figure { margin: 0; padding: 12px 16px; background: #fff; border: 1px solid var(--line);
  border-radius: 6px; min-width: 0; overflow-x: auto; }
figcaption { font-weight: 600; margin-bottom: 6px; }
svg.chart { display: block; max-width: 100%; height: auto; margin: 6px 0; }
svg text { font-size: 12px; fill: var(--ink); }
svg .label, svg .tick { text-anchor: end; }
svg .when, svg .nothing { text-anchor: middle; fill: var(--muted); }
svg .value { fill: var(--muted); }
svg .track { fill: #f1f5f9; }
svg .axis { stroke: #94a3b8; }
svg .grid { stroke: var(--line); }
svg .line { fill: none; stroke-width: 2; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
caption { text-align: left; color: var(--muted); padding-bottom: 4px; }
th, td { padding: 2px 10px; border-bottom: 1px solid var(--line); text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
thead th { border-bottom: 1px solid #cbd5e1; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; list-style: none; padding: 0;
  margin: 4px 0; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 5px;
  border-radius: 2px; vertical-align: -1px; }
details summary { cursor: pointer; color: var(--muted); }
.empty { color: var(--muted); }
"""
