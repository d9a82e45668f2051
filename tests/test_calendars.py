"""Tests for monitor.calendars: open time, deadlines, holidays and daylight-saving days."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.calendars import Calendar, Interval, build_calendars, normalize, subtract
from monitor.config import CalendarConfig, Config, HolidaysConfig
from monitor.errors import ConfigError

NEW_YORK = "America/New_York"
OFFICE_HOURS = {"mon-fri": "09:00-12:30, 13:30-18:00"}
HOUR = 3600.0


def calendar(
    hours: dict[str, str],
    zone: str = NEW_YORK,
    *,
    country: str | None = None,
    subdivision: str | None = None,
    dates: tuple[str, ...] = (),
) -> Calendar:
    """A business calendar built through the config model, as the product builds it."""
    config = CalendarConfig(
        timezone=zone,
        hours=hours,
        holidays=HolidaysConfig(
            country=country,
            subdivision=subdivision,
            dates=tuple(date.fromisoformat(d) for d in dates),
        ),
    )
    return Calendar.from_config("test", config)


def local(text: str, zone: str = NEW_YORK, fold: int = 0) -> datetime:
    """The UTC instant of a wall-clock time ``YYYY-MM-DD HH:MM`` in ``zone``."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone), fold=fold).astimezone(UTC)


def open_hours_of_day(cal: Calendar, day: str, zone: str = NEW_YORK) -> float:
    """Counted hours from one local midnight to the next."""
    start = local(f"{day} 00:00", zone)
    end = local(f"{(date.fromisoformat(day) + timedelta(days=1)).isoformat()} 00:00", zone)
    return cal.counted_seconds(start, end) / HOUR


@pytest.mark.parametrize(
    ("cal", "day", "hours"),
    [
        pytest.param(calendar(OFFICE_HOURS), "2026-11-23", 8.0, id="two-intervals-a-day"),
        pytest.param(calendar(OFFICE_HOURS), "2026-11-28", 0.0, id="saturday-closed"),
        pytest.param(
            calendar({**OFFICE_HOURS, "sat": "10:00-14:00"}), "2026-11-28", 4.0,
            id="saturday-short-day",
        ),
        pytest.param(
            calendar(OFFICE_HOURS, dates=("2026-12-24",)), "2026-12-24", 0.0,
            id="explicit-holiday",
        ),
        pytest.param(
            calendar(OFFICE_HOURS, dates=("2026-12-24",)), "2026-12-23", 8.0,
            id="day-before-explicit-holiday",
        ),
        pytest.param(
            calendar(OFFICE_HOURS, country="US"), "2026-11-26", 0.0, id="us-thanksgiving"
        ),
        pytest.param(
            calendar(OFFICE_HOURS, country="US"), "2026-11-27", 8.0, id="us-day-after-open"
        ),
        pytest.param(
            calendar(OFFICE_HOURS, "Europe/Berlin", country="DE", subdivision="BY"),
            "2026-01-06", 0.0, id="bavaria-epiphany",
        ),
        pytest.param(
            calendar(OFFICE_HOURS, "Europe/Berlin", country="DE", subdivision="BE"),
            "2026-01-06", 8.0, id="berlin-no-epiphany",
        ),
        pytest.param(
            calendar(OFFICE_HOURS, "Europe/Berlin", country="DE"), "2026-10-03", 0.0,
            id="germany-unity-day-saturday",
        ),
        pytest.param(
            calendar(OFFICE_HOURS, "Europe/Berlin", country="DE"), "2026-12-25", 0.0,
            id="germany-christmas",
        ),
    ],
)
def test_open_hours_of_a_day(cal: Calendar, day: str, hours: float) -> None:
    """A day's open time follows its weekday intervals, closed days and holidays."""
    assert open_hours_of_day(cal, day, str(cal.timezone)) == hours


