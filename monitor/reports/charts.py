"""Provides the report's charts as inline SVG: pure functions from figures to markup.

No script, no external asset, no font file: each chart is one ``<svg>`` element with a
``viewBox`` (it scales to a phone's width), a ``<title>`` for screen readers, and a
``<title>`` per bar or cell as its tooltip. Every piece of text is escaped here, so the
template can include the result as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Protocol

from markupsafe import Markup, escape

from monitor.reports.aggregate import WEEKDAYS, Bucket, PolicyDay
from monitor.reports.formatting import DASH, duration
from monitor.reports.tabular import fact_key

MET = "#2f855a"
BREACHED = "#c53030"
P50 = "#2b6cb0"
P90 = "#dd6b20"
INK = "#1a202c"
MUTED = "#718096"
GRID = "#e2e8f0"
EMPTY = "#f1f5f9"

_FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif\""
_STEPS = (
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
    172800,
    432000,
    864000,
)


def _svg(width: int, height: int, label: str, body: list[str]) -> Markup:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(label)}" class="chart" {_FONT} font-size="12">'
        f"<title>{escape(label)}</title>"
    )
    return Markup(head + "".join(body) + "</svg>")


def _text(
    x: float,
    y: float,
    text: str,
    *,
    anchor: str = "middle",
    fill: str = MUTED,
    size: int = 12,
    weight: str = "normal",
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}" '
        f'font-size="{size}" font-weight="{weight}">{escape(text)}</text>'
    )


class Daily(Protocol):
    """A day's clocks: the whole report's (DayRow) or one policy's (PolicyDay)."""

    @property
    def day(self) -> date:
        """The local date."""

    @property
    def met(self) -> int:
        """Clocks met that day."""

    @property
    def breached(self) -> int:
        """Clocks breached that day."""

    @property
    def percent_met(self) -> float | None:
        """% met that day."""


def _day_label(row: Daily, count: int) -> str:
    if count <= 14:
        return f"{WEEKDAYS[row.day.weekday()]} {row.day.day}"
    return f"{row.day.day}/{row.day.month}"


def daily_met(days: Sequence[Daily]) -> Markup:
    """Bars of each day's % met (0-100 %)."""
    width, height, left, right, top, bottom = 960, 220, 44, 12, 24, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    body: list[str] = []
    for tick in (0, 25, 50, 75, 100):
        y = top + plot_h * (1 - tick / 100)
        body.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
        )
        body.append(_text(left - 6, y + 4, f"{tick}%", anchor="end"))
    count = max(1, len(days))
    slot = plot_w / count
    bar = min(72.0, slot * 0.6)
    every = max(1, round(count / 10))
    for index, row in enumerate(days):
        x = left + slot * index + (slot - bar) / 2
        centre = x + bar / 2
        value = row.percent_met
        if index % every == 0:
            body.append(_text(centre, height - bottom + 16, _day_label(row, count)))
        if value is None:
            body.append(_text(centre, top + plot_h - 6, DASH))
            continue
        bar_h = max(1.0, plot_h * value / 100)
        tip = f"{row.day.isoformat()}: {value:.1f} % met ({row.met} met, {row.breached} breached)"
        body.append(
            f'<rect x="{x:.1f}" y="{top + plot_h - bar_h:.1f}" width="{bar:.1f}" '
            f'height="{bar_h:.1f}" rx="3" fill="{P50}"><title>{escape(tip)}</title></rect>'
        )
        if count <= 14:
            body.append(_text(centre, top + plot_h - bar_h - 6, f"{value:.1f}%", fill=INK, size=11))
    return _svg(width, height, "Daily % met", body)


