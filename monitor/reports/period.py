"""Provides report periods: ISO weeks and date ranges in the team's timezone, as UTC spans.

A period is a half-open ``[start, end)`` span of UTC instants whose ends are local
midnights of ``[monitor].timezone``; a clock belongs to it when it stopped inside
(SLA.md §7). Weeks are ISO 8601 weeks (Monday first, week 1 holds the first Thursday).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from monitor.events import require_utc

_WEEK = re.compile(r"^\s*(\d{4})-?W(\d{1,2})\s*$", re.IGNORECASE)
_LONGEST = 366
"""Most days a report may cover: a year of clocks is still one readable report."""


@dataclass(frozen=True, slots=True)
class Period:
    """Local dates ``first_day`` to ``last_day`` (inclusive) in ``timezone``, and their label."""

    first_day: date
    last_day: date
    timezone: str
    label: str
    """``2026-W47`` for a whole ISO week, else ``2026-11-16 to 2026-11-22``."""

    @property
    def zone(self) -> ZoneInfo:
        """The period's timezone."""
        return ZoneInfo(self.timezone)

    @property
    def start(self) -> datetime:
        """The first instant of the period (local midnight of ``first_day``), in UTC."""
        return local_midnight(self.first_day, self.zone)

    @property
    def end(self) -> datetime:
        """The first instant after the period (local midnight after ``last_day``), in UTC."""
        return local_midnight(self.last_day + timedelta(days=1), self.zone)

    @property
    def days(self) -> tuple[date, ...]:
        """Every local date of the period, in order."""
        count = (self.last_day - self.first_day).days + 1
        return tuple(self.first_day + timedelta(days=offset) for offset in range(count))

    def day_starts(self) -> tuple[datetime, ...]:
        """The UTC instant each local day of the period starts, in order."""
        zone = self.zone
        return tuple(local_midnight(day, zone) for day in self.days)

    def previous(self) -> Period:
        """The period of the same length just before this one (the week before a week)."""
        length = self.last_day - self.first_day + timedelta(days=1)
        first, last = self.first_day - length, self.first_day - timedelta(days=1)
        return _make(first, last, self.timezone)


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant a local date begins (the first instant of it that exists)."""
    # Where a DST jump skips midnight (America/Santiago), fold=0 reads the missing time
    # with the offset before the jump, which is the instant of the jump: the day's start.
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"unknown IANA timezone {name!r}") from err


def _make(first: date, last: date, timezone: str) -> Period:
    """A period with its label: the ISO week name when it is exactly one ISO week."""
    year, week, weekday = first.isocalendar()
    if weekday == 1 and last - first == timedelta(days=6):
        label = f"{year}-W{week:02d}"
    elif first == last:
        label = first.isoformat()
    else:
        label = f"{first.isoformat()} to {last.isoformat()}"
    return Period(first, last, timezone, label)


def iso_week(text: str, timezone: str) -> Period:
    """The ISO week named ``2026-W47`` in ``timezone``; ``ValueError`` names what is wrong."""
    _zone(timezone)
    match = _WEEK.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not an ISO week like 2026-W47")
    year, week = int(match[1]), int(match[2])
    try:
        first = date.fromisocalendar(year, week, 1)
    except ValueError:
        raise ValueError(f"{text!r}: {year} has no week {week}") from None
    return _make(first, first + timedelta(days=6), timezone)


def date_range(first: date, last: date, timezone: str) -> Period:
    """Local dates ``first`` to ``last``, both included; ``ValueError`` if backwards or huge."""
    _zone(timezone)
    if last < first:
        raise ValueError(f"the range ends ({last}) before it starts ({first})")
    if (last - first).days + 1 > _LONGEST:
        raise ValueError(f"a report covers at most {_LONGEST} days")
    return _make(first, last, timezone)


def last_complete_week(now: datetime, timezone: str) -> Period:
    """The latest ISO week that ended at or before ``now`` in ``timezone``."""
    zone = _zone(timezone)
    today = require_utc(now, "now").astimezone(zone).date()
    this_monday = today - timedelta(days=today.weekday())
    first = this_monday - timedelta(days=7)
    return _make(first, this_monday - timedelta(days=1), timezone)
