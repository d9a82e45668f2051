"""Tests of the board's pure formatting: countdowns, columns, safe text and links, verdicts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from rich.cells import cell_len
from test_board_store import NOW, sample_row

from monitor.events import ClockState
from monitor.storage import SourceState
from monitor.storage.board import LogEntry, LogKind, PolicyToday, QueueFilter, QueueSort
from monitor.tui.render import (
    NOTHING,
    cell_text,
    clean,
    filter_words,
    fit,
    format_age,
    format_clock,
    format_countdown,
    format_percent,
    hourly_medians,
    layout_columns,
    log_detail,
    overall_percent,
    promise_status,
    row_snippet,
    safe_url,
    source_health,
    time_left,
)

ZONE = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        pytest.param(247, "4m 07s", id="minutes"),
        pytest.param(59.9, "0m 59s", id="rounds-down"),
        pytest.param(0, "0m 00s", id="due-now"),
        pytest.param(-0.2, "-0m 01s", id="a-moment-past-due"),
        pytest.param(-90, "-1m 30s", id="past-due"),
        pytest.param(3 * 3600 + 5 * 60, "3h 05m", id="hours"),
        pytest.param(2 * 86400 + 4 * 3600 + 59, "2d 04h", id="days"),
        pytest.param(-6 * 86400 - 23 * 3600, "-6d 23h", id="days-past-due"),
    ],
)
def test_format_countdown(seconds: float, expected: str) -> None:
    """Countdowns read in two units, whole seconds, with a sign once past due."""
    assert format_countdown(seconds) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        pytest.param(30, "<1m", id="seconds"),
        pytest.param(600, "10m", id="minutes"),
        pytest.param(7200, "2h", id="hours"),
        pytest.param(3 * 86400, "3d", id="days"),
        pytest.param(30 * 86400, "4w", id="weeks"),
    ],
)
def test_format_age(seconds: float, expected: str) -> None:
    """Ages take one unit, so the column stays narrow."""
    assert format_age(seconds) == expected


def test_time_left_of_each_kind_of_row() -> None:
    """Due clocks count down, paused ones show their frozen rest, others a dash."""
    row = sample_row()
    assert time_left(row, NOW).text == "6m 00s"
    assert time_left(row, NOW + timedelta(minutes=5)).state == "at_risk"
    late = time_left(row, NOW + timedelta(minutes=8))
    assert (late.text, late.state) == ("-2m 00s", "overdue")
    waiting = sample_row(state=None, due_at=None, target_seconds=None, elapsed_seconds=None)
    assert time_left(waiting, NOW).text == NOTHING
    frozen = sample_row(due_at=None, elapsed_seconds=60, state=ClockState.PAUSED)
    assert time_left(frozen, NOW + timedelta(hours=9)).text == "5m 00s"


@pytest.mark.parametrize(
    ("width", "expected"),
    [
        pytest.param(80, ["time_left", "state", "priority", "customer", "snippet", "age"], id="80"),
        pytest.param(
            142,
            [
                "time_left",
                "state",
                "metric",
                "priority",
                "source",
                "channel",
                "customer",
                "snippet",
                "assignee",
                "age",
            ],
            id="200-with-panels",
        ),
        pytest.param(40, ["time_left", "state", "customer", "snippet"], id="tiny"),
    ],
)
def test_layout_columns_fit_the_width(width: int, expected: list[str]) -> None:
    """The essential columns always show; others join while the message keeps room."""
    columns = layout_columns(width)
    assert [column.name for column in columns] == expected
    assert sum(column.width for column in columns) + len(columns) - 1 == width


@pytest.mark.parametrize(
    ("text", "width", "expected"),
    [
        pytest.param("hello", 8, "hello   ", id="pads"),
        pytest.param("hello world", 8, "hello w…", id="cuts-with-ellipsis"),
        pytest.param("日本語のテキスト", 7, "日本語…", id="wide-characters"),
        pytest.param("🔥🔥🔥", 4, "🔥 …", id="emoji-never-split"),
    ],
)
def test_fit_measures_terminal_cells(text: str, width: int, expected: str) -> None:
    """Cells, not characters: a wide name never pushes the next column."""
    assert fit(text, width) == expected
    assert cell_len(fit(text, width)) <= width


def test_fit_aligns_right() -> None:
    """Countdowns are right-aligned."""
    assert fit("4m", 5, align="right") == "   4m"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("[bold]hi[/bold]", "[bold]hi[/bold]", id="markup-kept-as-text"),
        pytest.param("\x1b[31mred\x1b[0m", "[31mred[0m", id="escape-removed"),
        pytest.param("\u202egnp.exe", "gnp.exe", id="bidi-override-removed"),
        pytest.param("a\u2066b\u2069c", "abc", id="bidi-isolates-removed"),
        pytest.param("line one\nline\ttwo", "line one line two", id="one-line"),
        pytest.param("bell\x07 and del\x7f", "bell and del", id="controls-removed"),
        pytest.param(None, "", id="none"),
    ],
)
def test_clean_makes_one_safe_line(text: str | None, expected: str) -> None:
    """Public text reaches a cell as one line without anything a terminal acts on."""
    assert clean(text) == expected


def test_clean_cuts_10_kilobytes_to_a_cell() -> None:
    """A 10 kB line is cut to its width."""
    assert clean("A" * 10_000, 20) == "A" * 19 + "…"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(
            "https://acme.zendesk.com/agent/tickets/1",
            "https://acme.zendesk.com/agent/tickets/1",
            id="https",
        ),
        pytest.param(" http://x.example/a ", "http://x.example/a", id="http-trimmed"),
        pytest.param("javascript:alert(1)", None, id="javascript"),
        pytest.param("file:///etc/passwd", None, id="file"),
        pytest.param("https://", None, id="no-host"),
        pytest.param("https://x.example/\x1b]8;;evil", None, id="escape"),
        pytest.param("https://x.example/a b", None, id="space"),
        pytest.param("https://x.example/\u202eexe", None, id="bidi"),
        pytest.param("https://[::1", None, id="malformed"),
        pytest.param(None, None, id="none"),
    ],
)
def test_safe_url_only_plain_web_links(url: str | None, expected: str | None) -> None:
    """Only http(s) links with a host and nothing a shell or terminal would act on."""
    assert safe_url(url) == expected


def test_cells_of_a_hostile_row_are_inert() -> None:
    """Every cell of a row with hostile fields is one clean line."""
    row = sample_row(
        customer="[@click=app.quit]\x1b[2J",
        snippet="\u202eevil\nline",
        assignee="[b]x[/b]\x00",
        channel="\x07mastodon",
    )
    for column in layout_columns(200):
        text = cell_text(column.name, row, NOW)
        assert "\x1b" not in text
        assert "\u202e" not in text
        assert "\n" not in text
        assert "\x07" not in text
        assert "\x00" not in text
    assert cell_text("customer", row, NOW) == "[@click=app.quit][2J"
    assert row_snippet(row) == "evil line"


def test_row_snippet_falls_back_to_the_subject() -> None:
    """With no customer message, the subject says what it is about."""
    assert row_snippet(sample_row(snippet=None, subject="Printer\non fire")) == "Printer on fire"


@pytest.mark.parametrize(
    ("counts", "level", "text"),
    [
        pytest.param(
            {"breached": 3, "overdue": 1, "at_risk": 2},
            "error",
            "✖ 3 BREACHED · 1 OVERDUE",
            id="breached",
        ),
        pytest.param({"overdue": 1}, "error", "✖ 1 OVERDUE", id="overdue-only"),
        pytest.param({"at_risk": 2, "running": 4}, "warning", "▲ 2 AT RISK", id="at-risk"),
        pytest.param({"running": 4, "waiting": 9}, "ok", "● ALL PROMISES KEPT", id="kept"),
    ],
)
def test_promise_status(counts: dict[str, int], level: str, text: str) -> None:
    """The header's verdict: any breach or overdue is red, at risk amber, else green."""
    verdict = promise_status(counts)
    assert (verdict.level, verdict.text) == (level, text)