@pytest.mark.parametrize(
    ("zone", "day", "spec", "hours"),
    [
        pytest.param(NEW_YORK, "2026-03-08", "09:00-17:00", 8.0, id="ny-spring-office-day"),
        pytest.param(NEW_YORK, "2026-03-08", "00:00-24:00", 23.0, id="ny-spring-whole-day"),
        pytest.param(NEW_YORK, "2026-11-01", "09:00-17:00", 8.0, id="ny-fall-office-day"),
        pytest.param(NEW_YORK, "2026-11-01", "00:00-24:00", 25.0, id="ny-fall-whole-day"),
        pytest.param(NEW_YORK, "2026-03-07", "00:00-24:00", 24.0, id="ny-ordinary-day"),
        pytest.param(NEW_YORK, "2026-03-08", "02:30-10:00", 7.0, id="ny-opening-in-gap"),
        pytest.param(NEW_YORK, "2026-03-08", "01:00-02:30", 1.0, id="ny-closing-in-gap"),
        pytest.param(NEW_YORK, "2026-03-08", "02:10-02:50", 0.0, id="ny-interval-in-gap"),
        pytest.param(NEW_YORK, "2026-11-01", "01:00-02:00", 2.0, id="ny-repeated-hour-twice"),
        pytest.param(
            NEW_YORK, "2026-11-01", "00:00-01:30, 01:30-03:00", 4.0,
            id="ny-repeated-hour-counted-once",
        ),
        pytest.param("Europe/London", "2026-03-29", "09:00-17:00", 8.0, id="london-spring"),
        pytest.param("Europe/London", "2026-03-29", "00:00-24:00", 23.0, id="london-spring-day"),
        pytest.param("Europe/London", "2026-10-25", "09:00-17:00", 8.0, id="london-fall"),
        pytest.param("Europe/London", "2026-10-25", "00:00-24:00", 25.0, id="london-fall-day"),
        pytest.param("Europe/London", "2026-03-29", "01:30-09:00", 7.0, id="london-gap-opening"),
    ],
)
def test_daylight_saving_days_follow_the_wall_clock(
    zone: str, day: str, spec: str, hours: float
) -> None:
    """On clock-change days, local hours count as the real time that passed (SLA.md §4)."""
    cal = calendar({"mon-sun": spec}, zone)
    assert open_hours_of_day(cal, day, zone) == hours


def test_opening_in_a_skipped_hour_opens_at_the_jump() -> None:
    """A 02:30 opening on spring-forward day opens at 03:00 local, the first real instant."""
    cal = calendar({"mon-sun": "02:30-10:00"})
    intervals = list(cal.open_intervals(local("2026-03-08 00:00"), local("2026-03-08 23:00")))
    assert intervals == [(datetime(2026, 3, 8, 7, 0, tzinfo=UTC), local("2026-03-08 10:00"))]


@pytest.mark.parametrize(
    ("start", "hours", "due"),
    [
        pytest.param("2026-11-23 09:00", 3.5, "2026-11-23 12:30", id="ends-exactly-at-closing"),
        pytest.param("2026-11-23 09:00", 8.0, "2026-11-23 18:00", id="ends-at-end-of-day"),
        pytest.param("2026-11-23 12:00", 1.0, "2026-11-23 14:00", id="skips-lunch"),
        pytest.param("2026-11-23 12:45", 0.5, "2026-11-23 14:00", id="starts-at-lunch"),
        pytest.param("2026-11-21 10:00", 1.0, "2026-11-23 10:00", id="starts-on-saturday"),
        pytest.param("2026-11-23 07:00", 0.0, "2026-11-23 09:00", id="zero-from-closed"),
        pytest.param("2026-11-23 18:00", 0.25, "2026-11-24 09:15", id="starts-at-closing"),
        pytest.param("2026-11-25 17:00", 2.0, "2026-11-27 10:00", id="over-thanksgiving"),
        pytest.param("2026-11-20 17:30", 24.0, "2026-11-25 17:30", id="one-day-is-24-open-hours"),
    ],
)
def test_add_counted(start: str, hours: float, due: str) -> None:
    """add_counted walks open time only and lands on an open instant or a closing."""
    cal = calendar(OFFICE_HOURS, country="US")
    assert cal.add_counted(local(start), hours * HOUR) == local(due)


def test_add_counted_skips_excluded_time() -> None:
    """Excluded (paused) time is not counted, even when it is open time."""
    cal = calendar(OFFICE_HOURS)
    excluded = [(local("2026-11-23 10:00"), local("2026-11-23 11:00"))]
    assert cal.add_counted(local("2026-11-23 09:00"), 2 * HOUR, excluded) == local(
        "2026-11-23 12:00"
    )
    assert cal.counted_seconds(local("2026-11-23 09:00"), local("2026-11-23 12:00"), excluded) == (
        2 * HOUR
    )


