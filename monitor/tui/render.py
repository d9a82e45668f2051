"""Provides the board's pure formatting: countdowns, states, columns, safe text and links.

Nothing here touches Textual, the store or the wall clock: every function takes ``now``
and plain values, so the rules a lead sees (what "at risk" looks like, how a countdown
reads, which columns fit in 80 cells) are tested as plain functions.

Text from the public goes through :func:`clean` (one line, no control characters, no
bidi overrides: :mod:`monitor.text`) before it is measured or shown; the widgets turn
it into ``Segment``/``Text`` objects, never into markup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Literal
from urllib.parse import urlsplit

from rich.cells import cell_len, set_cell_size

from monitor.durations import format_duration
from monitor.events import Metric, Priority
from monitor.storage import SourceState
from monitor.storage.board import (
    NO_POLICY,
    WAITING,
    LogEntry,
    LogKind,
    PolicyToday,
    QueueFilter,
    QueueRow,
    QueueSort,
    percentile,
    queue_state,
)
from monitor.text import sanitize

ELLIPSIS = "…"
NOTHING = "—"

STATE_LABELS: dict[str, str] = {
    "breached": "✖ breached",
    "overdue": "! overdue",
    "at_risk": "▲ at risk",
    "running": "● running",
    "paused": "‖ paused",
    WAITING: "◌ waiting",
    NO_POLICY: "○ no policy",
}
"""How each queue state reads in the STATE column (one glyph, then the word)."""

STATE_ORDER = ("breached", "overdue", "at_risk", "running", "paused", WAITING, NO_POLICY)
"""Queue states from most to least urgent, as the header and the filter list them."""

METRIC_LABELS: dict[Metric, str] = {
    Metric.FIRST_RESPONSE: "first reply",
    Metric.NEXT_RESPONSE: "next reply",
    Metric.RESOLUTION: "resolution",
}

SORT_LABELS: dict[QueueSort, str] = {
    QueueSort.URGENCY: "time left",
    QueueSort.PRIORITY: "priority",
    QueueSort.AGE: "oldest first",
    QueueSort.RECENT: "latest activity",
}


def clean(text: str | None, width: int | None = None) -> str:
    """Return ``text`` as one safe line: controls and bidi overrides gone, spaces folded.

    With ``width``, the line is cut to that many terminal cells, ending in an ellipsis.
    """
    if not text:
        return ""
    line = sanitize(text, keep_newlines=False)
    return line if width is None else fit(line, width, pad=False)


def fit(text: str, width: int, *, pad: bool = True, align: str = "left") -> str:
    """Return ``text`` cut (with an ellipsis) or padded to exactly ``width`` cells.

    Measured in terminal cells, so wide characters (CJK, emoji) never push a column.
    """
    if width <= 0:
        return ""
    length = cell_len(text)
    if length > width:
        return set_cell_size(text, width - 1) + ELLIPSIS
    if not pad or length == width:
        return text
    gap = " " * (width - length)
    return gap + text if align == "right" else text + gap


def format_countdown(seconds: float) -> str:
    """Return time left as a countdown: ``4m 07s``, ``3h 05m``, ``2d 04h``, ``-1m 30s``.

    Whole seconds, rounded down, so a clock one instant past due already reads ``-0m 01s``.
    """
    whole = math.floor(seconds)
    sign = "-" if whole < 0 else ""
    left = abs(whole)
    days, rest = divmod(left, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours:02d}h"
    if hours:
        return f"{sign}{hours}h {minutes:02d}m"
    return f"{sign}{minutes}m {secs:02d}s"


def format_span(seconds: float | None) -> str:
    """Return a duration for tables, two units at most: ``45s``, ``6m``, ``1h 30m``."""
    if seconds is None:
        return NOTHING
    return format_duration(seconds)


def format_age(seconds: float) -> str:
    """Return an age in one unit, as a queue column shows it: ``<1m``, ``5m``, ``3h``, ``2d``."""
    if seconds < 60:
        return "<1m"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h"
    if seconds < 14 * 86400:
        return f"{int(seconds // 86400)}d"
    return f"{int(seconds // (7 * 86400))}w"


def format_clock(instant: datetime | None, zone: tzinfo, now: datetime) -> str:
    """Return a local time: ``14:02:07`` today, ``Mon 14:02`` this week, else the date."""
    if instant is None:
        return NOTHING
    local = instant.astimezone(zone)
    today = now.astimezone(zone).date()
    if local.date() == today:
        return local.strftime("%H:%M:%S")
    if timedelta(0) <= today - local.date() < timedelta(days=6):
        return local.strftime("%a %H:%M")
    return local.strftime("%Y-%m-%d %H:%M")


def metric_label(metric: Metric | None, cycle: int = 0) -> str:
    """Return the metric at stake for people: ``first reply``, ``next reply 2``..."""
    if metric is None:
        return NOTHING
    label = METRIC_LABELS.get(metric, str(metric))
    return f"{label} {cycle}" if metric is Metric.NEXT_RESPONSE and cycle > 1 else label


def priority_label(priority: Priority | None) -> str:
    """Return a priority for the PRI column (``—`` when it has none)."""
    return NOTHING if priority is None else str(priority)


@dataclass(frozen=True, slots=True)
class TimeLeft:
    """What the TIME LEFT cell of a row says at an instant, and how it is coloured."""

    text: str
    state: str
    """The queue state (``breached``, ``at_risk``, ``waiting``...): the cell's colour."""