def test_filter_words_name_every_filter() -> None:
    """The header shows each filter in force; hostile search text stays literal."""
    filters = QueueFilter(
        priority="urgent",
        assignee="",
        state="at_risk",
        search="[@click=app.quit]",
        sort=QueueSort.AGE,
    )
    assert filter_words(filters) == [
        "priority urgent",
        "assignee none",
        "state at risk",
        "“[@click=app.quit]”",
    ]


def test_percentages_and_overall_today() -> None:
    """% met is met over decided clocks; nothing decided is a dash."""
    today = [PolicyToday("desk", 19, 1, 5, 60, 600), PolicyToday("social", 0, 0, 3, None, None)]
    assert overall_percent(today) == pytest.approx(95.0)
    assert format_percent(95.0) == "95.0%"
    assert format_percent(99.96) == "100%"
    assert format_percent(None) == NOTHING
    assert overall_percent([PolicyToday("social", 0, 0, 3, None, None)]) is None


def test_hourly_medians_for_the_sparkline() -> None:
    """Each of the last 24 hours gets the median first reply (minutes); empty hours 0."""
    times = [
        (NOW - timedelta(hours=23, minutes=30), 120),
        (NOW - timedelta(hours=23, minutes=10), 360),
        (NOW - timedelta(hours=23, minutes=5), 600),
        (NOW - timedelta(minutes=5), 60),
        (NOW - timedelta(hours=30), 9999),  # outside the window
    ]
    medians = hourly_medians(times, NOW)
    assert len(medians) == 24
    assert medians[0] == 6.0
    assert medians[-1] == 1.0
    assert sum(medians[1:-1]) == 0