def _step(highest: int) -> int:
    for step in _STEPS:
        if highest / step <= 5:
            return step
    return _STEPS[-1] * (1 + highest // (_STEPS[-1] * 5))


def daily_first_response(days: Sequence[PolicyDay], target: int | None = None) -> Markup:
    """Lines of each day's first-response p50 and p90 (counted time), and the target."""
    width, height, left, right, top, bottom = 960, 240, 60, 12, 28, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [
        v for row in days for v in (row.first_response_p50, row.first_response_p90) if v is not None
    ]
    highest = max([*values, target or 0], default=0)
    step = _step(max(1, highest))
    ceiling = step * max(1, -(-highest // step))
    body: list[str] = []
    tick = 0
    while tick <= ceiling:
        y = top + plot_h * (1 - tick / ceiling)
        body.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
        )
        body.append(_text(left - 6, y + 4, duration(tick), anchor="end"))
        tick += step
    count = max(1, len(days))
    slot = plot_w / count
    every = max(1, round(count / 10))
    for index, row in enumerate(days):
        if index % every == 0:
            body.append(
                _text(left + slot * (index + 0.5), height - bottom + 16, _day_label(row, count))
            )
    for name, colour, attribute in (
        ("p50", P50, "first_response_p50"),
        ("p90", P90, "first_response_p90"),
    ):
        points = []
        for index, row in enumerate(days):
            value = getattr(row, attribute)
            if value is None:
                continue
            x = left + slot * (index + 0.5)
            y = top + plot_h * (1 - value / ceiling)
            points.append((x, y, value, row))
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
            body.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" '
                f'stroke-width="2.5" stroke-linejoin="round"/>'
            )
        for x, y, value, row in points:
            tip = f"{row.day.isoformat()}: first response {name} {duration(value)}"
            body.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}">'
                f"<title>{escape(tip)}</title></circle>"
            )
            if count <= 14:
                # p90 is above p50: its label goes over the point, p50's under it unless
                # that would sit on the day labels of the axis.
                below = y + 17
                label_y = y - 9 if name == "p90" or below > top + plot_h - 4 else below
                body.append(_text(x, label_y, duration(value), fill=colour, size=10))
    if target:
        y = top + plot_h * (1 - target / ceiling)
        body.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{BREACHED}" stroke-width="1.5" stroke-dasharray="6 4"/>'
        )
        body.append(
            _text(
                width - right - 4,
                y - 5,
                f"target {duration(target)}",
                anchor="end",
                fill=BREACHED,
                size=11,
            )
        )
    for offset, (name, colour) in enumerate((("p50", P50), ("p90", P90))):
        x = left + 8 + offset * 70
        body.append(f'<rect x="{x}" y="6" width="14" height="4" rx="2" fill="{colour}"/>')
        body.append(_text(x + 20, 12, name, anchor="start", fill=INK))
    if not values:
        body.append(_text(left + plot_w / 2, top + plot_h / 2, "no first responses"))
    return _svg(width, height, "First response p50 and p90 by day", body)


def _heat_colour(count: int, highest: int) -> str:
    if count == 0 or highest == 0:
        return EMPTY
    # From a pale to a deep red; even one breach is clearly not an empty cell.
    share = 0.15 + 0.85 * count / highest
    pale, deep = (254, 226, 226), (155, 28, 28)
    mix = [round(a + (b - a) * share) for a, b in zip(pale, deep, strict=True)]
    return "#{:02x}{:02x}{:02x}".format(*mix)