def time_left(row: QueueRow, now: datetime) -> TimeLeft:
    """Return the countdown of ``row``'s most urgent clock at ``now``.

    A clock with a due time counts down to it (negative once past); a paused clock
    shows the counted time it has left, frozen; a conversation with no clock at stake
    shows a dash.
    """
    state = queue_state(row, now)
    if row.state is None:
        return TimeLeft(NOTHING, state)
    if row.due_at is not None:
        return TimeLeft(format_countdown((row.due_at - now).total_seconds()), state)
    if row.target_seconds is not None and row.elapsed_seconds is not None:
        return TimeLeft(format_countdown(row.target_seconds - row.elapsed_seconds), state)
    return TimeLeft(NOTHING, state)


def age_seconds(row: QueueRow, now: datetime) -> float | None:
    """Return how long ago the conversation began (its first event)."""
    if row.first_event_at is None:
        return None
    return max(0.0, (now - row.first_event_at).total_seconds())


def row_snippet(row: QueueRow) -> str:
    """Return the one line that says what the conversation is about.

    The last public customer message; the subject when there is none.
    """
    return clean(row.snippet) or clean(row.subject)


def safe_url(url: str | None) -> str | None:
    """Return ``url`` if it is fit to hand to a browser (http or https), else None.

    A link from an API could be ``javascript:``, ``file:`` or carry control characters
    that a terminal or a shell would act on; only plain web links are opened.
    """
    if not url:
        return None
    candidate = url.strip()
    if sanitize(candidate) != candidate or any(ch.isspace() for ch in candidate):
        return None
    try:
        parts = urlsplit(candidate)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return candidate


# -- columns ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    """One queue column: its name, title, width in cells and alignment."""

    name: str
    title: str
    width: int
    align: Literal["left", "right"] = "left"


SNIPPET = "snippet"
_REQUIRED = (
    Column("time_left", "TIME LEFT", 9, "right"),
    Column("state", "STATE", 11),
    Column("customer", "CUSTOMER", 16),
    Column(SNIPPET, "LAST MESSAGE", 0),
)
_OPTIONAL = (
    Column("priority", "PRI", 6),
    Column("metric", "AT STAKE", 12),
    Column("source", "SOURCE", 20),
    Column("assignee", "ASSIGNEE", 14),
    Column("age", "AGE", 4, "right"),
    Column("channel", "CHANNEL", 9),
)
"""Columns shown when the width allows, most useful first."""
_DISPLAY_ORDER = (
    "time_left",
    "state",
    "metric",
    "priority",
    "source",
    "channel",
    "customer",
    SNIPPET,
    "assignee",
    "age",
)
MIN_SNIPPET = 24
"""The snippet never gets narrower than this to make room for an optional column."""
GAP = 1
"""Cells between two columns."""