def _source(**changes: object) -> SourceState:
    """A healthy source, polled 10 s ago, watermark 70 s behind."""
    state = SourceState(
        name="desk",
        kind="zendesk",
        cursor=None,
        watermark=NOW - timedelta(seconds=70),
        last_poll_at=NOW - timedelta(seconds=10),
        last_success_at=NOW - timedelta(seconds=10),
        last_error=None,
        last_error_at=None,
        failing_since=None,
        degraded=False,
    )
    return replace(state, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "level", "label", "detail"),
    [
        pytest.param({}, "ok", "ok", "ok 10s ago · lag 1m 10s", id="ok"),
        pytest.param(
            {"last_success_at": NOW - timedelta(minutes=6)},
            "warning",
            "STALE",
            "ok 6m ago · lag 1m 10s",
            id="stale",
        ),
        pytest.param(
            {"failing_since": NOW - timedelta(minutes=2), "last_error": "HTTP 503\n[b]x"},
            "error",
            "FAILING",
            "since 09:58:00: HTTP 503 [b]x · last ok 10s ago · lag 1m 10s",
            id="failing",
        ),
        pytest.param(
            {"degraded": True, "last_error": "not JSON"},
            "error",
            "DEGRADED",
            "since —: not JSON · last ok 10s ago · lag 1m 10s",
            id="degraded",
        ),
        pytest.param(
            {"last_success_at": None, "watermark": None},
            "warning",
            "waiting",
            "never polled yet",
            id="never",
        ),
    ],
)
def test_source_health(changes: dict[str, object], level: str, label: str, detail: str) -> None:
    """A source that stops answering is impossible to miss."""
    health = source_health(_source(**changes), NOW, ZONE)
    assert (health.level, health.label, health.detail) == (level, label, detail)


def test_format_clock_in_the_team_timezone() -> None:
    """Today's times with seconds, this week's with the day, older with the date."""
    assert format_clock(NOW, ZONE, NOW) == "10:00:00"
    assert format_clock(NOW - timedelta(days=2), ZONE, NOW) == "Mon 10:00"
    assert format_clock(datetime(2026, 1, 2, 15, 0, tzinfo=UTC), ZONE, NOW) == "2026-01-02 10:00"
    assert format_clock(None, ZONE, NOW) == NOTHING


def test_log_detail_names_who() -> None:
    """Breaches name the assignee, recoveries the replier and lateness, dismissals why."""
    base = LogEntry(
        at=NOW,
        kind=LogKind.BREACHED,
        source="social",
        conversation="1",
        metric=None,
        cycle=0,
        policy="social",
        customer="ava",
        assignee=None,
        target_seconds=360,
    )
    assert log_detail(base) == "unassigned · target 6m"
    recovered = replace(base, kind=LogKind.RECOVERED, by="Kim", late_seconds=240)
    assert log_detail(recovered) == "replied by Kim 4m late"
    dismissed = replace(base, kind=LogKind.DISMISSED, by="lead", reason="spam\x1b[2J")
    assert log_detail(dismissed) == "by lead: spam[2J"
    assert log_detail(replace(base, kind=LogKind.UNDONE, by="kim")) == "undone by kim"
