"""Provides the machine-readable forms of a report: JSON (nested) and CSV (one fact a row).

Both carry every figure of the HTML, as raw numbers (seconds, counts, percentages with
one decimal). The CSV is "tidy": one row per figure, with the columns ``section,
policy, dimension, value, metric, figure, current, previous, change``, which a
spreadsheet pivots as it likes. :func:`facts` is that list of rows; the HTML marks
each figure it shows with the same key, so all three can be compared mechanically.

Text cells that a spreadsheet would run as a formula (starting with ``=``, ``+``,
``-``, ``@``, tab or carriage return) are prefixed with ``'`` in the CSV (OWASP's advice
on CSV injection); names and subjects come from the public.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from monitor.events import format_instant
from monitor.reports.aggregate import (
    PERCENTILES,
    WEEKDAYS,
    Breach,
    Count,
    MetricFigures,
    Report,
)
from monitor.reports.period import Period

CSV_COLUMNS = (
    "section",
    "policy",
    "dimension",
    "value",
    "metric",
    "figure",
    "current",
    "previous",
    "change",
)
SCHEMA_VERSION = 1
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

Scalar = str | int | float | None


@dataclass(frozen=True, slots=True)
class Fact:
    """One figure of the report: where it is, and its values in both periods."""

    section: str
    policy: str = ""
    dimension: str = ""
    value: str = ""
    metric: str = ""
    figure: str = ""
    current: Scalar = None
    previous: Scalar = None
    change: Scalar = None

    @property
    def key(self) -> str:
        """``section|policy|dimension|value|metric|figure``: how the HTML names the figure."""
        return fact_key(
            self.section, self.policy, self.dimension, self.value, self.metric, self.figure
        )


def fact_key(
    section: str,
    policy: str = "",
    dimension: str = "",
    value: str = "",
    metric: str = "",
    figure: str = "",
) -> str:
    """The name of a figure, as the CSV's first six columns joined by ``|``."""
    return "|".join((section, policy, dimension, value, metric, figure))


def _count_fact(section: str, figure: str, count: Count, **where: str) -> Fact:
    return Fact(
        section,
        figure=figure,
        current=count.current,
        previous=count.previous,
        change=count.change,
        **where,
    )


def _metric_facts(item: MetricFigures, **where: str) -> Iterator[Fact]:
    now, before = item.current, item.previous
    metric = str(item.metric)
    yield Fact(
        "policy",
        metric=metric,
        figure="clocks",
        current=now.clocks,
        previous=before.clocks,
        change=item.clocks_change,
        **where,
    )
    yield Fact(
        "policy",
        metric=metric,
        figure="met",
        current=now.met,
        previous=before.met,
        change=now.met - before.met,
        **where,
    )
    yield Fact(
        "policy",
        metric=metric,
        figure="breached",
        current=now.breached,
        previous=before.breached,
        change=item.breached_change,
        **where,
    )
    yield Fact(
        "policy",
        metric=metric,
        figure="percent_met",
        current=now.percent_met,
        previous=before.percent_met,
        change=item.percent_met_change,
        **where,
    )
    for which in PERCENTILES:
        yield Fact(
            "policy",
            metric=metric,
            figure=f"p{which}",
            current=now.percentile(which),
            previous=before.percentile(which),
            change=item.percentile_change(which),
            **where,
        )


_BREACH_FIELDS = (
    "source",
    "conversation",
    "policy",
    "metric",
    "cycle",
    "priority",
    "channel",
    "due_at",
    "stopped_at",
    "target_seconds",
    "elapsed_seconds",
    "over_seconds",
    "assignee",
    "url",
    "subject",
)


def _breach_json(breach: Breach, rank: int) -> dict[str, Any]:
    return {
        "rank": rank,
        "source": breach.source,
        "conversation": breach.conversation,
        "policy": breach.policy,
        "metric": str(breach.metric),
        "cycle": breach.cycle,
        "priority": None if breach.priority is None else str(breach.priority),
        "channel": breach.channel,
        "due_at": format_instant(breach.due_at),
        "stopped_at": format_instant(breach.stopped_at),
        "target_seconds": breach.target_seconds,
        "elapsed_seconds": breach.elapsed_seconds,
        "over_seconds": breach.over_seconds,
        "assignee": breach.assignee,
        "url": breach.url,
        "subject": breach.subject,
    }