def layout_columns(width: int) -> tuple[Column, ...]:
    """Return the queue's columns for ``width`` cells, in display order.

    The required columns always show; optional ones are added, most useful first,
    while the snippet keeps at least :data:`MIN_SNIPPET` cells; the snippet takes the
    rest. 80 cells show time left, state, priority, customer and the snippet.
    """
    chosen = [column for column in _REQUIRED if column.name != SNIPPET]

    def used(columns: Sequence[Column]) -> int:
        # Every column plus the snippet, each followed by a gap but the last.
        return sum(column.width for column in columns) + GAP * len(columns)

    for column in _OPTIONAL:
        if width - used([*chosen, column]) >= MIN_SNIPPET:
            chosen.append(column)
    snippet_width = max(1, width - used(chosen))
    chosen.append(Column(SNIPPET, "LAST MESSAGE", snippet_width))
    by_name = {column.name: column for column in chosen}
    return tuple(by_name[name] for name in _DISPLAY_ORDER if name in by_name)


def cell_text(column: str, row: QueueRow, now: datetime) -> str:
    """Return the plain text of one static cell of ``row`` (not the countdown)."""
    if column == "state":
        return STATE_LABELS.get(queue_state(row, now), queue_state(row, now))
    if column == "metric":
        return metric_label(row.metric, row.cycle)
    if column == "priority":
        return priority_label(row.priority)
    if column == "source":
        return clean(row.source)
    if column == "channel":
        return clean(row.channel) or NOTHING
    if column == "customer":
        return clean(row.customer) or NOTHING
    if column == SNIPPET:
        return row_snippet(row)
    if column == "assignee":
        return clean(row.assignee) or NOTHING
    if column == "age":
        age = age_seconds(row, now)
        return NOTHING if age is None else format_age(age)
    return ""


# -- header, filters, today -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PromiseStatus:
    """The header's verdict: is the team inside its promises right now?"""

    level: Literal["ok", "warning", "error"]
    text: str


def promise_status(counts: dict[str, int]) -> PromiseStatus:
    """Return the verdict from the queue's state counts (all open conversations)."""
    breached = counts.get("breached", 0)
    overdue = counts.get("overdue", 0)
    at_risk = counts.get("at_risk", 0)
    if breached or overdue:
        parts = []
        if breached:
            parts.append(f"{breached} BREACHED")
        if overdue:
            parts.append(f"{overdue} OVERDUE")
        return PromiseStatus("error", "✖ " + " · ".join(parts))
    if at_risk:
        return PromiseStatus("warning", f"▲ {at_risk} AT RISK")
    return PromiseStatus("ok", "● ALL PROMISES KEPT")


def state_counts_line(counts: dict[str, int]) -> list[tuple[str, str]]:
    """Return ``(state, "3 at risk")`` pairs for the states with conversations, in order."""
    words = {
        "breached": "breached",
        "overdue": "overdue",
        "at_risk": "at risk",
        "running": "running",
        "paused": "paused",
        WAITING: "waiting",
        NO_POLICY: "no policy",
    }
    return [
        (state, f"{counts[state]:,} {words[state]}") for state in STATE_ORDER if counts.get(state)
    ]


def filter_words(filters: QueueFilter) -> list[str]:
    """Return the filters in force as short phrases (``priority urgent``, ``"refund"``)."""
    words = []
    for name, value in filters.active():
        if name == "search":
            words.append(f"“{clean(value, 30)}”")
        elif name == "state":
            words.append(f"state {STATE_LABELS.get(value, value).split(' ', 1)[-1]}")
        else:
            words.append(f"{name} {clean(value, 24) or 'none'}")
    return words


def overall_percent(today: Sequence[PolicyToday]) -> float | None:
    """Return % met today across policies (met / decided), None before any decision."""
    met = sum(item.met for item in today)
    decided = met + sum(item.breached for item in today)
    return None if decided == 0 else 100.0 * met / decided


