"""Provides the report job: read a period from the store, render it, write the files, send.

The I/O edge of :mod:`monitor.reports`: :func:`make_report` streams the period's
clocks (and the previous period's, and the breaches open at the end) from the store
into the pure :class:`~monitor.reports.aggregate.ReportBuilder`; :func:`render` picks a
renderer; :func:`write_reports` writes files atomically (a half-written report is never
left behind); :func:`run_weekly` is what the scheduler runs every week.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import aiohttp

from monitor.config import Config, parse_weekly_at
from monitor.errors import ConfigError, ReplywatchError
from monitor.reports.aggregate import Report
from monitor.reports.html import render_html
from monitor.reports.markdown import render_markdown
from monitor.reports.period import Period, last_complete_week
from monitor.reports.tabular import render_csv, render_json

if TYPE_CHECKING:
    from monitor.scheduler import MonitorScheduler
    from monitor.storage import Store

log = logging.getLogger(__name__)

Format = Literal["html", "md", "csv", "json"]
FORMATS: tuple[Format, ...] = ("html", "md", "csv", "json")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class ReportError(ReplywatchError):
    """A report could not be written or sent (the message names the file or target)."""


def make_report(store: Store, config: Config, period: Period, *, now: datetime) -> Report:
    """Read ``period`` (and the one before, and the open breaches) and build its report."""
    builder = store.report_builder(period)
    builder.add(store.report_rows(period.start, period.end))
    previous = period.previous()
    builder.add_previous(store.report_figure_rows(previous.start, previous.end))
    builder.add_open_breaches(store.open_breaches(period.end))
    details = store.conversation_details(builder.wanted())
    return builder.finish(
        generated_at=now, details=details, policies=config.policies, calendars=config.calendars
    )


def render(report: Report, form: Format, *, full_report: str | None = None) -> str:
    """The report in one of :data:`FORMATS`; ``full_report`` is what the summary links to."""
    if form == "html":
        return render_html(report)
    if form == "md":
        return render_markdown(report, full_report=full_report)
    if form == "csv":
        return render_csv(report)
    return render_json(report)


def file_name(report: Report, form: Format) -> str:
    """``sla-report-2026-W47.html``: a name safe on every filesystem."""
    label = _UNSAFE_NAME.sub("_", report.period.label.replace(" to ", "_to_"))
    return f"sla-report-{label}.{form}"


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: readers see the old file or the whole new one.

    Raises:
        ReportError: the folder cannot be created or written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
                stream.write(text)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as err:
        raise ReportError(f"{path}: cannot write the report ({err.strerror or err})") from err


def write_reports(
    report: Report, folder: Path, forms: Sequence[Format] = FORMATS
) -> dict[Format, Path]:
    """Write the report in each form into ``folder``; return the paths by form."""
    paths: dict[Format, Path] = {}
    html_name = file_name(report, "html")
    for form in forms:
        path = folder / file_name(report, form)
        write_text(path, render(report, form, full_report=html_name if "html" in forms else None))
        paths[form] = path
    return paths


async def run_weekly(
    config: Config,
    store: Store,
    *,
    now: Callable[[], datetime],
    session: aiohttp.ClientSession | None = None,
) -> dict[Format, Path]:
    """Make last week's report, write it to ``[reports.weekly].folder`` and send it.

    Never raises: this runs unattended from the scheduler, so a failure is logged once
    with what failed, and the next week tries again. Sending needs ``session``.
    """
    weekly = config.reports.weekly
    folder = Path(weekly.folder if weekly is not None else "reports")
    instant = now()
    period = last_complete_week(instant, config.monitor.timezone)
    try:
        report = await asyncio.to_thread(make_report, store, config, period, now=instant)
        paths = await asyncio.to_thread(write_reports, report, folder)
    except ReplywatchError as err:
        log.error("weekly report %s failed: %s", period.label, err)
        return {}
    log.info("weekly report %s written to %s", period.label, folder)
    if session is not None and weekly is not None and weekly.send_to:
        from monitor.reports.send import send_report

        for target, error in await send_report(config, report, session, now=instant):
            if error is None:
                log.info("weekly report %s sent to %s", period.label, target)
            else:
                log.error("weekly report %s not sent to %s: %s", period.label, target, error)
    return paths


def schedule_weekly(
    scheduler: MonitorScheduler,
    config: Config,
    store: Store,
    *,
    now: Callable[[], datetime],
    session: aiohttp.ClientSession | None,
) -> None:
    """Run :func:`run_weekly` at ``[reports.weekly].at`` in ``[monitor].timezone``.

    Raises:
        ConfigError: ``at`` is not like ``mon 09:00``.
    """
    weekly = config.reports.weekly
    if weekly is None:
        return
    try:
        weekday, at = parse_weekly_at(weekly.at)
    except ValueError as err:
        raise ConfigError(str(err), path="reports.weekly.at") from None

    async def job() -> None:
        # Every worker of a shared store schedules this; the first to claim the week runs it.
        instant = now()
        label = last_complete_week(instant, config.monitor.timezone).label
        if not await asyncio.to_thread(store.claim_once, "weekly-report", label, now=instant):
            log.info("weekly report %s: already made by another worker", label)
            return
        await run_weekly(config, store, now=now, session=session)

    scheduler.weekly(
        "report:weekly",
        job,
        weekday=weekday,
        hour=at.hour,
        minute=at.minute,
        timezone=config.monitor.timezone,
    )
