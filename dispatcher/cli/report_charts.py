"""The charts of the engagement report's page: inline SVG, nothing fetched.

Every chart is an ``<svg role="img">`` with a ``<title>`` and a ``<desc>``; the page
(:mod:`dispatcher.cli.main.report_page`) puts the exact numbers in a table under it. Every
text value is escaped (campaign names come from users). Horizontal bars draw the
totals, the funnels and the campaigns; lines, a channel's results over time.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dispatcher.core.channel import Channel

NONE = "\N{EN DASH}"
"""What a cell shows for no value (a rate of nothing)."""

_COLORS: Mapping[str, str] = {
    "Sent": "#2563eb", "Delivered": "#16a34a", "Undelivered": "#d97706", "Failed": "#dc2626",
    "Queued": "#64748b", "Ringing": "#0891b2", "Answered": "#16a34a", "Completed": "#2563eb",
    "Unanswered": "#d97706", "Busy": "#ea580c", "Canceled": "#a8a29e", "Hangup": "#db2777",
    "Activity": "#7c3aed", "Play": "#0d9488",
}  # fmt: skip
_PALETTE = ("#4f46e5", "#0d9488", "#c026d3", "#65a30d", "#0284c7", "#b45309", "#be123c",
            "#475569", "#059669", "#9333ea", "#ca8a04", "#0e7490")  # fmt: skip


def esc(value: object) -> str:
    """``value`` as HTML text (quotes too: it may go in an attribute)."""
    return html.escape(str(value), quote=True)


def num(value: int) -> str:
    """A count with thousands separators."""
    return f"{value:,}"


def pct(rate: float | None) -> str:
    """A rate as a percentage, :data:`NONE` for no rate."""
    return NONE if rate is None else f"{rate:.1%}"


def when(iso: str | None, *, bucket: str | None = None) -> str:
    """An ISO time in UTC, to the precision of ``bucket`` (a day, an hour; else seconds)."""
    if iso is None:
        return NONE
    at = datetime.fromisoformat(iso).astimezone(UTC)
    if bucket == "day":
        return f"{at:%Y-%m-%d}"
    if bucket == "hour":
        return f"{at:%Y-%m-%d %H:%M}"
    return f"{at:%Y-%m-%d %H:%M:%S} UTC"


def color_of(name: str, names: Sequence[str]) -> str:
    """The colour of a result: its own, else one of the palette by its place in ``names``."""
    if name in _COLORS:
        return _COLORS[name]
    return _PALETTE[(names.index(name) if name in names else len(name)) % len(_PALETTE)]


def slug(text: str) -> str:
    """``text`` as part of an HTML id."""
    return "".join(c if c.isalnum() else "-" for c in text.lower())


# -- horizontal bars: totals, funnels, campaigns ----------------------------------------


@dataclass(frozen=True, slots=True)
class Bar:
    """A bar of a bar chart: its label, its value, its colour, and a note after the value."""

    label: str
    value: int
    color: str
    note: str = ""


_BAR_W, _LABEL_W, _ROW_H, _BAR_H = 640, 130, 26, 16
_PLOT_W = _BAR_W - _LABEL_W - 150


def bar_chart(
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
        text = f"{bar.label}: {num(bar.value)}" + (f" ({bar.note})" if bar.note else "")
        rows.append(
            f'<g class="row"><text class="label" x="{_LABEL_W - 8}" y="{y + _BAR_H - 3}">'
            f"{esc(bar.label)}</text>"
            f'<rect class="track" x="{_LABEL_W}" y="{y}" width="{_PLOT_W}" height="{_BAR_H}"/>'
            f'<rect class="mark bar" x="{x:.1f}" y="{y}" width="{width:.1f}" height="{_BAR_H}" '
            f'fill="{bar.color}" data-name="{esc(bar.label)}" data-value="{bar.value}">'
            f"<title>{esc(text)}</title></rect>"
            f'<text class="value" x="{_LABEL_W + _PLOT_W + 8}" y="{y + _BAR_H - 3}">'
            f"{esc(num(bar.value))}{esc(' · ' + bar.note if bar.note else '')}</text></g>"
        )
    desc = "; ".join(f"{bar.label} {num(bar.value)}" for bar in bars)
    return _svg(anchor, title, desc=desc, size=(_BAR_W, height), total=top,
                body="".join(rows), kind="bars")  # fmt: skip


def _svg(
    anchor: str, title: str, *, desc: str, size: tuple[int, int], total: int, body: str, kind: str
) -> str:
    width, height = size
    return (
        f'<svg class="chart {kind}" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-labelledby="{anchor}-t {anchor}-d" '
        f'data-total="{total}"><title id="{anchor}-t">{esc(title)}</title>'
        f'<desc id="{anchor}-d">{esc(desc)}</desc>{body}</svg>'
    )


# -- over time: a line per name ----------------------------------------------------------

_LINE_W, _LINE_H = 760, 280
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 16, 14, 44
_MAX_MARKERS = 150


@dataclass(frozen=True, slots=True)
class Plot:
    """What a chart over time draws: a line per name of ``drawn``."""

    bucket: str
    series: Sequence[Mapping[str, Any]]
    channel: Channel
    drawn: Sequence[str]
    names: Sequence[str]  # every name of the channel (for the colours)


def line_chart(anchor: str, title: str, plot: Plot) -> str:
    """A chart over time: a line per drawn name, a dot per point while they are few."""
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
        f"{esc(num(tick))}</text>"
        for tick in ticks
    )
    parts.extend(
        f'<text class="when" x="{x(i):.1f}" y="{_TOP + plot_h + 18}">'
        f"{esc(when(series[i]['at'], bucket=bucket))}</text>"
        for i in _label_indices(count)
    )
    for name in drawn:
        color = color_of(name, names)
        points = " ".join(f"{x(i):.1f},{y(p[channel][name]):.1f}" for i, p in enumerate(series))
        parts.append(
            f'<polyline class="mark line" points="{points}" stroke="{color}" '
            f'data-name="{esc(name)}"><title>{esc(name)}</title></polyline>'
        )
        if count <= _MAX_MARKERS:
            parts.extend(
                f'<circle class="mark dot" cx="{x(i):.1f}" cy="{y(p[channel][name]):.1f}" r="4" '
                f'fill="{color}"><title>{esc(when(p["at"], bucket=bucket))} {esc(name)}: '
                f"{esc(num(p[channel][name]))}</title></circle>"
                for i, p in enumerate(series)
            )
    if not drawn:
        parts.append(
            f'<text class="nothing" x="{_LEFT + plot_w / 2}" y="{_TOP + plot_h / 2}">'
            "No events in this range</text>"
        )
    first = when(series[0]["at"], bucket=bucket) if series else NONE
    last = when(series[-1]["at"], bucket=bucket) if series else NONE
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
