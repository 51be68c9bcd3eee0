"""The engagement report's page: one self-contained HTML document of charts and tables.

:func:`render` turns the data of :func:`dispatcher.core.report.build` (the
``report_data`` answer) into the page ``dispatcher report --out FILE`` writes (and
the demo): inline CSS and inline SVG (:mod:`dispatcher.cli.report_charts`), no
script, nothing fetched (it opens without a network). The exact numbers of every
chart are in the HTML table under it. Every text value is escaped (campaign names
come from users).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dispatcher.cli.report_charts import (
    NONE,
    Bar,
    Plot,
    bar_chart,
    color_of,
    esc,
    line_chart,
    num,
    pct,
    slug,
    when,
)
from dispatcher.core import metrics
from dispatcher.core.channel import Channel
from dispatcher.core.report import FUNNELS, Funnel

__all__ = ["NONE", "NO_CAMPAIGN", "OVER_TIME", "render"]

OVER_TIME: Mapping[Channel, tuple[str, ...]] = {
    Channel.VOICE: ("Queued", "Ringing", "Answered", "Unanswered", "Busy", "Failed", "Canceled",
              "Hangup", "Completed"),
}  # fmt: skip
"""The names drawn over time per channel (others: every name); the table under the
chart has every name with a count."""
_TITLES: Mapping[Channel, str] = {
    Channel.VOICE: "Calls", Channel.TEXT: "Texts", Channel.EMAIL: "Email",
}  # fmt: skip
NO_CAMPAIGN = "No campaign"
Row = Sequence[str | int]


def render(data: Mapping[str, Any]) -> str:
    """The page of a ``report_data`` answer: a complete HTML document."""
    title = f"Engagement report: {_range_text(data)}"
    channels = _channels(data)
    sections = [
        _section("totals", "Totals", [_totals(data, c) for c in channels]),
        _section(
            "funnels",
            "Delivery funnels",
            [_funnel(data, c, FUNNELS[c]) for c in channels if c in FUNNELS],
        ),
        _section(
            "over-time",
            f"Over time, per {data['bucket']}",
            [_over_time(data, channel) for channel in channels],
        ),
        _section("campaigns", "Campaigns", _campaigns(data, channels)),
    ]
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>",
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


def _range_text(data: Mapping[str, Any]) -> str:
    since, until = data["since"], data["until"]
    if since and until:
        return f"{when(since)} to {when(until)}"
    if since:
        return f"since {when(since)}"
    if until:
        return f"until {when(until)}"
    return "all time"


def _campaign_label(data: Mapping[str, Any], key: str) -> str:
    if key == metrics.NO_KEY:
        return NO_CAMPAIGN
    name = data["campaign_names"].get(key)
    return f"{name} ({key})" if name else key


def _header(data: Mapping[str, Any]) -> str:
    events = (
        f"{when(data['first_at'])} to {when(data['last_at'])}"
        if data["first_at"] else "none in this range"
    )  # fmt: skip
    campaign = _campaign_label(data, data["campaign"]) if data["campaign"] else "every campaign"
    facts = [
        ("Time range", _range_text(data) + (" (until not included)" if data["until"] else "")),
        ("Events", events),
        ("Campaign", campaign),
        ("Series step", f"one {data['bucket']} (UTC)"),
        ("Generated", when(data["generated_at"])),
    ]
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    nav = "".join(
        f'<li><a href="#{anchor}">{esc(text)}</a></li>'
        for anchor, text in (("totals", "Totals"), ("funnels", "Funnels"),
                             ("over-time", "Over time"), ("campaigns", "Campaigns"))
    )  # fmt: skip
    return (
        f'<header><h1>Engagement report</h1><dl class="facts">{items}</dl>'
        f'<nav aria-label="Sections"><ul>{nav}</ul></nav></header>'
    )


def _section(anchor: str, heading: str, parts: Iterable[str]) -> str:
    body = "\n".join(parts) or '<p class="empty">Nothing to show.</p>'
    return f'<section id="{anchor}"><h2>{esc(heading)}</h2><div class="grid">{body}</div></section>'


def _figure(anchor: str, caption: str, chart: str, table: str) -> str:
    return f'<figure id="{anchor}"><figcaption>{esc(caption)}</figcaption>{chart}{table}</figure>'


def _table(caption: str, header: Sequence[str], rows: Iterable[Row]) -> str:
    """A table of text cells and counts (a count's cell carries its exact value)."""
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in header)
    body = "".join(
        "<tr>" + "".join(_cell(i, cell) for i, cell in enumerate(row)) + "</tr>" for row in rows
    )
    return (
        f"<table><caption>{esc(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def _cell(index: int, cell: str | int) -> str:
    if isinstance(cell, int):
        return f'<td class="num" data-value="{cell}">{num(cell)}</td>'
    if index == 0:
        return f'<th scope="row">{esc(cell)}</th>'
    return f'<td class="num">{esc(cell)}</td>'


def _channels(data: Mapping[str, Any]) -> list[Channel]:
    """The channels of the data, in its order (each named by its value)."""
    return [Channel(value) for value in data["channels"]]


def _title(channel: Channel) -> str:
    return _TITLES.get(channel, channel.capitalize())


def _counts(part: Mapping[str, Any], channel: Channel) -> Mapping[str, int]:
    counts: Mapping[str, int] = part[channel]
    return counts


def _rates(data: Mapping[str, Any], part: Mapping[str, Any], channel: Channel) -> list[Row]:
    return [
        [rate.replace("_", " "), pct(part["rates"].get(rate))]
        for rate in data["channel_rates"].get(channel, [])
    ]


def _totals(data: Mapping[str, Any], channel: Channel) -> str:
    names: Sequence[str] = data["names"][channel]
    counts = _counts(data["totals"], channel)
    title = f"{_title(channel)}: totals"
    bars = [Bar(name, counts[name], color_of(name, names)) for name in names]
    rows: list[Row] = [[name, counts[name]] for name in names]
    rows += _rates(data, data["totals"], channel)
    table = _table(f"{title} (exact counts)", ["Result", "Count"], rows)
    anchor = f"totals-{slug(channel)}"
    return _figure(anchor, title, bar_chart(f"{anchor}-chart", title, bars), table)


def _funnel(data: Mapping[str, Any], channel: Channel, funnel: Funnel) -> str:
    names: Sequence[str] = data["names"][channel]
    counts = _counts(data["totals"], channel)
    rate = data["totals"]["rates"].get(funnel.rate)
    first = counts[funnel.stages[0]]

    def share(value: int) -> str:
        return f"{value / first:.1%} of {funnel.stages[0]}" if first else ""

    stages = [Bar(name, counts[name], color_of(name, names), share(counts[name]))
              for name in funnel.stages]  # fmt: skip
    drops = [Bar(name, counts[name], color_of(name, names), "dropped") for name in funnel.drops]
    title = f"{funnel.title}; {funnel.rate.replace('_', ' ')} {pct(rate)}"
    anchor = f"funnel-{slug(channel)}"
    rows: list[Row] = [[bar.label, bar.value, bar.note or NONE] for bar in stages]
    rows += [[f"dropped: {bar.label}", bar.value, NONE] for bar in drops]
    rows.append([funnel.rate.replace("_", " "), pct(rate), NONE])
    top = max(bar.value for bar in [*stages, *drops])  # one scale for both
    chart = bar_chart(
        f"{anchor}-stages", f"{funnel.title}: stages", stages, centered=True, top=top
    ) + bar_chart(f"{anchor}-drops", f"{funnel.title}: drop-offs", drops, top=top)
    table = _table(f"{funnel.title} (exact counts)", ["Stage", "Count", "Share"], rows)
    return _figure(anchor, title, chart, table)


def _campaigns(data: Mapping[str, Any], channels: Sequence[Channel]) -> list[str]:
    campaigns: Mapping[str, Mapping[str, Any]] = data["campaigns"]
    keys = sorted(campaigns, key=lambda k: (k == metrics.NO_KEY, k))
    figures = []
    for i, key in enumerate(keys, 1):
        part = campaigns[key]
        label = _campaign_label(data, key)
        charts, tables = [], []
        for channel in sorted(channels, key=lambda c: c is not Channel.TEXT):  # texts first
            names: Sequence[str] = data["names"][channel]
            counts = _counts(part, channel)
            if channel is not Channel.TEXT and not any(counts.values()):
                continue
            title = f"{label}: {_title(channel).lower()}"
            bars = [Bar(name, counts[name], color_of(name, names)) for name in names]
            charts.append(bar_chart(f"campaign-{i}-{slug(channel)}", title, bars))
            rows: list[Row] = [[name, counts[name]] for name in names]
            rows += _rates(data, part, channel)
            tables.append(_table(f"{title} (exact counts)", ["Result", "Count"], rows))
        figures.append(_figure(f"campaign-{i}", label, "".join(charts), "".join(tables)))
    return figures


# -- over time: a line per name ----------------------------------------------------------

_OPEN_TABLE = 24
"""A table over time of up to this many rows is shown open; a longer one, folded."""


def _over_time(data: Mapping[str, Any], channel: Channel) -> str:
    names: Sequence[str] = data["names"][channel]
    series: Sequence[Mapping[str, Any]] = data["series"]
    sums = {name: sum(point[channel][name] for point in series) for name in names}
    drawn = [n for n in OVER_TIME.get(channel, names) if sums.get(n)]
    listed = [n for n in names if sums[n]]
    title = f"{_title(channel)} per {data['bucket']}"
    anchor = f"series-{slug(channel)}"
    chart = line_chart(
        f"{anchor}-chart", title, Plot(data["bucket"], series, channel, drawn, names)
    )
    legend = "".join(
        f'<li><span class="swatch" style="background:{color_of(n, names)}"></span>{esc(n)}</li>'
        for n in drawn
    )
    rows: list[Row] = [
        [when(point["at"], bucket=data["bucket"]), *(point[channel][n] for n in listed)]
        for point in series
    ]
    table = _table(f"{title} (exact counts)", ["Start (UTC)", *listed], rows)
    shown = " open" if len(series) <= _OPEN_TABLE else ""
    more = f"<details{shown}><summary>Numbers per {esc(data['bucket'])}</summary>{table}</details>"
    return _figure(anchor, title, chart + f'<ul class="legend">{legend}</ul>', more)


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