def test_always_open_is_plain_arithmetic() -> None:
    """The 24x7 calendar counts every second and subtracts only excluded spans."""
    cal = Calendar.always_open()
    start = datetime(2026, 11, 23, 9, tzinfo=UTC)
    excluded = [(start + timedelta(minutes=10), start + timedelta(minutes=20))]
    assert cal.name == "24x7"
    assert cal.always
    assert cal.is_open(start)
    assert cal.counted_seconds(start, start + timedelta(hours=1)) == HOUR
    assert cal.counted_seconds(start, start + timedelta(hours=1), excluded) == 50 * 60
    assert cal.add_counted(start, 360) == start + timedelta(minutes=6)
    assert cal.add_counted(start, 15 * 60, excluded) == start + timedelta(minutes=25)
    assert list(cal.open_intervals(start, start + timedelta(hours=1))) == [
        (start, start + timedelta(hours=1))
    ]


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        pytest.param("2026-11-23 09:00", True, id="opening-is-open"),
        pytest.param("2026-11-23 12:30", False, id="closing-is-closed"),
        pytest.param("2026-11-23 12:29", True, id="just-before-lunch"),
        pytest.param("2026-11-23 13:00", False, id="lunch"),
        pytest.param("2026-11-22 12:00", False, id="sunday"),
        pytest.param("2026-11-26 12:00", False, id="thanksgiving"),
    ],
)
def test_is_open(instant: str, expected: bool) -> None:
    """is_open is true on [opening, closing) of an open day."""
    assert calendar(OFFICE_HOURS, country="US").is_open(local(instant)) is expected


def test_open_intervals_are_clipped_and_in_utc() -> None:
    """open_intervals yields UTC intervals clipped to the asked range."""
    cal = calendar(OFFICE_HOURS)
    intervals = list(cal.open_intervals(local("2026-11-23 10:00"), local("2026-11-24 10:00")))
    assert intervals == [
        (local("2026-11-23 10:00"), local("2026-11-23 12:30")),
        (local("2026-11-23 13:30"), local("2026-11-23 18:00")),
        (local("2026-11-24 09:00"), local("2026-11-24 10:00")),
    ]
    assert all(a.tzinfo is UTC and b.tzinfo is UTC for a, b in intervals)


def test_next_opening() -> None:
    """next_opening is the instant itself when open, else the next opening."""
    cal = calendar(OFFICE_HOURS)
    assert cal.next_opening(local("2026-11-23 10:00")) == local("2026-11-23 10:00")
    assert cal.next_opening(local("2026-11-21 10:00")) == local("2026-11-23 09:00")


def test_years_long_intervals_stay_fast() -> None:
    """Five years of a business calendar are counted day by day in well under a second."""
    cal = calendar({"mon-fri": "09:00-17:00"})
    start = local("2026-01-05 00:00")  # a Monday
    end = start + timedelta(weeks=260)
    began = time.perf_counter()
    counted = cal.counted_seconds(start, end)
    due = cal.add_counted(start, counted)
    elapsed = time.perf_counter() - began
    assert counted == 260 * 40 * HOUR
    assert due == local("2030-12-27 17:00")  # the last Friday's closing, not Monday 09:00
    assert elapsed < 2.0


def test_a_calendar_that_never_opens_is_an_error_not_a_hang() -> None:
    """A calendar with no open day ends the search with ValueError."""
    cal = Calendar(name="never", timezone=ZoneInfo(NEW_YORK), hours=((),) * 7)
    with pytest.raises(ValueError, match="never opens"):
        cal.add_counted(datetime(2026, 1, 1, tzinfo=UTC), 60)


def test_naive_datetimes_are_refused() -> None:
    """Calendars accept aware instants only."""
    with pytest.raises(ValueError, match="no timezone"):
        Calendar.always_open().counted_seconds(datetime(2026, 1, 1), datetime(2026, 1, 2))


@pytest.mark.parametrize(
    ("country", "subdivision", "path"),
    [
        pytest.param("XX", None, "calendars.office.holidays.country", id="unknown-country"),
        pytest.param("US", "ZZ", "calendars.office.holidays.subdivision", id="unknown-state"),
    ],
)
def test_unknown_holiday_region_is_a_config_error(
    country: str, subdivision: str | None, path: str
) -> None:
    """A holiday country or subdivision the holidays package does not know names its key."""
    config = CalendarConfig(
        timezone=NEW_YORK,
        hours=OFFICE_HOURS,
        holidays=HolidaysConfig(country=country, subdivision=subdivision),
    )
    with pytest.raises(ConfigError) as caught:
        Calendar.from_config("office", config)
    assert caught.value.path == path


