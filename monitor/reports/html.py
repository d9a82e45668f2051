"""Provides the HTML report: one self-contained page (inline CSS and SVG, no asset, no script).

Rendered by Jinja2 with autoescaping switched on for every template, whatever its name
(``autoescape=True``, not chosen by file extension), and ``StrictUndefined`` so a typo
in a template fails loudly instead of printing nothing. Every text from the public
(agent names, subjects, channels, conversation ids) reaches the page escaped; links are
only ever the http(s) URLs :func:`~monitor.reports.formatting.safe_url` let through.
Each figure is a ``<data value=... data-fact=...>`` element named as in the CSV, so the
page can be checked against it by a program as well as by a person.
"""

from __future__ import annotations

from datetime import date
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from monitor.events import Metric
from monitor.reports import charts, formatting
from monitor.reports.aggregate import PERCENTILES, WEEKDAYS, Report
from monitor.reports.formatting import DASH
from monitor.reports.tabular import fact_key

TEMPLATE = "report.html.j2"


@cache
def environment() -> Environment:
    """The Jinja2 environment of the report templates (autoescape on for all of them)."""
    env = Environment(
        loader=PackageLoader("monitor.reports", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        duration=formatting.duration,
        percent=formatting.percent,
        count=formatting.count,
        signed_count=formatting.signed_count,
        signed_points=formatting.signed_points,
        signed_duration=formatting.signed_duration,
        name=formatting.name,
    )
    env.globals.update(
        fact=fact_key,
        metric_name=formatting.METRIC_NAMES.get,
        dimension_name=formatting.DIMENSION_NAMES.get,
        percentiles=PERCENTILES,
        weekdays=WEEKDAYS,
        trend=trend,
        day_name=day_name,
    )
    return env


def day_name(day: date) -> str:
    """``Mon 16``: a day of the period, as table headings show it."""
    return f"{WEEKDAYS[day.weekday()]} {day.day}"


def trend(change: float | int | None, *, lower_is_better: bool) -> str:
    """The CSS class of a change: ``good``, ``bad`` or ``flat``."""
    if change is None or change == 0:
        return "flat"
    return "good" if (change < 0) == lower_is_better else "bad"


def _span(report: Report) -> str:
    period = report.period
    first, last = period.first_day, period.last_day
    if first == last:
        return f"{first:%a} {first.day} {first:%b %Y}"
    if (first.year, first.month) == (last.year, last.month):
        return f"{first.day}{DASH}{last.day} {last:%b %Y}"
    if first.year == last.year:
        return f"{first.day} {first:%b} {DASH} {last.day} {last:%b %Y}"
    return f"{first.day} {first:%b %Y} {DASH} {last.day} {last:%b %Y}"


def context(report: Report) -> dict[str, Any]:
    """What the template is given: the report, its charts and display helpers."""
    zone = report.period.zone
    # A single first-response target is drawn on the policy's chart; per-priority
    # targets would be several lines, so none is drawn for them.
    targets = {
        note.name: target.targets[0][1]
        for note in report.policies
        for target in note.targets
        if target.metric is Metric.FIRST_RESPONSE and target.targets[0][0] is None
    }
    return {
        "report": report,
        "span": _span(report),
        "when": lambda value: formatting.when(value, zone),
        "charts": {
            "daily_met": charts.daily_met(report.days),
            "heatmap": charts.heatmap(report.heatmap),
            "distribution": charts.distribution(report.distribution),
        },
        "first_response_charts": {
            section.policy: charts.daily_first_response(section.days, targets.get(section.policy))
            for section in report.sections
        },
        "first_response": Metric.FIRST_RESPONSE,
        "shown_open_breaches": report.open_breaches[:OPEN_BREACHES_SHOWN],
    }


OPEN_BREACHES_SHOWN = 100
"""Open breaches listed on the page; the CSV and JSON list them all."""


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page."""
    return environment().get_template(TEMPLATE).render(context(report))
