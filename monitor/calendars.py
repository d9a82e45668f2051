"""Provides calendars: when a team is open, how much open time passed, when a target is due.

A calendar is ``24x7`` (plain arithmetic) or business hours: an IANA timezone, opening
intervals per weekday and closed dates (explicit, and a country's public holidays).
Opening hours follow the calendar's wall clock across daylight-saving changes
(SLA.md §4): each local day's opening and closing times are converted to UTC, a local
time that does not exist that day is moved to the instant the clocks jumped, and in a
repeated hour an opening takes the first occurrence and a closing the second, so every
real hour that passed counts once. All instants in and out are aware UTC.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import holidays as holidays_lib

from monitor.config import ALWAYS_OPEN, CalendarConfig, Config
from monitor.errors import ConfigError
from monitor.events import require_utc

Interval = tuple[datetime, datetime]
"""A half-open ``[start, end)`` span of UTC instants."""

_DAY = timedelta(days=1)
_ZERO = timedelta(0)
_SECOND = timedelta(seconds=1)
# The open end of a 24x7 calendar; far enough for any deadline, and adding a target to
# an instant before it cannot overflow.
_FOREVER = datetime(9000, 1, 1, tzinfo=UTC)
# A business calendar that stays closed this long never opens again (every weekday
# without hours, or holidays on every open day): stop instead of walking forever.
_LONGEST_CLOSURE = timedelta(days=800)
# Per-day intervals are cached; the bound keeps a long-running process from growing.
_DAY_CACHE_LIMIT = 50_000
# The running-total index of a business calendar spans at most this many local days
# (about 40 years); anything further out is walked day by day instead.
_INDEX_MAX_DAYS = 15_000
# How far an index reaches beyond the days asked for, so it is rarely rebuilt.
_INDEX_MARGIN_DAYS = 400
# Indexed days stay far from the ends of the datetime range (no overflow at the edges).
_INDEX_FIRST_DAY = date(1900, 1, 1).toordinal()
_INDEX_LAST_DAY = date(9000, 1, 1).toordinal()
# An index holding a closure this long is not used to add time: the day-by-day walk
# decides whether such a calendar never opens again.
_INDEX_LONGEST_GAP = timedelta(days=60)


@dataclass(frozen=True, slots=True)
class _Index:
    """A business calendar's open intervals over a span of local days, with running totals.

    ``opens``/``closes`` are the merged open intervals of days ``first`` to ``last``
    (ordinals, inclusive); ``before[i]`` is the open time before interval ``i`` and
    ``through[i]`` the open time up to its close. Open time between two instants is
    then a difference of two lookups instead of a walk over every day in between.
    Answers are exact for instants in ``[low, high)``, whose neighbouring days are in.
    """

    first: int
    last: int
    low: datetime
    high: datetime
    opens: list[datetime]
    closes: list[datetime]
    before: list[timedelta]
    through: list[timedelta]
    gappy: bool
    """Whether it holds a closure of ``_INDEX_LONGEST_GAP`` or more (or no opening)."""

    def total(self, instant: datetime) -> timedelta:
        """Open time from the index's start to ``instant`` (in ``[low, high)``)."""
        i = bisect_right(self.opens, instant) - 1
        if i < 0:
            return _ZERO
        closes = self.closes[i]
        return self.before[i] + ((instant if instant < closes else closes) - self.opens[i])

    def reach(self, total: timedelta) -> datetime | None:
        """The first instant whose :meth:`total` is ``total`` (> 0); None: past the index."""
        j = bisect_left(self.through, total)
        if j == len(self.through):
            return None
        return self.opens[j] + (total - self.before[j])

    def opening(self, instant: datetime) -> datetime | None:
        """The first open instant at or after ``instant``; None: past the index."""
        i = bisect_right(self.opens, instant) - 1
        if i >= 0 and self.closes[i] > instant:
            return instant
        return self.opens[i + 1] if i + 1 < len(self.opens) else None


