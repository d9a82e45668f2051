"""Provides ``replywatch report``: the SLA report of a week or a date range, in four forms."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from monitor.commands._common import UsageError, load, open_store

if TYPE_CHECKING:
    from monitor.config import Config
    from monitor.reports.aggregate import Report
    from monitor.reports.weekly import Format

HELP = "the weekly SLA report (HTML, Markdown, CSV or JSON)"

_SUFFIXES: dict[str, Format] = {
    ".html": "html",
    ".htm": "html",
    ".md": "md",
    ".csv": "csv",
    ".json": "json",
}


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-16") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """report's options: the period, the form, where it goes."""
    parser.add_argument(
        "--week",
        help="ISO week in [monitor].timezone, e.g. 2026-W47 (default: the last complete week)",
    )
    parser.add_argument(
        "--from",
        dest="first",
        type=_day,
        metavar="DATE",
        help="first day of a date range (with --to)",
    )
    parser.add_argument(
        "--to", dest="last", type=_day, metavar="DATE", help="last day of the range, included"
    )
    parser.add_argument(
        "--format",
        choices=("html", "md", "csv", "json"),
        help="default: from --out's extension, else html",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="PATH",
        help="file to write, or a folder for the standard file name (default: standard output)",
    )
    parser.add_argument(
        "--send",
        action="store_true",
        help="also send it to [reports.weekly].send_to (chat: the summary; email: the HTML)",
    )


def run(args: argparse.Namespace) -> int:
    """Make the report, write or print it, and send it when asked."""
    from monitor.reports.period import date_range, iso_week, last_complete_week
    from monitor.reports.weekly import file_name, make_report, render, write_text

    config = load(args)
    timezone = config.monitor.timezone
    if args.week and (args.first or args.last):
        raise UsageError("report: give --week or --from/--to, not both")
    if (args.first is None) != (args.last is None):
        raise UsageError("report: --from and --to go together")
    now = datetime.now(UTC)
    try:
        if args.week:
            period = iso_week(args.week, timezone)
        elif args.first is not None:
            period = date_range(args.first, args.last, timezone)
        else:
            period = last_complete_week(now, timezone)
    except ValueError as err:
        raise UsageError(f"report: {err}") from None
    form: Format = args.format or _SUFFIXES.get(args.out.suffix.lower() if args.out else "", "html")
    send_to = config.reports.weekly.send_to if config.reports.weekly else ()
    if args.send and not send_to:
        raise UsageError("report: --send needs [reports.weekly].send_to in the config")
    with open_store(args, config) as store:
        report = make_report(store, config, period, now=now)
    text = render(report, form)
    if args.out is None:
        sys.stdout.write(text)
    else:
        path = args.out / file_name(report, form) if args.out.is_dir() else args.out
        write_text(path, text)
        print(f"wrote {path}", file=sys.stderr)
    if args.send:
        return asyncio.run(_send(config, report, now))
    return 0


async def _send(config: Config, report: Report, now: datetime) -> int:
    """Send the report to the configured targets; 1 if any refused it."""
    import aiohttp

    from monitor.reports.send import send_report

    async with aiohttp.ClientSession() as session:
        results = await send_report(config, report, session, now=now)
    failed = 0
    for target, error in results:
        if error is None:
            print(f"sent    {target}", file=sys.stderr)
        else:
            failed += 1
            print(f"FAILED  {target}: {error}", file=sys.stderr)
    return 1 if failed else 0