def format_percent(value: float | None) -> str:
    """Return a percentage for people: ``97%``, ``99.4%``, or a dash."""
    if value is None:
        return NOTHING
    if value >= 99.95:
        return "100%"
    return f"{value:.1f}%"


def hourly_medians(
    times: Sequence[tuple[datetime, int]], now: datetime, hours: int = 24
) -> list[float]:
    """Return the median first-response time (minutes) of each of the last ``hours``.

    Oldest hour first; an hour without a first response is 0.
    """
    buckets: list[list[int]] = [[] for _ in range(hours)]
    start = now - timedelta(hours=hours)
    for stopped_at, seconds in times:
        index = int((stopped_at - start).total_seconds() // 3600)
        if 0 <= index < hours:
            buckets[index].append(seconds)
    return [(percentile(bucket, 0.5) or 0) / 60.0 for bucket in buckets]


# -- sources and the log ----------------------------------------------------------------

STALE_AFTER = 300.0
"""Seconds without a successful poll after which a healthy-looking source is ``stale``."""


@dataclass(frozen=True, slots=True)
class Health:
    """How a source is doing, for people: a level (the colour), a word and details."""

    level: Literal["ok", "warning", "error"]
    label: str
    detail: str


def source_health(state: SourceState, now: datetime, zone: tzinfo) -> Health:
    """Return a source's health at ``now``.

    ``failing`` (polls fail: the last error is shown) and ``degraded`` (its pages
    cannot be read) are errors; ``stale`` (no successful poll for
    :data:`STALE_AFTER` seconds) and ``never polled`` are warnings.
    """
    lag = "" if state.watermark is None else format_span((now - state.watermark).total_seconds())
    polled = (
        "never polled"
        if state.last_success_at is None
        else f"ok {format_span((now - state.last_success_at).total_seconds())} ago"
    )
    detail = polled + (f" · lag {lag}" if lag else "")
    if state.failing_since is not None or state.degraded:
        word = "DEGRADED" if state.degraded else "FAILING"
        since = format_clock(state.failing_since, zone, now)
        error = clean(state.last_error, 160) or "no detail"
        return Health("error", word, f"since {since}: {error} · last {detail}")
    if state.last_success_at is None:
        return Health("warning", "waiting", "never polled yet")
    if (now - state.last_success_at).total_seconds() > STALE_AFTER:
        return Health("warning", "STALE", detail)
    return Health("ok", "ok", detail)


LOG_WORDS: dict[LogKind, tuple[str, str]] = {
    LogKind.BREACHED: ("✖", "breached"),
    LogKind.RECOVERED: ("↺", "recovered"),
    LogKind.DISMISSED: ("⊘", "dismissed"),
    LogKind.UNDONE: ("↶", "undone"),
}
"""The glyph and word of each kind of breach-log entry."""


def log_summary(entry: LogEntry) -> str:
    """Return what a log entry is about: the metric, the customer, the source."""
    who = clean(entry.customer, 40) or clean(entry.conversation, 24)
    metric = "" if entry.metric is None else metric_label(entry.metric, entry.cycle)
    parts = [metric, who, clean(entry.source, 24)]
    return " · ".join(part for part in parts if part)


def log_detail(entry: LogEntry) -> str:
    """Return who and why of a log entry: the assignee, the replier, the dismisser."""
    by = clean(entry.by, 40)
    if entry.kind is LogKind.BREACHED:
        assignee = clean(entry.assignee, 40)
        target = f" · target {format_span(entry.target_seconds)}" if entry.target_seconds else ""
        return (f"assignee {assignee}" if assignee else "unassigned") + target
    if entry.kind is LogKind.RECOVERED:
        late = "" if entry.late_seconds is None else f" {format_span(entry.late_seconds)} late"
        return f"replied{' by ' + by if by else ''}{late}"
    if entry.kind is LogKind.DISMISSED:
        reason = clean(entry.reason, 120)
        return f"by {by or 'the source'}" + (f": {reason}" if reason else "")
    return f"undone by {by}" if by else "undone"