@dataclass(frozen=True, slots=True)
class Calendar:
    """A 24x7 or business-hours calendar; pure, immutable, safe to share between tasks."""

    name: str
    timezone: tzinfo = UTC
    """The wall clock of the opening hours (UTC for 24x7); reasons print times in it."""
    hours: tuple[tuple[tuple[int, int], ...], ...] | None = None
    """Seven entries, Monday first: opening intervals in minutes since local midnight.

    None means open every second (``24x7``).
    """
    closed_dates: frozenset[date] = frozenset()
    """Explicit local dates on which the calendar is closed all day."""
    country: str | None = None
    """ISO country code whose public holidays close the calendar (``holidays`` package)."""
    subdivision: str | None = None
    """A state or province of ``country`` whose own holidays apply too."""
    _holiday_years: dict[int, frozenset[date]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _days: dict[date, tuple[Interval, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _indexes: dict[str, _Index] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    """Holds the current :class:`_Index` under ``""``; replaced whole, so threads share it."""

    @classmethod
    def always_open(cls) -> Calendar:
        """The built-in ``24x7`` calendar: every second counts."""
        return cls(name=ALWAYS_OPEN)

    @classmethod
    def from_config(cls, name: str, config: CalendarConfig) -> Calendar:
        """Build a business-hours calendar; an unknown holiday country is a ``ConfigError``."""
        opening = config.opening_hours()
        country = config.holidays.country
        subdivision = config.holidays.subdivision
        if country:
            try:
                holidays_lib.country_holidays(country, subdiv=subdivision)
            except NotImplementedError as err:
                if subdivision and "subdivision" in str(err):
                    key = "subdivision"
                    problem = f"unknown subdivision {subdivision!r} of {country!r}"
                else:
                    key = "country"
                    problem = f"unknown holiday country {country!r}"
                raise ConfigError(problem, path=f"calendars.{name}.holidays.{key}") from None
        return cls(
            name=name,
            timezone=ZoneInfo(config.timezone),
            hours=tuple(tuple(opening.get(day, ())) for day in range(7)),
            closed_dates=frozenset(config.holidays.dates),
            country=country or None,
            subdivision=subdivision or None,
        )

    @property
    def always(self) -> bool:
        """Whether this calendar is open every second (24x7)."""
        return self.hours is None

    def open_intervals(self, start: datetime, end: datetime) -> Iterator[Interval]:
        """Yield the open intervals overlapping ``[start, end)``, in UTC, clipped to it."""
        start, end = require_utc(start, "start"), require_utc(end, "end")
        if self.hours is None:
            if start < end:
                yield (start, end)
            return
        yield from self._intervals_from(start, end)

    def counted_seconds(
        self, start: datetime, end: datetime, excluded: Sequence[Interval] = ()
    ) -> float:
        """Seconds of ``[start, end)`` that are open and not in ``excluded`` (SLA.md §4)."""
        start, end = require_utc(start, "start"), require_utc(end, "end")
        return self.counted(start, end, normalize(excluded)).total_seconds()

    def add_counted(
        self, start: datetime, seconds: float, excluded: Sequence[Interval] = ()
    ) -> datetime:
        """The instant at which open, non-excluded time counted from ``start`` reaches ``seconds``.

        The answer is always an open instant; a target that runs out exactly at closing
        is due at closing, not at the next opening.
        """
        start = require_utc(start, "start")
        return self.add(start, timedelta(seconds=seconds), normalize(excluded))

    def is_open(self, instant: datetime) -> bool:
        """Whether the calendar is open at ``instant`` (an opening is open, a closing is not)."""
        instant = require_utc(instant, "instant")
        if self.hours is None:
            return True
        opening = self._indexed_opening(instant)
        if opening is not None:
            return opening == instant
        local_day = instant.astimezone(self.timezone).date()
        for day in (local_day - _DAY, local_day, local_day + _DAY):
            for opens, closes in self._day(day):
                if opens <= instant < closes:
                    return True
        return False

    def next_opening(self, instant: datetime) -> datetime:
        """The first open instant at or after ``instant``."""
        instant = require_utc(instant, "instant")
        if self.hours is None:
            return instant
        opening = self._indexed_opening(instant)
        if opening is not None:
            return opening
        for opens, _ in self._intervals_from(instant, None):
            return opens
        raise AssertionError("unreachable: _intervals_from(end=None) never ends")

    # The engine calls these with UTC instants it already checked, normalized exclusions
    # and exact timedeltas, so that no rounding happens between counting and deciding.

    def counted(self, start: datetime, end: datetime, excluded: Sequence[Interval]) -> timedelta:
        """Exact open time of ``[start, end)`` minus normalized ``excluded`` intervals."""
        if end <= start:
            return _ZERO
        if self.hours is None:
            total = end - start
            for ex_start, ex_end in excluded:
                overlap = min(ex_end, end) - max(ex_start, start)
                if overlap > _ZERO:
                    total -= overlap
            return total
        index = self._index(start, end)
        if index is not None:
            total = index.total(end) - index.total(start)
            for ex_start, ex_end in excluded:
                low, high = max(ex_start, start), min(ex_end, end)
                if low < high:
                    total -= index.total(high) - index.total(low)
            return total
        pieces: Iterable[Interval] = self._intervals_from(start, end)
        if excluded:
            pieces = subtract(pieces, excluded)
        total = _ZERO
        for piece_start, piece_end in pieces:
            total += piece_end - piece_start
        return total

    def add(self, start: datetime, amount: timedelta, excluded: Sequence[Interval]) -> datetime:
        """Exact form of :meth:`add_counted`, with normalized ``excluded`` intervals."""
        if self.hours is None and not excluded:
            return start + max(amount, _ZERO)
        return self.add_each(start, (amount,), excluded)[0]

    def add_each(
        self, start: datetime, amounts: Sequence[timedelta], excluded: Sequence[Interval]
    ) -> list[datetime]:
        """:meth:`add` for several ascending amounts in one walk (a due and an at-risk time)."""
        if self.hours is None and not excluded:
            return [start + max(amount, _ZERO) for amount in amounts]
        if self.hours is not None:
            indexed = self._add_indexed(start, amounts, excluded)
            if indexed is not None:
                return indexed
        pieces: Iterable[Interval] = (
            [(start, _FOREVER)] if self.hours is None else self._intervals_from(start, None)
        )
        if excluded:
            pieces = subtract(pieces, excluded)
        reached: list[datetime] = []
        counted = _ZERO
        for piece_start, piece_end in pieces:
            span = piece_end - piece_start
            while counted + span >= amounts[len(reached)]:
                reached.append(piece_start + max(amounts[len(reached)] - counted, _ZERO))
                if len(reached) == len(amounts):
                    return reached
            counted += span
        raise ValueError(f"calendar {self.name!r}: target beyond the year {_FOREVER.year}")

    def _add_indexed(
        self, start: datetime, amounts: Sequence[timedelta], excluded: Sequence[Interval]
    ) -> list[datetime] | None:
        """:meth:`add_each` by the running totals; None: the walk must answer."""
        horizon = start
        while True:
            index = self._index(start, horizon)
            if index is None or index.gappy:
                return None
            reached = self._add_within(index, start, amounts, excluded)
            if reached is not None:
                return reached
            # Past the index: grow it further ahead (each time twice as far) and retry.
            horizon = index.high + (index.high - start)

    @staticmethod
    def _add_within(
        index: _Index, start: datetime, amounts: Sequence[timedelta], excluded: Sequence[Interval]
    ) -> list[datetime] | None:
        """:meth:`add_each` inside ``index``; None when an answer lies past it.

        Between exclusions the counted time is a difference of running totals, so each
        amount is found by bisection: the first instant where the counted time reaches it,
        or for nothing (an amount of zero) the first open instant, as the walk does.
        """
        reached: list[datetime] = []
        counted = _ZERO
        cursor = start
        gaps = iter(excluded)
        while True:
            if cursor >= index.high:
                return None
            gap = next(gaps, None)
            if gap is not None and gap[1] <= cursor:
                continue
            end = None if gap is None else max(gap[0], cursor)
            if end is not None and end >= index.high:
                return None
            base = index.total(cursor)
            span = None if end is None else index.total(end) - base
            while span is None or counted + span >= amounts[len(reached)]:
                need = amounts[len(reached)] - counted
                if need > _ZERO:
                    instant = index.reach(base + need)
                elif span is None or span > _ZERO:
                    instant = index.opening(cursor)
                else:
                    break  # nothing open before the exclusion: the walk looks further on
                if instant is None or instant >= index.high:
                    return None
                reached.append(instant)
                if len(reached) == len(amounts):
                    return reached
            assert span is not None
            assert gap is not None
            counted += span
            cursor = max(cursor, gap[1])

    def _indexed_opening(self, instant: datetime) -> datetime | None:
        """:meth:`next_opening` from the current index, if it holds the answer."""
        index = self._indexes.get("")
        if index is None or not index.low <= instant < index.high:
            return None
        opening = index.opening(instant)
        return opening if opening is not None and opening < index.high else None

    def _index(self, start: datetime, end: datetime) -> _Index | None:
        """An index answering for ``[start, end]``, built or grown as needed; None: too far."""
        if self.hours is None:
            return None
        index = self._indexes.get("")
        if index is not None and index.low <= start and end < index.high:
            return index
        zone = self.timezone
        first = start.astimezone(zone).date().toordinal() - 2
        last = end.astimezone(zone).date().toordinal() + 2
        if first < _INDEX_FIRST_DAY or last > _INDEX_LAST_DAY or last - first > _INDEX_MAX_DAYS:
            return None
        if index is not None and max(last, index.last) - min(first, index.first) <= (
            _INDEX_MAX_DAYS - 2 * _INDEX_MARGIN_DAYS
        ):
            first, last = min(first, index.first), max(last, index.last)
        margin = min(_INDEX_MARGIN_DAYS, (_INDEX_MAX_DAYS - (last - first)) // 2)
        first = max(first - margin, _INDEX_FIRST_DAY)
        last = min(last + margin, _INDEX_LAST_DAY)
        index = self._build_index(first, last)
        self._indexes[""] = index
        return index

    def _build_index(self, first: int, last: int) -> _Index:
        """The index of local days ``first`` to ``last`` (ordinals, inclusive)."""
        opens: list[datetime] = []
        closes: list[datetime] = []
        for ordinal in range(first, last + 1):
            for day_open, day_close in self._day(date.fromordinal(ordinal)):
                if closes and day_open <= closes[-1]:
                    # Merged as the walk merges them (a 24:00 closing meets a 00:00 opening).
                    if day_close > closes[-1]:
                        closes[-1] = day_close
                    continue
                opens.append(day_open)
                closes.append(day_close)
        before: list[timedelta] = []
        through: list[timedelta] = []
        total = _ZERO
        for day_open, day_close in zip(opens, closes, strict=True):
            before.append(total)
            total += day_close - day_open
            through.append(total)
        # An instant in [low, high) has its local day and both neighbours in the index.
        low = self._midnight(first + 2)
        high = self._midnight(last - 1)
        gappy = not opens or any(
            later - earlier >= _INDEX_LONGEST_GAP
            for earlier, later in zip([low, *closes], [*opens, high], strict=True)
        )
        return _Index(first, last, low, high, opens, closes, before, through, gappy)

    def _midnight(self, ordinal: int) -> datetime:
        """The UTC instant of the start of a local day (its earliest reading)."""
        day = date.fromordinal(ordinal)
        return datetime(day.year, day.month, day.day, tzinfo=self.timezone).astimezone(UTC)

    def _intervals_from(self, start: datetime, end: datetime | None) -> Iterator[Interval]:
        """Open intervals clipped to ``[start, end)`` (``end`` None: without end), merged."""
        zone = self.timezone
        # The day before may close after ``start`` (24:00, or a late UTC offset).
        day = start.astimezone(zone).date() - _DAY
        last = None if end is None else end.astimezone(zone).date() + _DAY
        last_open = day
        pending: Interval | None = None
        while last is None or day <= last:
            for opens, closes in self._day(day):
                if closes <= start:
                    continue
                if end is not None:
                    if opens >= end:
                        break
                    closes = min(closes, end)
                opens = max(opens, start)
                last_open = day
                if pending is not None and opens <= pending[1]:
                    pending = (pending[0], max(pending[1], closes))
                    continue
                if pending is not None:
                    yield pending
                pending = (opens, closes)
            day += _DAY
            if end is None and day - last_open > _LONGEST_CLOSURE:
                raise ValueError(f"calendar {self.name!r} never opens after {start.isoformat()}")
        if pending is not None:
            yield pending

    def _day(self, day: date) -> tuple[Interval, ...]:
        """The UTC open intervals of one local date (cached)."""
        cached = self._days.get(day)
        if cached is not None:
            return cached
        intervals = self._compute_day(day)
        if len(self._days) >= _DAY_CACHE_LIMIT:
            self._days.clear()
        self._days[day] = intervals
        return intervals

    def _compute_day(self, day: date) -> tuple[Interval, ...]:
        assert self.hours is not None
        spec = self.hours[day.weekday()]
        if not spec or self._closed(day):
            return ()
        result: list[Interval] = []
        for open_minute, close_minute in spec:
            opens = self._local_to_utc(day, open_minute, fold=0)
            closes = self._local_to_utc(day, close_minute, fold=1)
            if opens >= closes:
                continue  # the whole interval fell into a skipped hour
            if result and opens <= result[-1][1]:
                # In a repeated hour, one interval's second-occurrence closing can pass the
                # next one's first-occurrence opening: real time counts once.
                result[-1] = (result[-1][0], max(result[-1][1], closes))
            else:
                result.append((opens, closes))
        return tuple(result)

    def _closed(self, day: date) -> bool:
        if day in self.closed_dates:
            return True
        if self.country is None:
            return False
        year = self._holiday_years.get(day.year)
        if year is None:
            found = holidays_lib.country_holidays(
                self.country, subdiv=self.subdivision, years=day.year
            )
            year = frozenset(d for d in found if d.year == day.year)
            self._holiday_years[day.year] = year
        return day in year

    def _local_to_utc(self, day: date, minute: int, fold: int) -> datetime:
        """The UTC instant of a local wall time; a skipped time maps to the jump instant."""
        if minute >= 24 * 60:
            day, minute = day + _DAY, minute - 24 * 60
        hour, minute = divmod(minute, 60)
        local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=self.timezone,
                         fold=fold)
        instant = local.astimezone(UTC)
        back = instant.astimezone(self.timezone)
        if (back.year, back.month, back.day, back.hour, back.minute) == (
            day.year, day.month, day.day, hour, minute
        ):
            return instant
        # The wall time does not exist (spring forward): the two folds land on either side
        # of the jump; find the jump itself, which is the first instant that exists after.
        other = local.replace(fold=1 - fold).astimezone(UTC)
        low, high = min(instant, other), max(instant, other)
        before = low.astimezone(self.timezone).utcoffset()
        lo_s, hi_s = 0, int((high - low) // _SECOND)
        while hi_s - lo_s > 1:
            mid = (lo_s + hi_s) // 2
            if (low + mid * _SECOND).astimezone(self.timezone).utcoffset() == before:
                lo_s = mid
            else:
                hi_s = mid
        return low + hi_s * _SECOND


def normalize(intervals: Sequence[Interval]) -> list[Interval]:
    """Sort intervals and merge overlapping or touching ones; drop empty ones."""
    ordered = sorted(i for i in intervals if i[0] < i[1]) if len(intervals) > 1 else [
        i for i in intervals if i[0] < i[1]
    ]
    merged: list[Interval] = []
    for start, end in ordered:
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def subtract(intervals: Iterable[Interval], excluded: Sequence[Interval]) -> Iterator[Interval]:
    """Yield the parts of sorted ``intervals`` outside sorted, disjoint ``excluded`` ones."""
    first, count = 0, len(excluded)
    for start, end in intervals:
        while first < count and excluded[first][1] <= start:
            first += 1
        cursor, index = start, first
        while index < count and excluded[index][0] < end:
            ex_start, ex_end = excluded[index]
            if ex_start > cursor:
                yield (cursor, ex_start)
            cursor = max(cursor, ex_end)
            if cursor >= end:
                break
            index += 1
        if cursor < end:
            yield (cursor, end)


def build_calendars(config: Config) -> dict[str, Calendar]:
    """Every configured calendar by name, plus the built-in ``24x7``."""
    calendars = {name: Calendar.from_config(name, cal) for name, cal in config.calendars.items()}
    calendars[ALWAYS_OPEN] = Calendar.always_open()
    return calendars
