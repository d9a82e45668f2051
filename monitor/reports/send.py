"""Provides sending a report to the targets of ``[reports.weekly].send_to``.

Rendering happens here once (summary lines, Markdown, HTML, JSON); each target then
gets it in its own form through :mod:`monitor.notifiers.report`. One target refusing
never stops the others: every target's outcome is returned, and nothing is raised.
"""

from __future__ import annotations

import logging
from datetime import datetime

import aiohttp

from monitor.config import Config
from monitor.notifiers.base import DeliveryError
from monitor.notifiers.report import ReportMessage, send_report_message
from monitor.reports.aggregate import Report
from monitor.reports.html import render_html
from monitor.reports.markdown import render_markdown, summary_lines
from monitor.reports.tabular import report_json
from monitor.reports.weekly import file_name

log = logging.getLogger(__name__)


def report_message(report: Report, *, now: datetime) -> ReportMessage:
    """The report in every form a target may take, under a key unique to its period."""
    html_name = file_name(report, "html")
    return ReportMessage(
        key=f"report:{report.period.label}:{report.period.timezone}",
        title=report.title,
        lines=tuple(summary_lines(report, full_report=html_name)),
        markdown=render_markdown(report, full_report=html_name),
        html=render_html(report),
        html_name=html_name,
        data=report_json(report),
        created_at=now,
    )


async def send_report(
    config: Config, report: Report, session: aiohttp.ClientSession, *, now: datetime
) -> list[tuple[str, str | None]]:
    """Send ``report`` to every ``send_to`` target; return (target, error or None) each."""
    weekly = config.reports.weekly
    names = weekly.send_to if weekly is not None else ()
    if not names:
        return []
    targets = {target.name: target for target in config.alerts}
    message = report_message(report, now=now)
    results: list[tuple[str, str | None]] = []
    for name in names:
        target = targets.get(name)
        if target is None:
            results.append((name, "no such alert target"))
            continue
        try:
            await send_report_message(target, session, message)
        except DeliveryError as err:
            log.warning("report %s not sent to %s: %s", report.period.label, name, err.reason)
            results.append((name, err.reason))
        else:
            results.append((name, None))
    return results