def facts(report: Report) -> Iterator[Fact]:
    """Every figure of the report, in the order the HTML shows them."""
    totals = report.totals
    for figure, counted in (
        ("conversations", totals.conversations),
        ("replies", totals.replies),
        ("clocks", totals.clocks),
        ("met", totals.met),
        ("breached", totals.breached),
    ):
        yield _count_fact("totals", figure, counted)
    yield Fact(
        "totals",
        figure="percent_met",
        current=totals.percent_met,
        previous=totals.previous_percent_met,
        change=totals.percent_met_change,
    )
    yield Fact("totals", figure="open_breaches", current=totals.open_breaches)
    yield Fact("totals", figure="unassigned_breaches", current=report.unassigned_breaches)
    for section in report.sections:
        for row in section.rows:
            where = {"policy": section.policy, "dimension": row.dimension, "value": row.value or ""}
            yield _count_fact("policy", "conversations", row.conversations, **where)
            yield _count_fact("policy", "replies", row.replies, **where)
            for item in row.metrics:
                yield from _metric_facts(item, **where)
        for policy_day in section.days:
            for figure in (
                "met",
                "breached",
                "percent_met",
                "first_responses",
                "first_response_p50",
                "first_response_p90",
            ):
                yield Fact(
                    "policy_day",
                    policy=section.policy,
                    value=policy_day.day.isoformat(),
                    figure=figure,
                    current=getattr(policy_day, figure),
                )
    for agent in report.agents:
        for figure in (
            "replies",
            "first_responses",
            "first_response_p50",
            "first_response_p90",
            "breaches_held",
        ):
            yield Fact("agent", value=agent.name, figure=figure, current=getattr(agent, figure))
    for day in report.days:
        for figure in ("met", "breached", "percent_met"):
            yield Fact(
                "day", value=day.day.isoformat(), figure=figure, current=getattr(day, figure)
            )
    for weekday, hours in zip(WEEKDAYS, report.heatmap, strict=True):
        for hour, count in enumerate(hours):
            yield Fact(
                "heatmap", dimension=weekday, value=f"{hour:02d}", figure="breaches", current=count
            )
    for bucket in report.distribution:
        for figure in ("met", "breached"):
            yield Fact(
                "first_response_distribution",
                value=bucket.label,
                figure=figure,
                current=getattr(bucket, figure),
            )
    for section_name, breaches in (
        ("longest_breach", report.longest_breaches),
        ("open_breach", report.open_breaches),
    ):
        for rank, breach in enumerate(breaches, start=1):
            data = _breach_json(breach, rank)
            for field in _BREACH_FIELDS:
                yield Fact(section_name, value=str(rank), figure=field, current=data[field])


def _period_json(period: Period) -> dict[str, Any]:
    return {
        "label": period.label,
        "first_day": period.first_day.isoformat(),
        "last_day": period.last_day.isoformat(),
        "timezone": period.timezone,
        "start": format_instant(period.start),
        "end": format_instant(period.end),
    }


def _change(current: Scalar, previous: Scalar, change: Scalar) -> dict[str, Scalar]:
    return {"current": current, "previous": previous, "change": change}