def test_build_calendars_adds_24x7() -> None:
    """build_calendars returns every configured calendar plus the built-in 24x7."""
    config = Config(calendars={"office": CalendarConfig(timezone=NEW_YORK, hours=OFFICE_HOURS)})
    calendars = build_calendars(config)
    assert sorted(calendars) == ["24x7", "office"]
    assert calendars["24x7"].always
    assert not calendars["office"].always


WINDOW_START = datetime(2026, 2, 20, tzinfo=UTC)
instants = st.integers(min_value=0, max_value=120 * 24 * 60).map(
    lambda minutes: WINDOW_START + timedelta(minutes=minutes)
)
BUSINESS = calendar({"mon-fri": "09:00-12:30, 13:30-18:00", "sat": "00:30-02:30"}, country="US")


@settings(max_examples=150, deadline=None)
@given(start=instants, minutes=st.integers(min_value=0, max_value=60 * 60))
def test_add_then_count_round_trips(start: datetime, minutes: int) -> None:
    """Counting from start to add_counted(start, x) gives back x, across DST changes."""
    due = BUSINESS.add_counted(start, minutes * 60)
    assert BUSINESS.counted_seconds(start, due) == minutes * 60
    assert BUSINESS.is_open(due) or BUSINESS.is_open(due - timedelta(microseconds=1))


@settings(max_examples=150, deadline=None)
@given(start=instants, end=instants)
def test_counted_never_exceeds_wall_time(start: datetime, end: datetime) -> None:
    """Open time within a span is never more than the span itself."""
    counted = BUSINESS.counted_seconds(start, end)
    assert 0 <= counted <= max(0.0, (end - start).total_seconds())


# Calendars whose days meet or overlap across midnight and daylight-saving changes.
WALKED = [
    calendar({"mon-fri": "09:00-12:30, 13:30-18:00"}, country="US"),
    calendar({"mon-sun": "22:00-24:00, 00:00-01:30"}, "Europe/London"),
    calendar({"tue": "00:00-24:00", "wed": "00:00-00:30", "sat": "02:00-03:00"}, "America/Havana"),
    calendar({"mon-fri": "08:00-17:00"}, "Australia/Lord_Howe"),
]
spans = st.lists(
    st.tuples(instants, st.integers(min_value=1, max_value=5 * 24 * 60)), max_size=3
).map(lambda items: [(a, a + timedelta(minutes=m, seconds=7)) for a, m in items])


def _walked(
    cal: Calendar, start: datetime, end: datetime, excluded: list[Interval]
) -> list[Interval]:
    """The open intervals of [start, end) outside ``excluded``, from the day-by-day walk."""
    return list(subtract(cal.open_intervals(start, end), normalize(excluded)))


@settings(max_examples=200, deadline=None)
@given(
    which=st.integers(min_value=0, max_value=len(WALKED) - 1),
    start=instants,
    end=instants,
    excluded=spans,
    minutes=st.integers(min_value=0, max_value=5 * 24 * 60),
)
def test_running_totals_agree_with_the_day_walk(
    which: int, start: datetime, end: datetime, excluded: list[Interval], minutes: int
) -> None:
    """Counted time and due instants from the running totals are the walk's, to the µs."""
    cal = WALKED[which]
    start += timedelta(microseconds=250)
    pieces = _walked(cal, start, end, excluded)
    assert cal.counted_seconds(start, end, excluded) == sum(
        (b - a for a, b in pieces), timedelta(0)
    ).total_seconds()
    amount = timedelta(minutes=minutes)
    counted = timedelta(0)
    for piece_start, piece_end in _walked(cal, start, start + timedelta(days=200), excluded):
        if counted + (piece_end - piece_start) >= amount:
            expected = piece_start + (amount - counted)
            break
        counted += piece_end - piece_start
    assert cal.add_counted(start, amount.total_seconds(), excluded) == expected
    opening = next(iter(cal.open_intervals(start, start + timedelta(days=30))))[0]
    assert (cal.next_opening(start), cal.is_open(start)) == (opening, opening == start)
