"""Provides the pure aggregation of a report: the clocks of a period -> a :class:`Report`.

The figures are those of SLA.md §7, computed from the clocks exactly as ``explain``
prints them:

- A clock belongs to the period in which it stopped; only ``met`` and ``breached``
  clocks count (cancelled ones are left out of every figure).
- % met is ``met / (met + breached)``, rounded half up to one decimal.
- p50 / p90 / p95 are exact nearest-rank percentiles of ``elapsed_seconds`` (counted
  time, in each policy's calendar) over the clocks of the group: the value at rank
  ``ceil(p / 100 * n)`` of the sorted values. Never an average of daily percentiles.
- Breached clocks still running at the end of the period (or answered after it) are
  listed separately as open breaches.

Input is :class:`ReportRow`, one compact tuple per counted clock, which the store can
produce straight from its covering index (small integers for metric and outcome, its
own sortable form of instants) and :func:`report_rows` makes from domain clocks. A
week of a million clocks is read once, row by row, keeping only counters and one
integer per clock for the percentiles; every figure is then computed from those, so
the store and a REPL get the same report from the same clocks.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import chain
from typing import Any, NamedTuple

from monitor.config import ALWAYS_OPEN, CalendarConfig, PolicyConfig
from monitor.events import Clock, ClockState, Metric, Priority, require_utc
from monitor.reports.formatting import safe_url
from monitor.reports.period import Period

METRICS = (Metric.FIRST_RESPONSE, Metric.NEXT_RESPONSE, Metric.RESOLUTION)
"""Metric by the index :attr:`ReportRow.metric` carries."""
METRIC_INDEX = {metric: index for index, metric in enumerate(METRICS)}
PERCENTILES = (50, 90, 95)
DIMENSIONS = ("source", "channel", "priority")
LONGEST_BREACHES = 10
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
PRIORITY_ORDER: Mapping[str, int] = {
    Priority.URGENT: 0,
    Priority.HIGH: 1,
    Priority.NORMAL: 2,
    Priority.LOW: 3,
}
_FIRST, _NEXT, _RESOLUTION = 0, 1, 2
_PRIORITIES = {str(priority): priority for priority in Priority}
_QUARTER = timedelta(minutes=15)

ConversationKey = tuple[str, str]

Instant = Any
"""An instant as rows carry it: an aware UTC datetime, or a store's own sortable form
of one (the fixed-width text of SQLite). Only compared with instants of the same form
(made by the builder's ``instant`` function) and turned back by ``datetime_of``."""


class ReportRow(NamedTuple):
    """One counted clock as the report reads it (met or breached, stopped in the period).

    A tuple rather than a dataclass: the store streams a million of them per week,
    straight from its cursor, and a tuple is built and unpacked several times faster.
    Fields only some figures need are None elsewhere, so no row carries what nothing
    reads: ``due_at`` and ``assignee`` are those of breaches, ``stopped_by`` that of
    response clocks. An open breach (:meth:`ReportBuilder.add_open_breaches`) may have
    no ``stopped_at`` yet.
    """

    policy: str
    source: str
    channel: str | None
    priority: str | None
    """A :class:`~monitor.events.Priority` value, or None."""
    metric: int
    """The index of the metric in :data:`METRICS`."""
    met: int
    """1: met, 0: breached."""
    elapsed_seconds: int
    target_seconds: int
    stopped_at: Instant
    due_at: Instant
    conversation: str
    cycle: int
    stopped_by: str | None
    assignee: str | None


RowTuple = tuple[
    str,
    str,
    str | None,
    str | None,
    int,
    int,
    int,
    int,
    Instant,
    Instant,
    str,
    int,
    str | None,
    str | None,
]
"""A :class:`ReportRow` as a plain tuple, as a database cursor returns it."""


def _row(clock: Clock, channel: str | None) -> ReportRow:
    met = clock.state is ClockState.MET
    metric = METRIC_INDEX[clock.metric]
    return ReportRow(
        clock.policy,
        clock.source,
        channel,
        None if clock.priority is None else str(clock.priority),
        metric,
        int(met),
        clock.elapsed_seconds,
        clock.target_seconds,
        clock.stopped_at,
        None if met else clock.due_at,
        clock.conversation,
        clock.cycle,
        clock.stopped_by if metric != _RESOLUTION else None,
        None if met else clock.assignee,
    )


def report_rows(
    clocks: Iterable[Clock],
    start: datetime,
    end: datetime,
    channels: Mapping[ConversationKey, str | None] | None = None,
) -> Iterator[ReportRow]:
    """The rows of the clocks that count in ``[start, end)``: stopped in it, met or breached.

    ``channels`` gives each conversation's channel (missing: no channel).
    """
    channels = channels or {}
    for clock in clocks:
        if clock.state not in (ClockState.MET, ClockState.BREACHED):
            continue
        if clock.stopped_at is None or not start <= clock.stopped_at < end:
            continue
        yield _row(clock, channels.get((clock.source, clock.conversation)))


def open_breach_rows(
    clocks: Iterable[Clock],
    at: datetime,
    channels: Mapping[ConversationKey, str | None] | None = None,
) -> Iterator[ReportRow]:
    """The rows of the breaches open at ``at``: breached, due before it, unanswered then."""
    channels = channels or {}
    for clock in clocks:
        if clock.state is not ClockState.BREACHED or clock.due_at is None:
            continue
        if clock.due_at < at and (clock.stopped_at is None or clock.stopped_at >= at):
            yield _row(clock, channels.get((clock.source, clock.conversation)))


@dataclass(frozen=True, slots=True)
class ConversationDetail:
    """What a breach links to: the conversation's address and subject (both untrusted)."""

    url: str | None = None
    subject: str | None = None


# -- the report -----------------------------------------------------------------------


def nearest_rank(ordered: Sequence[int], percentile: int) -> int | None:
    """The nearest-rank percentile of ascending ``ordered`` values; None when empty."""
    if not ordered:
        return None
    rank = max(1, -(-percentile * len(ordered) // 100))
    return ordered[rank - 1]


def _permille(met: int, breached: int) -> int | None:
    """``met / (met + breached)`` in tenths of a percent, rounded half up; None if empty."""
    total = met + breached
    if total == 0:
        return None
    return (2000 * met + total) // (2 * total)


def _points(current: int | None, previous: int | None) -> float | None:
    if current is None or previous is None:
        return None
    return (current - previous) / 10


def _difference(current: int | None, previous: int | None) -> int | None:
    if current is None or previous is None:
        return None
    return current - previous


@dataclass(frozen=True, slots=True)
class Figures:
    """One metric over one group of clocks of one period (SLA.md §7)."""

    met: int = 0
    breached: int = 0
    p50: int | None = None
    p90: int | None = None
    p95: int | None = None

    @property
    def clocks(self) -> int:
        """Clocks counted: met + breached."""
        return self.met + self.breached

    @property
    def permille_met(self) -> int | None:
        """% met in tenths of a percent (exact integer), None when nothing was measured."""
        return _permille(self.met, self.breached)

    @property
    def percent_met(self) -> float | None:
        """% met with one decimal, rounded half up."""
        permille = self.permille_met
        return None if permille is None else permille / 10

    def percentile(self, which: int) -> int | None:
        """The p50, p90 or p95 of counted seconds."""
        return {50: self.p50, 90: self.p90, 95: self.p95}[which]


@dataclass(frozen=True, slots=True)
class MetricFigures:
    """A metric's figures this period and the period before, and the change."""

    metric: Metric
    current: Figures
    previous: Figures

    @property
    def percent_met_change(self) -> float | None:
        """Change of % met in percentage points (of the rounded figures), if comparable."""
        return _points(self.current.permille_met, self.previous.permille_met)

    @property
    def breached_change(self) -> int:
        """More (+) or fewer (-) breaches than the period before."""
        return self.current.breached - self.previous.breached

    @property
    def clocks_change(self) -> int:
        """More or fewer clocks counted than the period before."""
        return self.current.clocks - self.previous.clocks

    def percentile_change(self, which: int) -> int | None:
        """Change of a percentile in seconds, if both periods have one."""
        return _difference(self.current.percentile(which), self.previous.percentile(which))


@dataclass(frozen=True, slots=True)
class Count:
    """A count this period and the period before."""

    current: int = 0
    previous: int = 0

    @property
    def change(self) -> int:
        """current - previous."""
        return self.current - self.previous


@dataclass(frozen=True, slots=True)
class GroupRow:
    """One row of a policy's table: all its clocks, or one source, channel or priority."""

    dimension: str
    """``all``, ``source``, ``channel`` or ``priority``."""
    value: str | None
    """The source, channel or priority; None for ``all`` and for a missing value."""
    conversations: Count
    """Distinct conversations with a counted clock in the group."""
    replies: Count
    """Customer waits answered: first and next response clocks counted."""
    metrics: tuple[MetricFigures, ...]


@dataclass(frozen=True, slots=True)
class PolicyDay:
    """One local day of a policy: its clocks that stopped that day, and its first responses."""

    day: date
    met: int
    breached: int
    first_responses: int
    first_response_p50: int | None
    first_response_p90: int | None

    @property
    def percent_met(self) -> float | None:
        """% met of the day's clocks, one decimal, half up."""
        permille = _permille(self.met, self.breached)
        return None if permille is None else permille / 10


@dataclass(frozen=True, slots=True)
class PolicySection:
    """A policy's figures: the ``all`` row first, then by source, channel and priority."""

    policy: str
    rows: tuple[GroupRow, ...]
    days: tuple[PolicyDay, ...]
    """Day by day; percentiles only ever mix clocks of this one policy."""

    @property
    def overall(self) -> GroupRow:
        """The ``all`` row."""
        return self.rows[0]


@dataclass(frozen=True, slots=True)
class AgentRow:
    """One agent's week: replies written, first-response times, breaches held."""

    name: str
    replies: int
    """Response clocks (first or next) that this agent's message stopped."""
    first_responses: int
    """First response clocks among them."""
    first_response_p50: int | None
    first_response_p90: int | None
    breaches_held: int
    """Breached clocks of the period while the conversation was assigned to this agent."""


@dataclass(frozen=True, slots=True)
class Breach:
    """A breached clock, with where to find the conversation."""

    source: str
    conversation: str
    policy: str
    metric: Metric
    cycle: int
    priority: Priority | None
    channel: str | None
    due_at: datetime | None
    stopped_at: datetime | None
    """None: still not answered when the report was made."""
    target_seconds: int
    elapsed_seconds: int
    assignee: str | None
    url: str | None
    """An http(s) link to the conversation, or None (never another scheme)."""
    subject: str | None

    @property
    def over_seconds(self) -> int:
        """Counted time past the target (docs/sla.md D14)."""
        return self.elapsed_seconds - self.target_seconds


@dataclass(frozen=True, slots=True)
class DayRow:
    """One local day of the period: every policy's clocks that stopped that day."""

    day: date
    met: int
    breached: int

    @property
    def percent_met(self) -> float | None:
        """% met of the day's clocks, one decimal, half up."""
        permille = _permille(self.met, self.breached)
        return None if permille is None else permille / 10


@dataclass(frozen=True, slots=True)
class Bucket:
    """A bar of the first-response distribution: counted time as a share of the target."""

    label: str
    met: int
    breached: int


BUCKET_LABELS = tuple(
    label.replace("-", "\u2013")
    for label in (
        "\u226425%",
        "25-50%",
        "50-75%",
        "75-100%",
        "100-150%",
        "150-200%",
        "200-400%",
        ">400%",
    )
)
"""First response counted time as a share of its target; met clocks fill the first four."""


@dataclass(frozen=True, slots=True)
class TargetNote:
    """A metric's promise in a policy: one target, or one per priority."""

    metric: Metric
    targets: tuple[tuple[Priority | None, int], ...]
    """(priority, seconds); a single target has priority None."""


@dataclass(frozen=True, slots=True)
class PolicyNote:
    """What a policy promised, for the footnote."""

    name: str
    calendar: str
    targets: tuple[TargetNote, ...]
    warn_at: float
    count_bots: bool
    pauses: tuple[tuple[Metric, tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class CalendarNote:
    """A calendar the policies use, for the footnote."""

    name: str
    timezone: str
    hours: tuple[tuple[str, str], ...]
    """(days, intervals) as configured; empty for 24x7."""
    holidays: str


@dataclass(frozen=True, slots=True)
class Totals:
    """Every policy together: volumes, % met, breaches, open breaches."""

    conversations: Count
    replies: Count
    met: Count
    breached: Count
    open_breaches: int

    @property
    def clocks(self) -> Count:
        """Clocks counted in each period."""
        return Count(
            self.met.current + self.breached.current, self.met.previous + self.breached.previous
        )

    @property
    def permille_met(self) -> tuple[int | None, int | None]:
        """% met of all clocks, in tenths of a percent: (this period, the one before)."""
        return (
            _permille(self.met.current, self.breached.current),
            _permille(self.met.previous, self.breached.previous),
        )

    @property
    def percent_met(self) -> float | None:
        """% met of every counted clock this period."""
        permille = self.permille_met[0]
        return None if permille is None else permille / 10

    @property
    def previous_percent_met(self) -> float | None:
        """% met of every counted clock the period before."""
        permille = self.permille_met[1]
        return None if permille is None else permille / 10

    @property
    def percent_met_change(self) -> float | None:
        """Change of % met in percentage points."""
        return _points(*self.permille_met)


@dataclass(frozen=True, slots=True)
class Report:
    """Everything a report says; renderers only format it."""

    period: Period
    previous_period: Period
    generated_at: datetime
    totals: Totals
    sections: tuple[PolicySection, ...]
    agents: tuple[AgentRow, ...]
    unassigned_breaches: int
    """Breached clocks of the period whose conversation had no assignee."""
    longest_breaches: tuple[Breach, ...]
    open_breaches: tuple[Breach, ...]
    days: tuple[DayRow, ...]
    heatmap: tuple[tuple[int, ...], ...]
    """Breaches by the local weekday (Monday first) and hour at which they fell due."""
    distribution: tuple[Bucket, ...]
    policies: tuple[PolicyNote, ...]
    calendars: tuple[CalendarNote, ...]

    @property
    def empty(self) -> bool:
        """No clock stopped in the period (a quiet week, or no data yet)."""
        return self.totals.clocks.current == 0

    @property
    def title(self) -> str:
        """``SLA report 2026-W47``."""
        return f"SLA report {self.period.label}"


# -- accumulation ---------------------------------------------------------------------

CellKey = tuple[str, str, str | None, str | None]
"""(policy, source, channel, priority): the finest group every figure is made of."""

FigureTuple = tuple[str, str, str | None, str | None, int, int, int, str]
"""What a period's group figures read of a row: (policy, source, channel, priority,
metric, met, elapsed_seconds, conversation), the first fields of :class:`ReportRow`."""


def figure_rows(rows: Iterable[RowTuple]) -> Iterator[FigureTuple]:
    """The part of each row the figures of a period read (the previous period's)."""
    for row in rows:
        yield (row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[10])


class _Cell:
    """The clocks of one cell, as rows come in: its conversations, and counted seconds by
    outcome, metric and day (plain lists of the rows' own integers); :meth:`seal` sorts
    what percentiles read."""

    __slots__ = ("breached", "conversations", "first_by_day", "met", "runs", "sizes")

    def __init__(self, days: int) -> None:
        self.conversations: set[str] = set()
        self.met: list[list[list[int]]] = [[[] for _ in range(days)] for _ in METRICS]
        self.breached: list[list[list[int]]] = [[[] for _ in range(days)] for _ in METRICS]
        self.sizes: list[list[tuple[int, int]]] = []
        """Per metric and day, (met, breached)."""
        self.runs: list[list[int]] = []
        """Per metric, every counted second of the cell, sorted."""
        self.first_by_day: list[list[int]] = []
        """Per day, the counted seconds of the cell's first responses, sorted."""

    def seal(self, *, by_day: bool) -> None:
        """Sort once what percentiles read (each metric's values, first responses by
        day), keep the counts, and let the unsorted lists go."""
        self.sizes = [
            [(len(met), len(breached)) for met, breached in zip(mets, breacheds, strict=True)]
            for mets, breacheds in zip(self.met, self.breached, strict=True)
        ]
        self.runs = [
            sorted(chain(*self.met[slot], *self.breached[slot])) for slot in range(len(METRICS))
        ]
        if by_day:
            self.first_by_day = [
                sorted(chain(met, breached))
                for met, breached in zip(self.met[_FIRST], self.breached[_FIRST], strict=True)
            ]
        self.met = self.breached = []

    def counts(self, slot: int, day: int | None = None) -> tuple[int, int]:
        """(met, breached) of a metric, on one day or over the period (once sealed)."""
        if day is not None:
            return self.sizes[slot][day]
        sizes = self.sizes[slot]
        return sum(met for met, _ in sizes), sum(breached for _, breached in sizes)


def _union(sets: Sequence[set[str]]) -> set[str]:
    """The ids of all the sets (the set itself when there is one: no copy)."""
    return sets[0] if len(sets) == 1 else set().union(*sets)


class _Tally:
    """One period's cells, and the distinct conversations of every table row.

    Conversation ids are unique within a source, so a row's count is a sum over
    sources of the size of a union of cell sets; the unions are made once, from the
    smallest groups up (channel, then source), as they are the costly part.
    """

    def __init__(self, days: int) -> None:
        self.days = days
        self.cells: dict[CellKey, _Cell] = {}

    def cell(self, key: CellKey) -> _Cell:
        """The cell of ``key``, made on first use."""
        cell = self.cells[key] = _Cell(self.days)
        return cell

    def conversations(self) -> tuple[dict[GroupKey, int], int]:
        """Distinct conversations of every table row, and of the period as a whole."""
        counts: dict[GroupKey, int] = defaultdict(int)
        by_channel: dict[tuple[str, str, str | None], list[set[str]]] = defaultdict(list)
        by_priority: dict[tuple[str, str, str | None], list[set[str]]] = defaultdict(list)
        for (policy, source, channel, priority), cell in self.cells.items():
            by_channel[(policy, source, channel)].append(cell.conversations)
            by_priority[(policy, source, priority)].append(cell.conversations)
        by_source: dict[tuple[str, str], list[set[str]]] = defaultdict(list)
        for (policy, source, channel), sets in by_channel.items():
            merged = _union(sets)
            counts[(policy, "channel", channel)] += len(merged)
            by_source[(policy, source)].append(merged)
        for (policy, _source, priority), sets in by_priority.items():
            counts[(policy, "priority", priority)] += len(_union(sets))
        every_policy: dict[str, list[set[str]]] = defaultdict(list)
        for (policy, source), sets in by_source.items():
            merged = _union(sets)
            counts[(policy, "source", source)] = len(merged)
            counts[(policy, "all", None)] += len(merged)
            every_policy[source].append(merged)
        return counts, sum(len(_union(sets)) for sets in every_policy.values())


GroupKey = tuple[str, str, str | None]
"""(policy, dimension, value) of a table row."""


def _groups_of(key: CellKey) -> tuple[GroupKey, ...]:
    """The table rows a cell belongs to: its policy's all, source, channel, priority."""
    policy, source, channel, priority = key
    return (
        (policy, "all", None),
        (policy, "source", source),
        (policy, "channel", channel),
        (policy, "priority", priority),
    )


def kth(runs: Sequence[Sequence[int]], rank: int) -> int:
    """The ``rank``-th smallest value (1-based) of the union of ascending ``runs``.

    A binary search on the value: the answer is the least value with at least ``rank``
    values at or below it. No run is copied, so a group's percentiles cost a few
    thousand bisections whatever its size.
    """
    runs = [run for run in runs if run]
    if len(runs) == 1:
        return runs[0][rank - 1]
    low, high = min(run[0] for run in runs), max(run[-1] for run in runs)
    while low < high:
        middle = (low + high) // 2
        if sum(bisect_right(run, middle) for run in runs) >= rank:
            high = middle
        else:
            low = middle + 1
    return low


def _percentile(runs: Sequence[Sequence[int]], size: int, percentile: int) -> int | None:
    """The nearest-rank percentile of ``size`` values held in ascending ``runs``."""
    if size == 0:
        return None
    return kth(runs, max(1, -(-percentile * size // 100)))


def _figures(met: int, breached: int, runs: Sequence[Sequence[int]]) -> Figures:
    size = met + breached
    p50, p90, p95 = (_percentile(runs, size, p) for p in PERCENTILES)
    return Figures(met, breached, p50, p90, p95)


@dataclass(frozen=True, slots=True)
class _Group:
    """A group's figures in one period."""

    conversations: int
    replies: int
    figures: tuple[Figures, ...]


_NO_GROUP = _Group(0, 0, (Figures(), Figures(), Figures()))


def _group(cells: Sequence[_Cell], conversations: int) -> _Group:
    figures = []
    for slot in range(len(METRICS)):
        met = breached = 0
        for cell in cells:
            cell_met, cell_breached = cell.counts(slot)
            met += cell_met
            breached += cell_breached
        figures.append(_figures(met, breached, [cell.runs[slot] for cell in cells]))
    return _Group(
        conversations=conversations,
        replies=figures[_FIRST].clocks + figures[_NEXT].clocks,
        figures=tuple(figures),
    )


def _summarize(tally: _Tally) -> tuple[dict[GroupKey, _Group], int]:
    """Every table row's figures of one period, and its distinct conversations."""
    members: dict[GroupKey, list[_Cell]] = defaultdict(list)
    for key, cell in tally.cells.items():
        for group in _groups_of(key):
            members[group].append(cell)
    conversations, total = tally.conversations()
    groups = {group: _group(cells, conversations[group]) for group, cells in members.items()}
    return groups, total


def _sort_value(value: str | None) -> tuple[int, int, str]:
    """Priorities in urgency order, other values alphabetically, missing last."""
    if value is None:
        return (1, 0, "")
    return (0, PRIORITY_ORDER.get(value, 9), value)


def _hours(period: Period) -> tuple[list[datetime], list[int]]:
    """Where each local hour of the period starts (UTC), and its weekday x hour slot.

    Every offset in the tz database is a whole number of quarter hours, so walking
    the period in quarters finds each change of local hour, DST jumps included.
    """
    zone = period.zone
    starts: list[datetime] = []
    slots: list[int] = []
    instant, end = period.start, period.end
    while instant < end:
        local = instant.astimezone(zone)
        slot = local.weekday() * 24 + local.hour
        if not slots or slots[-1] != slot:
            starts.append(instant)
            slots.append(slot)
        instant += _QUARTER
    return starts, slots


def _same(value: Any) -> Any:
    return value


def _excess_order(row: RowTuple) -> tuple[int, str, str, int, int]:
    """Most over target first, then by (source, conversation, metric, cycle)."""
    return (row[7] - row[6], row[1], row[10], row[4], row[11])


class ReportBuilder:
    """Builds a :class:`Report` from rows streamed in, reading each row once.

    Feed the period's rows with :meth:`add`, the previous period's with
    :meth:`add_previous`, the breaches open at the end with :meth:`add_open_breaches`;
    ask :meth:`wanted` which conversations the report links to, then :meth:`finish`.
    Rows must be those of :func:`report_rows` for the period (the store's queries
    select exactly those); ``instant`` turns a datetime into the rows' form of
    instants and ``datetime_of`` turns one back.
    """

    def __init__(
        self,
        period: Period,
        *,
        instant: Callable[[datetime], Instant] = _same,
        datetime_of: Callable[[Instant], datetime] = _same,
    ) -> None:
        """Start an empty report of ``period``."""
        self.period = period
        self._datetime_of = datetime_of
        self._days = period.days
        self._day_starts = [instant(start) for start in period.day_starts()]
        hour_starts, self._hour_slots = _hours(period)
        self._hour_starts = [instant(start) for start in hour_starts]
        self._current = _Tally(len(self._days))
        self._previous = _Tally(1)
        self._agents: dict[str, tuple[list[int], list[int]]] = {}
        self._held: defaultdict[str | None, int] = defaultdict(int)
        self._heat = [0] * (7 * 24)
        self._buckets = [0] * len(BUCKET_LABELS)
        self._longest_rows: list[RowTuple] = []
        self._longest_floor = -(1 << 62)
        """No breach less over its target than this can be among the longest."""
        self._open: list[ReportRow] = []

    def add(self, rows: Iterable[RowTuple]) -> None:
        """Count rows of the period: every figure, chart and list reads them here."""
        tally, agents = self._current, self._agents
        cells = tally.cells
        day_starts, hour_starts, hour_slots = self._day_starts, self._hour_starts, self._hour_slots
        heat, held, buckets = self._heat, self._held, self._buckets
        longest, floor = self._longest_rows, self._longest_floor
        for row in rows:
            (
                policy,
                source,
                channel,
                priority,
                metric,
                met,
                elapsed,
                target,
                stopped_at,
                due_at,
                conversation,
                _cycle,
                stopped_by,
                assignee,
            ) = row
            key = (policy, source, channel, priority)
            cell = cells.get(key) or tally.cell(key)
            cell.conversations.add(conversation)
            day = bisect_right(day_starts, stopped_at) - 1
            (cell.met if met else cell.breached)[metric][day].append(elapsed)
            if metric == _FIRST:
                if target <= 0:
                    bucket = 0 if met else 7
                elif met:
                    bucket = min(3, 4 * elapsed // target)
                elif 2 * elapsed <= 3 * target:
                    bucket = 4
                elif elapsed <= 2 * target:
                    bucket = 5
                else:
                    bucket = 6 if elapsed <= 4 * target else 7
                buckets[bucket] += 1
            if stopped_by is not None:
                agent = agents.get(stopped_by)
                if agent is None:
                    agent = agents[stopped_by] = ([], [])
                agent[metric].append(elapsed)
            if not met:
                if elapsed - target >= floor:
                    # Candidates for the longest breaches; trimmed now and then so only
                    # a few rows are ever kept, whatever the number of breaches.
                    longest.append(row)
                    if len(longest) >= 8 * LONGEST_BREACHES:
                        longest.sort(key=_excess_order)
                        del longest[LONGEST_BREACHES:]
                        floor = longest[-1][6] - longest[-1][7]
                held[assignee] += 1
                if due_at is not None:
                    hour = bisect_right(hour_starts, due_at) - 1
                    if hour >= 0:
                        heat[hour_slots[hour]] += 1
                    else:  # due before the period began, answered in it
                        local = self._datetime_of(due_at).astimezone(self.period.zone)
                        heat[local.weekday() * 24 + local.hour] += 1
        self._longest_floor = floor

    def add_previous(self, rows: Iterable[FigureTuple]) -> None:
        """Count rows of the previous period (its figures only, for the changes)."""
        tally = self._previous
        cells = tally.cells
        for policy, source, channel, priority, metric, met, elapsed, conversation in rows:
            key = (policy, source, channel, priority)
            cell = cells.get(key) or tally.cell(key)
            cell.conversations.add(conversation)
            (cell.met if met else cell.breached)[metric][0].append(elapsed)

    def add_open_breaches(self, rows: Iterable[ReportRow]) -> None:
        """Keep the breaches open at the end (rows of :func:`open_breach_rows`)."""
        self._open.extend(rows)

    def _longest(self) -> list[ReportRow]:
        """The breaches most over their target (ties in key order)."""
        rows = sorted(self._longest_rows, key=_excess_order)[:LONGEST_BREACHES]
        return [ReportRow._make(row) for row in rows]

    def wanted(self) -> list[ConversationKey]:
        """The conversations the report links to: the longest and the open breaches."""
        rows = chain(self._longest(), self._open)
        return list(dict.fromkeys((row.source, row.conversation) for row in rows))

    def finish(
        self,
        *,
        generated_at: datetime,
        details: Mapping[ConversationKey, ConversationDetail] | None = None,
        policies: Sequence[PolicyConfig] = (),
        calendars: Mapping[str, CalendarConfig] | None = None,
    ) -> Report:
        """Return the report; ``details`` give the links of :meth:`wanted`."""
        details = details or {}
        for cell in self._current.cells.values():
            cell.seal(by_day=True)
        for cell in self._previous.cells.values():
            cell.seal(by_day=False)
        # A conversation under two policies is one conversation in the totals.
        now, totals_now = _summarize(self._current)
        before, totals_before = _summarize(self._previous)
        configured = {policy.name: policy for policy in policies}
        names = list(
            dict.fromkeys(
                [policy.name for policy in policies]
                + sorted({key[0] for key in chain(now, before)})
            )
        )
        sections = tuple(
            self._section(name, configured.get(name), now, before)
            for name in names
            if (name, "all", None) in now or (name, "all", None) in before
        )
        totals = Totals(
            conversations=Count(totals_now, totals_before),
            replies=Count(
                *(
                    sum(
                        now_or_before[(name, "all", None)].replies
                        for name in names
                        if (name, "all", None) in now_or_before
                    )
                    for now_or_before in (now, before)
                )
            ),
            met=Count(
                *(
                    sum(
                        sum(cell.counts(slot)[0] for slot in range(len(METRICS)))
                        for cell in tally.cells.values()
                    )
                    for tally in (self._current, self._previous)
                )
            ),
            breached=Count(
                *(
                    sum(
                        sum(cell.counts(slot)[1] for slot in range(len(METRICS)))
                        for cell in tally.cells.values()
                    )
                    for tally in (self._current, self._previous)
                )
            ),
            open_breaches=len(self._open),
        )
        open_rows = sorted(
            self._open, key=lambda r: (r.due_at, r.source, r.conversation, r.metric, r.cycle)
        )
        return Report(
            period=self.period,
            previous_period=self.period.previous(),
            generated_at=require_utc(generated_at, "generated_at"),
            totals=totals,
            sections=sections,
            agents=self._agent_rows(),
            unassigned_breaches=self._held.get(None, 0),
            longest_breaches=tuple(self._breach(row, details) for row in self._longest()),
            open_breaches=tuple(self._breach(row, details) for row in open_rows),
            days=self._day_rows(),
            heatmap=tuple(tuple(self._heat[day * 24 : day * 24 + 24]) for day in range(7)),
            distribution=tuple(
                Bucket(label, count if index < 4 else 0, count if index >= 4 else 0)
                for index, (label, count) in enumerate(
                    zip(BUCKET_LABELS, self._buckets, strict=True)
                )
            ),
            policies=tuple(_policy_note(policy) for policy in policies),
            calendars=_calendar_notes(
                calendars or {}, {policy.calendar for policy in policies} or {ALWAYS_OPEN}
            ),
        )

    def _section(
        self,
        name: str,
        policy: PolicyConfig | None,
        now: Mapping[GroupKey, _Group],
        before: Mapping[GroupKey, _Group],
    ) -> PolicySection:
        keys = [key for key in chain(now, before) if key[0] == name]
        promised = {
            METRIC_INDEX[metric]
            for metric in METRICS
            if policy is not None and getattr(policy, metric.value) is not None
        }
        measured = {
            slot
            for key in keys
            for group in (now.get(key), before.get(key))
            if group is not None
            for slot in range(len(METRICS))
            if group.figures[slot].clocks
        }
        slots = sorted(promised | measured)
        rows = []
        for dimension in ("all", *DIMENSIONS):
            values = sorted({key[2] for key in keys if key[1] == dimension}, key=_sort_value)
            for value in values:
                current = now.get((name, dimension, value), _NO_GROUP)
                previous = before.get((name, dimension, value), _NO_GROUP)
                rows.append(
                    GroupRow(
                        dimension=dimension,
                        value=value,
                        conversations=Count(current.conversations, previous.conversations),
                        replies=Count(current.replies, previous.replies),
                        metrics=tuple(
                            MetricFigures(
                                METRICS[slot], current.figures[slot], previous.figures[slot]
                            )
                            for slot in slots
                        ),
                    )
                )
        return PolicySection(name, tuple(rows), self._policy_day_rows(name))

    def _policy_day_rows(self, name: str) -> tuple[PolicyDay, ...]:
        cells = [cell for key, cell in self._current.cells.items() if key[0] == name]
        rows = []
        for index, day in enumerate(self._days):
            met = breached = 0
            for cell in cells:
                for slot in range(len(METRICS)):
                    cell_met, cell_breached = cell.counts(slot, index)
                    met += cell_met
                    breached += cell_breached
            runs = [cell.first_by_day[index] for cell in cells]
            first = sum(map(len, runs))
            rows.append(
                PolicyDay(
                    day=day,
                    met=met,
                    breached=breached,
                    first_responses=first,
                    first_response_p50=_percentile(runs, first, 50),
                    first_response_p90=_percentile(runs, first, 90),
                )
            )
        return tuple(rows)

    def _day_rows(self) -> tuple[DayRow, ...]:
        rows = []
        for index, day in enumerate(self._days):
            met = breached = 0
            for cell in self._current.cells.values():
                for slot in range(len(METRICS)):
                    cell_met, cell_breached = cell.counts(slot, index)
                    met += cell_met
                    breached += cell_breached
            rows.append(DayRow(day=day, met=met, breached=breached))
        return tuple(rows)

    def _agent_rows(self) -> tuple[AgentRow, ...]:
        names = set(self._agents) | {name for name in self._held if name is not None}
        rows = []
        for name in names:
            first, later = self._agents.get(name) or ((), ())
            ordered = sorted(first)
            rows.append(
                AgentRow(
                    name=name,
                    replies=len(first) + len(later),
                    first_responses=len(ordered),
                    first_response_p50=nearest_rank(ordered, 50),
                    first_response_p90=nearest_rank(ordered, 90),
                    breaches_held=self._held.get(name, 0),
                )
            )
        rows.sort(key=lambda row: (-row.replies, -row.breaches_held, row.name))
        return tuple(rows)

    def _breach(
        self, row: ReportRow, details: Mapping[ConversationKey, ConversationDetail]
    ) -> Breach:
        detail = details.get((row.source, row.conversation)) or ConversationDetail()
        datetime_of = self._datetime_of
        return Breach(
            source=row.source,
            conversation=row.conversation,
            policy=row.policy,
            metric=METRICS[row.metric],
            cycle=row.cycle,
            priority=None if row.priority is None else _PRIORITIES.get(row.priority),
            channel=row.channel,
            due_at=None if row.due_at is None else datetime_of(row.due_at),
            stopped_at=None if row.stopped_at is None else datetime_of(row.stopped_at),
            target_seconds=row.target_seconds,
            elapsed_seconds=row.elapsed_seconds,
            assignee=row.assignee,
            url=safe_url(detail.url),
            subject=detail.subject,
        )


def _policy_note(policy: PolicyConfig) -> PolicyNote:
    targets = []
    for metric in METRICS:
        target = getattr(policy, metric.value)
        if target is None:
            continue
        if isinstance(target, dict):
            pairs = tuple(
                (priority, round(target[priority]))
                for priority in sorted(target, key=PRIORITY_ORDER.__getitem__)
            )
        else:
            pairs = ((None, round(target)),)
        targets.append(TargetNote(metric, pairs))
    return PolicyNote(
        name=policy.name,
        calendar=policy.calendar,
        targets=tuple(targets),
        warn_at=policy.warn_at,
        count_bots=policy.count_bots,
        pauses=tuple(
            (metric, tuple(str(status) for status in statuses))
            for metric, statuses in sorted(policy.pause.items(), key=lambda i: METRIC_INDEX[i[0]])
            if statuses
        ),
    )


def _calendar_notes(
    calendars: Mapping[str, CalendarConfig], used: set[str]
) -> tuple[CalendarNote, ...]:
    notes = []
    for name in sorted(used):
        if name == ALWAYS_OPEN:
            notes.append(CalendarNote(ALWAYS_OPEN, "UTC", (), "none: open every second"))
            continue
        config = calendars.get(name)
        if config is None:
            continue
        holidays = config.holidays
        parts = []
        if holidays.country:
            region = holidays.country + (f"-{holidays.subdivision}" if holidays.subdivision else "")
            parts.append(f"public holidays of {region} (observed days included)")
        if holidays.dates:
            parts.append(", ".join(d.isoformat() for d in holidays.dates))
        notes.append(
            CalendarNote(
                name=name,
                timezone=config.timezone,
                hours=tuple(config.hours.items()),
                holidays="; ".join(parts) or "none",
            )
        )
    return tuple(notes)


def build_report(
    period: Period,
    clocks: Iterable[Clock],
    *,
    generated_at: datetime,
    channels: Mapping[ConversationKey, str | None] | None = None,
    details: Mapping[ConversationKey, ConversationDetail] | None = None,
    policies: Sequence[PolicyConfig] = (),
    calendars: Mapping[str, CalendarConfig] | None = None,
) -> Report:
    """Build the report of ``period`` from clocks of any time (a REPL, a test, ``explain``).

    The clocks of the period, of the period before and the breaches open at its end
    are picked out of ``clocks`` exactly as the store's queries pick them.
    """
    clocks = list(clocks)
    previous = period.previous()
    builder = ReportBuilder(period)
    builder.add(report_rows(clocks, period.start, period.end, channels))
    builder.add_previous(figure_rows(report_rows(clocks, previous.start, previous.end, channels)))
    builder.add_open_breaches(open_breach_rows(clocks, period.end, channels))
    return builder.finish(
        generated_at=generated_at, details=details, policies=policies, calendars=calendars
    )