def report_json(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data (see docs/reports.md for the fields)."""
    totals = report.totals
    policies = []
    for section in report.sections:
        rows = []
        for row in section.rows:
            metrics: dict[str, Any] = {}
            for item in row.metrics:
                now, before = item.current, item.previous
                figures = {
                    "clocks": _change(now.clocks, before.clocks, item.clocks_change),
                    "met": _change(now.met, before.met, now.met - before.met),
                    "breached": _change(now.breached, before.breached, item.breached_change),
                    "percent_met": _change(
                        now.percent_met, before.percent_met, item.percent_met_change
                    ),
                }
                for which in PERCENTILES:
                    figures[f"p{which}"] = _change(
                        now.percentile(which),
                        before.percentile(which),
                        item.percentile_change(which),
                    )
                metrics[str(item.metric)] = figures
            rows.append(
                {
                    "dimension": row.dimension,
                    "value": row.value,
                    "conversations": _change(
                        row.conversations.current,
                        row.conversations.previous,
                        row.conversations.change,
                    ),
                    "replies": _change(
                        row.replies.current, row.replies.previous, row.replies.change
                    ),
                    "metrics": metrics,
                }
            )
        policies.append(
            {
                "policy": section.policy,
                "rows": rows,
                "days": [
                    {
                        "day": day.day.isoformat(),
                        "met": day.met,
                        "breached": day.breached,
                        "percent_met": day.percent_met,
                        "first_responses": day.first_responses,
                        "first_response_p50": day.first_response_p50,
                        "first_response_p90": day.first_response_p90,
                    }
                    for day in section.days
                ],
            }
        )

    def count(value: Count) -> dict[str, Scalar]:
        return _change(value.current, value.previous, value.change)

    return {
        "report": "replywatch SLA report",
        "schema_version": SCHEMA_VERSION,
        "title": report.title,
        "period": _period_json(report.period),
        "previous_period": _period_json(report.previous_period),
        "generated_at": format_instant(report.generated_at),
        "empty": report.empty,
        "totals": {
            "conversations": count(totals.conversations),
            "replies": count(totals.replies),
            "clocks": count(totals.clocks),
            "met": count(totals.met),
            "breached": count(totals.breached),
            "percent_met": _change(
                totals.percent_met, totals.previous_percent_met, totals.percent_met_change
            ),
            "open_breaches": totals.open_breaches,
            "unassigned_breaches": report.unassigned_breaches,
        },
        "policies": policies,
        "agents": [
            {
                "name": agent.name,
                "replies": agent.replies,
                "first_responses": agent.first_responses,
                "first_response_p50": agent.first_response_p50,
                "first_response_p90": agent.first_response_p90,
                "breaches_held": agent.breaches_held,
            }
            for agent in report.agents
        ],
        "longest_breaches": [
            _breach_json(b, rank) for rank, b in enumerate(report.longest_breaches, start=1)
        ],
        "open_breaches": [
            _breach_json(b, rank) for rank, b in enumerate(report.open_breaches, start=1)
        ],
        "days": [
            {
                "day": day.day.isoformat(),
                "met": day.met,
                "breached": day.breached,
                "percent_met": day.percent_met,
            }
            for day in report.days
        ],
        "heatmap": {
            "weekdays": list(WEEKDAYS),
            "hours": list(range(24)),
            "breaches": [list(row) for row in report.heatmap],
        },
        "first_response_distribution": [
            {"bucket": b.label, "met": b.met, "breached": b.breached} for b in report.distribution
        ],
        "definitions": {
            "policies": [
                {
                    "name": note.name,
                    "calendar": note.calendar,
                    "targets": {
                        str(target.metric): (
                            target.targets[0][1]
                            if target.targets[0][0] is None
                            else {str(p): s for p, s in target.targets}
                        )
                        for target in note.targets
                    },
                    "warn_at": note.warn_at,
                    "count_bots": note.count_bots,
                    "pauses": {str(m): list(statuses) for m, statuses in note.pauses},
                }
                for note in report.policies
            ],
            "calendars": [
                {
                    "name": note.name,
                    "timezone": note.timezone,
                    "hours": dict(note.hours),
                    "holidays": note.holidays,
                }
                for note in report.calendars
            ],
        },
    }


def render_json(report: Report) -> str:
    """The report as one JSON document (UTF-8, keys in a stable order)."""
    return json.dumps(report_json(report), ensure_ascii=False, indent=2) + "\n"


def _cell(value: Scalar) -> Scalar:
    """A CSV cell: numbers as they are, text defused so no spreadsheet runs it."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def render_csv(report: Report) -> str:
    """The report as tidy CSV: a header, then one row per figure (see :func:`facts`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for fact in facts(report):
        writer.writerow(
            [
                _cell(fact.section),
                _cell(fact.policy),
                _cell(fact.dimension),
                _cell(fact.value),
                _cell(fact.metric),
                _cell(fact.figure),
                _cell(fact.current),
                _cell(fact.previous),
                _cell(fact.change),
            ]
        )
    return buffer.getvalue()