def heatmap(cells: Sequence[Sequence[int]]) -> Markup:
    """A weekday x hour grid of breaches, darker where more fell due."""
    left, top, cell_w, cell_h, gap = 40, 22, 24, 22, 2
    width = left + 24 * cell_w + 12
    height = top + 7 * cell_h + 34
    highest = max((count for row in cells for count in row), default=0)
    body: list[str] = []
    for hour in range(0, 24, 3):
        body.append(_text(left + hour * cell_w + cell_w / 2, top - 8, f"{hour:02d}"))
    for day, row in enumerate(cells):
        y = top + day * cell_h
        body.append(_text(left - 6, y + cell_h / 2 + 4, WEEKDAYS[day], anchor="end"))
        for hour, count in enumerate(row):
            x = left + hour * cell_w
            tip = f"{WEEKDAYS[day]} {hour:02d}:00-{hour:02d}:59: {count} breaches"
            key = fact_key(
                "heatmap", dimension=WEEKDAYS[day], value=f"{hour:02d}", figure="breaches"
            )
            body.append(
                f'<rect x="{x + gap / 2:.1f}" y="{y + gap / 2:.1f}" width="{cell_w - gap}" '
                f'height="{cell_h - gap}" rx="3" fill="{_heat_colour(count, highest)}" '
                f'data-fact="{escape(key)}" data-value="{count}">'
                f"<title>{escape(tip)}</title></rect>"
            )
            if count and cell_w >= 20:
                ink = "#ffffff" if count / max(1, highest) > 0.5 else INK
                body.append(_text(x + cell_w / 2, y + cell_h / 2 + 4, str(count), fill=ink, size=9))
    legend_y = top + 7 * cell_h + 18
    body.append(_text(left, legend_y, "fewer", anchor="start"))
    for step in range(5):
        colour = _heat_colour(max(1, round(highest * (step + 1) / 5)), max(1, highest))
        body.append(
            f'<rect x="{left + 44 + step * 18}" y="{legend_y - 10}" width="16" '
            f'height="12" rx="2" fill="{colour}"/>'
        )
    body.append(_text(left + 44 + 5 * 18 + 4, legend_y, f"more (max {highest})", anchor="start"))
    return _svg(width, height, "Breaches by weekday and hour they fell due", body)


def distribution(buckets: Sequence[Bucket]) -> Markup:
    """Bars of first responses by counted time as a share of their target."""
    width, height, left, right, top, bottom = 640, 240, 44, 12, 28, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [bucket.met + bucket.breached for bucket in buckets]
    highest = max(totals, default=0)
    body: list[str] = []
    count = max(1, len(buckets))
    slot = plot_w / count
    bar = slot * 0.72
    for index, (bucket, total) in enumerate(zip(buckets, totals, strict=True)):
        x = left + slot * index + (slot - bar) / 2
        centre = x + bar / 2
        body.append(_text(centre, height - bottom + 16, bucket.label, size=11))
        if total == 0 or highest == 0:
            continue
        bar_h = max(1.0, plot_h * total / highest)
        # Met clocks only ever fill the buckets up to the target, breached ones the rest.
        figure, colour = ("met", MET) if bucket.breached == 0 else ("breached", BREACHED)
        key = fact_key("first_response_distribution", value=bucket.label, figure=figure)
        tip = f"{bucket.label} of target: {total:,} first responses"
        body.append(
            f'<rect x="{x:.1f}" y="{top + plot_h - bar_h:.1f}" width="{bar:.1f}" '
            f'height="{bar_h:.1f}" rx="3" fill="{colour}" data-fact="{escape(key)}" '
            f'data-value="{total}"><title>{escape(tip)}</title></rect>'
        )
        body.append(_text(centre, top + plot_h - bar_h - 6, f"{total:,}", fill=INK, size=11))
    target_x = left + slot * 4
    body.append(
        f'<line x1="{target_x:.1f}" x2="{target_x:.1f}" y1="{top - 8}" '
        f'y2="{top + plot_h}" stroke="{INK}" stroke-width="1.5" stroke-dasharray="5 4"/>'
    )
    body.append(_text(target_x, top - 12, "target", fill=INK, weight="600"))
    body.append(
        f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" '
        f'y2="{top + plot_h}" stroke="{MUTED}"/>'
    )
    body.append(_text(left + plot_w / 2, height - 6, "counted time as a share of the target"))
    if highest == 0:
        body.append(_text(left + plot_w / 2, top + plot_h / 2, "no first responses"))
    return _svg(width, height, "First response times against the target", body)
