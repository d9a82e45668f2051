"""Provides the summary of a report: a few lines fit for a chat message, and its Markdown.

The summary is built once as lines of :class:`Segment` (our words, bold figures, names
that came from outside, links), so each chat platform can render it in its own dialect
with its own escaping (:mod:`monitor.notifiers.report`); :func:`render_markdown` is
the generic Markdown form. It carries the headline figures (the same values as the
HTML, formatted the same way), one line per policy, the longest breach and where the
full report is.

Text that did not come from replywatch itself is made inert in the Markdown: control
and bidi characters removed, Markdown syntax escaped, ``<``/``>`` replaced (Slack reads
``<!channel>`` as a mention and ``<url|text>`` as a link) and ``@`` followed by a
zero-width space so no ``@everyone`` pings anybody. Links are only http(s) URLs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from monitor.reports import formatting
from monitor.reports.aggregate import Report

# Only what can start formatting or a link mid-line: outside text never begins a line
# here, so block syntax (#, -, >, 1.) cannot take effect and is left as written.
_MARKDOWN = re.compile(r"([\\`*_\[\]|~])")
_LINK_UNSAFE = {"(": "%28", ")": "%29", "<": "%3C", ">": "%3E", " ": "%20"}

SegmentKind = Literal["plain", "bold", "outside", "link"]


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of a summary line.

    ``plain`` and ``bold`` are replywatch's own words and figures; ``outside`` is a
    name from the configuration or a source (escape it); ``link`` is ``text`` (outside
    text too) pointing to ``url``, an http(s) URL.
    """

    text: str
    kind: SegmentKind = "plain"
    url: str | None = None


Line = tuple[Segment, ...]


def inert(text: str) -> str:
    """Outside text made safe to post as Markdown on any chat platform."""
    line = formatting.name(text)
    # Single angle quotation marks: they read as brackets and are nobody's syntax.
    line = line.replace("<", "\u2039").replace(">", "\u203a")
    line = _MARKDOWN.sub(r"\\\1", line)
    return line.replace("@", "@\u200b")


def _link(label: str, url: str | None) -> Segment:
    safe = formatting.safe_url(url)
    return Segment(label, "link", safe) if safe else Segment(label, "outside")


def summary_lines(report: Report, *, full_report: str | None = None) -> list[Line]:
    """The summary, line by line; ``full_report`` is a link or a file name of the whole."""
    totals = report.totals
    period = report.period
    lines: list[Line] = [
        (
            Segment(report.title, "bold"),
            Segment(
                f" ({period.first_day.isoformat()} to {period.last_day.isoformat()}, "
                f"{period.timezone})"
            ),
        )
    ]
    if report.empty:
        lines.append((Segment(f"No SLA clock stopped in {period.label}: nothing was measured."),))
        if totals.open_breaches:
            lines.append(
                (
                    Segment("Breaches still open at its end: "),
                    Segment(f"{totals.open_breaches:,}", "bold"),
                )
            )
    else:
        change = formatting.signed_points(totals.percent_met_change)
        versus = f" ({change} vs {report.previous_period.label})" if change else ""
        lines.append(
            (
                Segment("Promises kept: "),
                Segment(formatting.percent(totals.percent_met), "bold"),
                Segment(f"{versus} · breaches: "),
                Segment(f"{totals.breached.current:,}", "bold"),
                Segment(
                    f" ({formatting.signed_count(totals.breached.change)}) · open at the end: "
                ),
                Segment(f"{totals.open_breaches:,}", "bold"),
            )
        )
        for section in report.sections:
            parts = [
                f"{formatting.METRIC_NAMES[item.metric].lower()} "
                f"{formatting.percent(item.current.percent_met)} "
                f"(p90 {formatting.duration(item.current.p90)})"
                for item in section.overall.metrics
                if item.current.clocks
            ]
            if not parts:
                continue
            breached = sum(item.current.breached for item in section.overall.metrics)
            lines.append(
                (
                    Segment("• "),
                    Segment(section.policy, "outside"),
                    Segment(f": {', '.join(parts)}; {breached:,} breaches"),
                )
            )
        if report.longest_breaches:
            worst = report.longest_breaches[0]
            lines.append(
                (
                    Segment("Longest breach: "),
                    _link(f"{worst.source} / {worst.conversation}", worst.url),
                    Segment(" ("),
                    Segment(worst.policy, "outside"),
                    Segment(
                        f" {formatting.METRIC_NAMES[worst.metric].lower()}, "
                        f"{formatting.duration(worst.over_seconds)} over target)"
                    ),
                )
            )
    if full_report:
        target = formatting.safe_url(full_report)
        lines.append(
            (
                Segment("Full report: "),
                Segment("open", "link", target) if target else Segment(full_report, "outside"),
            )
        )
    return lines


def _markdown(segment: Segment) -> str:
    if segment.kind == "bold":
        return f"**{segment.text}**"
    if segment.kind == "outside":
        return inert(segment.text)
    if segment.kind == "link" and segment.url:
        target = "".join(_LINK_UNSAFE.get(ch, ch) for ch in segment.url)
        return f"[{inert(segment.text)}]({target})"
    return segment.text


def render_markdown(report: Report, *, full_report: str | None = None) -> str:
    """The summary as generic Markdown, one paragraph line per summary line."""
    lines = summary_lines(report, full_report=full_report)
    return "\n".join("".join(map(_markdown, line)) for line in lines) + "\n"
