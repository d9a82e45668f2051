"""Provides the board's queries: the queue, today's figures, the breach log, change markers.

Everything the board shows is read here, in few cheap statements, so that a board
attached to a shared database costs that database little:

- :meth:`BoardQueries.queue` lists open conversations with their most urgent clock
  not stopped yet (a correlated subquery on the clocks' key picks it), the last public
  customer message as a snippet, filtered and sorted in SQL; :func:`select_rows` and
  :class:`QueueIndex` are the same rules in Python, for a board that filters the queue
  it loaded on every key press (tests pin that all three agree);
- :meth:`BoardQueries.change_marker` is what a board polls: it changes whenever an
  event, a transition, an evaluation or a poll was stored by any process;
- :meth:`BoardQueries.dismiss` and :meth:`BoardQueries.undo_dismiss` are the board's
  only writes: a ``dismissed`` event, or an ``update`` with ``{"dismissed": false}``,
  stored like any other event and marking the conversation dirty for the pipeline.

"Effective" states advance with time the way the SLA engine will at its next
evaluation: a running clock past ``at_risk_at`` shows ``at_risk``, and a running or
at-risk clock past ``due_at`` shows ``overdue`` (never ``breached``: only the engine,
with the source's watermark, confirms a breach, SLA.md §6).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    case,
    false,
    func,
    literal,
    null,
    or_,
    select,
    tuple_,
    type_coerce,
)
from sqlalchemy.engine import Engine
from sqlalchemy.types import NullType

from monitor.errors import StorageError
from monitor.events import (
    AT_STAKE_STATES,
    ClockState,
    Event,
    EventKind,
    Metric,
    Priority,
    Status,
    require_utc,
)
from monitor.storage import bulk
from monitor.storage.models import clean_id, clean_text, table

_sources = table("sources")
_conversations = table("conversations")
_events = table("events")
_clocks = table("clocks")
_transitions = table("clock_transitions")

SNIPPET_CHARS = 400
"""Characters of the last customer message read per row: a row shows one line of it."""

DISMISS_PREFIX = "replywatch:dismiss:"
"""Event ids of dismissals made on a board (unique, never a source's own id)."""
UNDO_PREFIX = "replywatch:undo:"
"""Event ids of undone dismissals made on a board."""

WAITING = "waiting"
"""The queue state of an open conversation with no clock at stake (the team spoke last)."""
NO_POLICY = "no_policy"
"""The queue state of an open conversation that no policy covers (it has no clocks)."""

# A clock "at stake" has not stopped and is in one of these states.
_AT_STAKE = tuple(sorted(str(state) for state in AT_STAKE_STATES))
_PRIORITY_RANK = {"urgent": 0, "high": 1, "normal": 2, "low": 3}


class QueueSort(StrEnum):
    """The orders the queue can be shown in."""

    URGENCY = "urgency"
    """Time left on the most urgent clock, breached first; paused, then waiting last."""
    PRIORITY = "priority"
    """Urgent first, then by time left."""
    AGE = "age"
    """Oldest conversation first."""
    RECENT = "recent"
    """Latest activity first."""


@dataclass(frozen=True, slots=True)
class QueueFilter:
    """Which open conversations the queue shows, and in what order.

    None means "any". For the optional attributes (channel, priority, assignee, group)
    an empty string means "has none" (unassigned, no priority...). ``state`` is an
    effective clock state, ``waiting`` or ``no_policy``. ``search`` matches, case
    insensitively, the customer, subject, snippet, conversation id, assignee, group
    and channel.
    """

    source: str | None = None
    kind: str | None = None
    channel: str | None = None
    priority: str | None = None
    assignee: str | None = None
    group: str | None = None
    state: str | None = None
    search: str = ""
    sort: QueueSort = QueueSort.URGENCY

    @property
    def is_empty(self) -> bool:
        """True when every conversation passes (whatever the sort)."""
        return not self.active()

    def active(self) -> list[tuple[str, str]]:
        """Return the filters in force as ``(name, value)``, in display order."""
        pairs = [
            ("source", self.source),
            ("kind", self.kind),
            ("channel", self.channel),
            ("priority", self.priority),
            ("assignee", self.assignee),
            ("group", self.group),
            ("state", self.state),
        ]
        shown = [(name, value) for name, value in pairs if value is not None]
        if self.search.strip():
            shown.append(("search", self.search.strip()))
        return shown


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One open conversation in the queue, with its most urgent clock at stake (if any).

    ``customer``, ``subject``, ``snippet``, ``assignee``, ``group``, ``channel`` and
    ``url`` come from the public or from an API: show them as data, never as markup.
    """

    source: str
    kind: str
    conversation: str
    channel: str | None
    customer: str | None
    subject: str | None
    snippet: str | None
    priority: Priority | None
    assignee: str | None
    group: str | None
    status: Status | None
    url: str | None
    policy: str | None
    first_event_at: datetime | None
    last_event_at: datetime | None
    metric: Metric | None
    cycle: int
    state: ClockState | None
    """The stored state of the most urgent clock at stake; None: no clock at stake."""
    started_at: datetime | None
    due_at: datetime | None
    at_risk_at: datetime | None
    target_seconds: int | None
    elapsed_seconds: int | None
    evaluated_at: datetime | None

    @property
    def key(self) -> tuple[str, str]:
        """The conversation's key, ``(source, conversation)``."""
        return (self.source, self.conversation)


@dataclass(frozen=True, slots=True)
class PolicyToday:
    """One policy's figures since local midnight (see docs/board.md for the counting)."""

    policy: str
    met: int
    breached: int
    open: int
    first_response_p50: int | None
    first_response_p90: int | None

    @property
    def percent_met(self) -> float | None:
        """met / (met + breached) in percent; None before anything was decided today."""
        decided = self.met + self.breached
        return None if decided == 0 else 100.0 * self.met / decided


class LogKind(StrEnum):
    """What a breach-log entry records."""

    BREACHED = "breached"
    RECOVERED = "recovered"
    DISMISSED = "dismissed"
    UNDONE = "undone"


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One line of the breach log: a clock breached, came back, or was dismissed.

    ``by`` is who replied (a recovery) or who dismissed or undid it; ``reason`` is
    the dismissal's reason. ``customer``, ``assignee``, ``by`` and ``reason`` may have
    been written by the public.
    """

    at: datetime
    kind: LogKind
    source: str
    conversation: str
    metric: Metric | None
    """The clock's metric; None for a dismissal, which is of the whole conversation."""
    cycle: int
    policy: str | None
    customer: str | None
    assignee: str | None
    by: str | None = None
    reason: str | None = None
    late_seconds: int | None = None
    """A recovery: counted seconds past the target when the reply came."""
    target_seconds: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        """The conversation's key, ``(source, conversation)``."""
        return (self.source, self.conversation)


@dataclass(frozen=True, slots=True)
class BoardEvent:
    """An event a board stored: its id and its instant (evaluate at or after it)."""

    id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Facets:
    """The values the filters can take among open conversations, each sorted."""

    sources: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    priorities: tuple[str, ...] = ()
    assignees: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChangeMarker:
    """What changes whenever anything the board shows was stored, by any process."""

    last_event: int
    last_transition: int
    dirty: int
    last_poll: datetime | None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def queue_state(row: QueueRow, now: datetime) -> str:
    """Return the effective queue state of ``row`` at ``now``, as :meth:`queue` filters it.

    A clock state (``breached``, ``overdue``, ``at_risk``, ``running``, ``paused``),
    ``waiting`` (no clock at stake) or ``no_policy``.
    """
    state = row.state
    if state is None:
        return NO_POLICY if row.policy is None else WAITING
    if state in (ClockState.RUNNING, ClockState.AT_RISK) and (
        row.due_at is not None and row.due_at <= now
    ):
        return str(ClockState.OVERDUE)
    if state is ClockState.RUNNING and row.at_risk_at is not None and row.at_risk_at <= now:
        return str(ClockState.AT_RISK)
    return str(state)


def _optional_equals(value: str | None, wanted: str | None) -> bool:
    """Mirror :func:`_optional_match` in Python."""
    if wanted is None:
        return True
    if wanted == "":
        return not value
    return value == wanted


def matches(row: QueueRow, filters: QueueFilter, now: datetime) -> bool:
    """Return whether ``row`` passes ``filters`` at ``now``: :meth:`queue`'s WHERE in Python.

    The board filters its loaded queue with this on every key press, so that typing a
    search costs no query; tests pin that it agrees with the SQL.
    """
    if filters.source is not None and row.source != filters.source:
        return False
    if filters.kind is not None and row.kind != filters.kind:
        return False
    if not (
        _optional_equals(row.channel, filters.channel)
        and _optional_equals(None if row.priority is None else str(row.priority), filters.priority)
        and _optional_equals(row.assignee, filters.assignee)
        and _optional_equals(row.group, filters.group)
    ):
        return False
    if filters.state is not None and queue_state(row, now) != filters.state:
        return False
    term = filters.search.strip().lower()
    if term:
        searched = (
            row.customer,
            row.subject,
            row.conversation,
            row.assignee,
            row.group,
            row.channel,
            row.snippet,
        )
        return any(value is not None and term in value.lower() for value in searched)
    return True


def _micros(value: datetime | None) -> int:
    """Return ``value`` as microseconds since the epoch (0 for None)."""
    return 0 if value is None else (value - _EPOCH) // _MICROSECOND


def sort_key(sort: QueueSort) -> Callable[[QueueRow], tuple[Any, ...]]:
    """Return the Python sort key of a queue order: :meth:`queue`'s ORDER BY in Python."""

    def urgency(row: QueueRow) -> tuple[Any, ...]:
        remaining = (
            0
            if row.target_seconds is None or row.elapsed_seconds is None
            else row.target_seconds - row.elapsed_seconds
        )
        return (
            row.state is None,
            row.due_at is None,
            _micros(row.due_at),
            remaining,
        )

    def tail(row: QueueRow) -> tuple[str, str]:
        return (row.source, row.conversation)

    if sort is QueueSort.PRIORITY:
        return lambda row: (
            _PRIORITY_RANK.get(str(row.priority), len(_PRIORITY_RANK))
            if row.priority is not None
            else len(_PRIORITY_RANK),
            *urgency(row),
            row.last_event_at is None,
            _micros(row.last_event_at),
            *tail(row),
        )
    if sort is QueueSort.AGE:
        return lambda row: (
            row.first_event_at is None,
            _micros(row.first_event_at),
            *tail(row),
        )
    if sort is QueueSort.RECENT:
        return lambda row: (
            row.last_event_at is None,
            -_micros(row.last_event_at),
            *tail(row),
        )
    return lambda row: (
        *urgency(row),
        row.last_event_at is None,
        _micros(row.last_event_at),
        *tail(row),
    )


def select_rows(
    rows: Iterable[QueueRow],
    filters: QueueFilter,
    now: datetime,
    *,
    ordered_by: QueueSort | None = None,
) -> list[QueueRow]:
    """Return the rows ``filters`` selects, in its order (:meth:`queue` in Python).

    ``ordered_by`` says the rows already come in that order (as :meth:`queue` returned
    them), so that order is kept instead of sorted again.
    """
    keep = filters.is_empty
    chosen = [row for row in rows if keep or matches(row, filters, now)]
    if filters.sort is not ordered_by:
        chosen.sort(key=sort_key(filters.sort))
    return chosen


def count_states(rows: Iterable[QueueRow], now: datetime) -> dict[str, int]:
    """Return how many rows are in each queue state at ``now``, and ``open`` (all).

    :meth:`BoardQueries.queue_counts` in Python, for a queue already loaded whole.
    """
    counts: dict[str, int] = {}
    total = 0
    for row in rows:
        state = queue_state(row, now)
        counts[state] = counts.get(state, 0) + 1
        total += 1
    counts["open"] = total
    return counts


def _searchable(row: QueueRow) -> str:
    """Return the text a search looks in, lowered, its fields joined by NUL."""
    fields = (
        row.customer,
        row.subject,
        row.conversation,
        row.assignee,
        row.group,
        row.channel,
        row.snippet,
    )
    return "\x00".join(value.lower() for value in fields if value is not None)


class QueueIndex:
    """The loaded queue, ready to be filtered on every key press without a query.

    It selects exactly what :func:`select_rows` selects (tests pin it), faster: each
    filter is one tight pass over a column kept by attribute, each row's searchable
    text is lowered once, states are computed once until the next instant a clock
    changes state by itself, and typing more of a search narrows the previous result.
    """

    def __init__(self, rows: Sequence[QueueRow], ordered_by: QueueSort | None = None) -> None:
        self.rows = tuple(rows)
        self.ordered_by = ordered_by
        self._text = [_searchable(row) for row in self.rows]
        self._columns: dict[str, list[str | None]] = {}
        self._states: tuple[datetime, datetime | None, list[str]] | None = None
        self._last: tuple[QueueFilter, datetime, list[int]] | None = None

    def select(self, filters: QueueFilter, now: datetime) -> list[QueueRow]:
        """Return the rows ``filters`` selects at ``now``, in its order."""
        term = filters.search.strip().lower()
        if "\x00" in term:  # NUL separates the fields of the searchable text
            return select_rows(self.rows, filters, now, ordered_by=self.ordered_by)
        attributes = replace(filters, search="", sort=QueueSort.URGENCY)
        chosen: list[int] | None = None
        if self._last is not None:
            previous, previous_now, found = self._last
            if (
                replace(previous, search="", sort=QueueSort.URGENCY) == attributes
                and term.startswith(previous.search.strip().lower())
                and (filters.state is None or previous_now == now)
            ):
                chosen = found
        if chosen is None:
            chosen = self._by_attributes(attributes, now)
        if term:
            texts = self._text
            chosen = [index for index in chosen if term in texts[index]]
        self._last = (filters, now, chosen)
        result = [self.rows[index] for index in chosen]
        if filters.sort is not self.ordered_by:
            result.sort(key=sort_key(filters.sort))
        return result

    def _column(self, name: str) -> list[str | None]:
        """Return one attribute of every row, as the filters compare it."""
        if name not in self._columns:
            if name == "priority":
                self._columns[name] = [
                    None if row.priority is None else str(row.priority) for row in self.rows
                ]
            else:
                self._columns[name] = [getattr(row, name) for row in self.rows]
        return self._columns[name]

    def _state_column(self, now: datetime) -> list[str]:
        """Return every row's queue state at ``now`` (kept until a clock would change)."""
        cached = self._states
        if cached is not None and cached[0] <= now and (cached[1] is None or now < cached[1]):
            return cached[2]
        states = [queue_state(row, now) for row in self.rows]
        upcoming = [
            instant
            for row in self.rows
            for instant in (row.at_risk_at, row.due_at)
            if instant is not None and instant > now
        ]
        self._states = (now, min(upcoming, default=None), states)
        return states

    def _by_attributes(self, filters: QueueFilter, now: datetime) -> list[int]:
        """Return the indexes of the rows passing every filter but the search."""
        chosen = list(range(len(self.rows)))
        for name in ("source", "kind", "channel", "priority", "assignee", "group"):
            wanted = getattr(filters, name)
            if wanted is None:
                continue
            values = self._column(name)
            if wanted == "" and name not in ("source", "kind"):
                chosen = [index for index in chosen if not values[index]]
            else:
                chosen = [index for index in chosen if values[index] == wanted]
        if filters.state is not None:
            states = self._state_column(now)
            chosen = [index for index in chosen if states[index] == filters.state]
        return chosen


def percentile(values: Sequence[int], fraction: float) -> int | None:
    """Return the nearest-rank percentile of ``values`` (SLA.md §7); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def local_midnight(now: datetime, zone: tzinfo) -> datetime:
    """Return the UTC instant of the last local midnight before ``now`` in ``zone``."""
    local = require_utc(now, "now").astimezone(zone)
    midnight = datetime(local.year, local.month, local.day, tzinfo=zone)
    return midnight.astimezone(UTC)


_URGENT = _clocks.alias("urgent")
"""The most urgent clock at stake of each conversation, joined by :func:`_with_urgent`."""
_OTHER = _clocks.alias("other")


def _with_urgent(base: Any) -> Any:
    """Return ``base`` (conversations, maybe joined) left-joined to its most urgent clock.

    The clock is picked by a correlated subquery on the clocks' primary key prefix,
    one index search per conversation; a window function over all clocks joined back
    would be scanned once per conversation by SQLite, which cannot index it.
    """
    conversation = _conversations.c
    other = _OTHER.c
    urgent = _URGENT.c
    most_urgent = (
        select(other.metric, other.cycle)
        .where(
            other.source == conversation.source,
            other.conversation == conversation.conversation,
            other.stopped_at.is_(None),
            other.state.in_(_AT_STAKE),
        )
        .order_by(
            other.due_at.is_(None),
            other.due_at,
            other.target_seconds - other.elapsed_seconds,
            other.metric,
            other.cycle,
        )
        .limit(1)
        .correlate(_conversations)
        .scalar_subquery()
    )
    return base.outerjoin(
        _URGENT,
        and_(
            urgent.source == conversation.source,
            urgent.conversation == conversation.conversation,
            tuple_(urgent.metric, urgent.cycle) == most_urgent,
        ),
    )


def _ranked_state(now: datetime) -> ColumnElement[Any]:
    """Return SQL for the effective state of the most urgent clock at ``now``."""
    clock = _URGENT.c
    return case(
        (and_(clock.state.in_(("running", "at_risk")), clock.due_at <= now), literal("overdue")),
        (and_(clock.state == "running", clock.at_risk_at <= now), literal("at_risk")),
        else_=clock.state,
    )


def _optional_match(column: Any, value: str | None) -> ColumnElement[bool] | None:
    """Return the condition of an optional-attribute filter ('' matches NULL)."""
    if value is None:
        return None
    if value == "":
        return or_(column.is_(None), column == "")
    return column == value  # type: ignore[no-any-return]


def _raw(column: Any) -> Any:
    """Return ``column`` read as the driver returns it (no SQLAlchemy result processing)."""
    return type_coerce(column, NullType()).label(column.name)


# Lookups by stored value: an unknown value (a newer replywatch wrote it) reads as None.
_PRIORITIES: Mapping[Any, Priority] = {item.value: item for item in Priority}
_STATUSES: Mapping[Any, Status] = {item.value: item for item in Status}
_METRICS: Mapping[Any, Metric] = {item.value: item for item in Metric}
_STATES: Mapping[Any, ClockState] = {item.value: item for item in ClockState}


_REPLIED_BY = re.compile(r"^stopped by (?:agent|bot) reply \((.*)\) at ")


def _text_or_none(value: Any) -> str | None:
    """Return a JSON value as text when it is a non-empty string."""
    return value if isinstance(value, str) and value else None


def _clock_entry(row: Any, kind: LogKind, at: datetime) -> LogEntry:
    """Return the log entry of a breached clock: the breach, or its recovery."""
    by = None
    late = None
    if kind is LogKind.RECOVERED:
        late = max(0, int(row.elapsed_seconds) - int(row.target_seconds))
        by = row.replier
        if by is None:
            for reason in row.reasons or ():
                match = _REPLIED_BY.match(str(reason))
                if match:
                    by = match.group(1)
    return LogEntry(
        at=at,
        kind=kind,
        source=row.source,
        conversation=row.conversation,
        metric=Metric(row.metric),
        cycle=int(row.cycle),
        policy=row.policy,
        customer=row.customer,
        assignee=row.assignee,
        by=by,
        late_seconds=late,
        target_seconds=int(row.target_seconds),
    )


class BoardQueries:
    """Mixed into Store: what the board reads, and the dismissals it writes."""

    _engine: Engine
    _codec: bulk.Codec
    dialect: str
    display_url: str

    if TYPE_CHECKING:  # provided by Store

        def _read(self, doing: str) -> AbstractContextManager[Connection]: ...

        def _write(self, doing: str) -> AbstractContextManager[Connection]: ...

    # -- the queue ------------------------------------------------------------------------

    def queue(
        self, filters: QueueFilter | None = None, *, now: datetime, limit: int | None = None
    ) -> list[QueueRow]:
        """Return the open conversations ``filters`` selects, in its order.

        Each row carries the conversation's most urgent clock at stake (not stopped:
        running, at risk, paused, overdue, or breached and still waiting for its reply),
        the earliest ``due_at`` first; a conversation with none is ``waiting`` (or has
        ``no_policy``). ``now`` decides effective states for the ``state`` filter.

        Raises:
            ValueError: ``now`` is naive.
            StorageError: the database failed.
        """
        now = require_utc(now, "now")
        filters = filters or QueueFilter()
        statement = self._queue_statement(filters, now)
        if limit is not None:
            statement = statement.limit(limit)
        with self._read("reading the queue") as connection:
            rows = connection.execute(statement).all()
        return [self._queue_row(row) for row in rows]

    def _queue_statement(self, filters: QueueFilter, now: datetime) -> Any:
        """Build the queue's SELECT for ``filters``."""
        conversation = _conversations.c
        clock = _URGENT.c
        event = _events.c
        snippet = (
            select(func.substr(event.text, 1, SNIPPET_CHARS))
            .where(
                event.source == conversation.source,
                event.conversation == conversation.conversation,
                event.kind == "message",
                event.actor == "customer",
                event.public.is_not(false()),
            )
            .order_by(event.at.desc(), event.id.desc())
            .limit(1)
            .correlate(_conversations)
            .scalar_subquery()
            .label("snippet")
        )
        # Instants are read raw and parsed by the codec: SQLAlchemy's per-value result
        # processing cost more than the query itself on a queue of 10,000.
        statement = select(
            conversation.source,
            _sources.c.kind,
            conversation.conversation,
            conversation.channel,
            conversation.customer,
            conversation.subject,
            snippet,
            conversation.priority,
            conversation.assignee,
            conversation.group,
            conversation.status,
            conversation.url,
            conversation.policy,
            _raw(conversation.first_event_at),
            _raw(conversation.last_event_at),
            clock.metric,
            clock.cycle,
            clock.state,
            _raw(clock.started_at),
            _raw(clock.due_at),
            _raw(clock.at_risk_at),
            clock.target_seconds,
            clock.elapsed_seconds,
            _raw(conversation.evaluated_at),
        )
        statement = statement.select_from(
            _with_urgent(_conversations.join(_sources, _sources.c.name == conversation.source))
        ).where(conversation.is_open)
        conditions = [
            None if filters.source is None else conversation.source == filters.source,
            None if filters.kind is None else _sources.c.kind == filters.kind,
            _optional_match(conversation.channel, filters.channel),
            _optional_match(conversation.priority, filters.priority),
            _optional_match(conversation.assignee, filters.assignee),
            _optional_match(conversation.group, filters.group),
        ]
        statement = statement.where(*(c for c in conditions if c is not None))
        if filters.state is not None:
            if filters.state == WAITING:
                statement = statement.where(clock.state.is_(None), conversation.policy.is_not(None))
            elif filters.state == NO_POLICY:
                statement = statement.where(clock.state.is_(None), conversation.policy.is_(None))
            else:
                statement = statement.where(_ranked_state(now) == filters.state)
        term = filters.search.strip().lower()
        if term:
            searched = [
                conversation.customer,
                conversation.subject,
                conversation.conversation,
                conversation.assignee,
                conversation.group,
                conversation.channel,
                snippet.element,
            ]
            statement = statement.where(
                or_(*(func.lower(column).contains(term, autoescape=True) for column in searched))
            )
        return statement.order_by(*self._queue_order(filters.sort))

    def _queue_order(self, sort: QueueSort) -> list[Any]:
        """Return the ORDER BY of a sort, the same as :func:`sort_key`; it is total.

        Every nullable key is preceded by its IS NULL flag, so both engines put NULLs
        in the same place, and ties end on the key compared byte-wise (PostgreSQL's
        "C" collation, SQLite's default), as Python compares strings.
        """
        conversation = _conversations.c
        clock = _URGENT.c
        urgency = [
            # Clocks with a due time first (soonest, i.e. most overdue, first), then
            # paused ones by time left, then conversations with no clock at stake.
            clock.state.is_(None),
            clock.due_at.is_(None),
            clock.due_at,
            clock.target_seconds - clock.elapsed_seconds,
        ]
        priority = case(
            *((conversation.priority == name, rank) for name, rank in _PRIORITY_RANK.items()),
            else_=len(_PRIORITY_RANK),
        )
        recent = [conversation.last_event_at.is_(None), conversation.last_event_at]
        tail: list[Any]
        if self.dialect == "postgresql":
            tail = [conversation.source.collate("C"), conversation.conversation.collate("C")]
        else:
            tail = [conversation.source, conversation.conversation]
        if sort is QueueSort.PRIORITY:
            return [priority, *urgency, *recent, *tail]
        if sort is QueueSort.AGE:
            return [conversation.first_event_at.is_(None), conversation.first_event_at, *tail]
        if sort is QueueSort.RECENT:
            return [recent[0], conversation.last_event_at.desc(), *tail]
        return [*urgency, *recent, *tail]

    def _queue_row(self, row: Any) -> QueueRow:
        """Return the QueueRow of a result row (in the order the queue selects)."""
        (
            source,
            kind,
            conversation,
            channel,
            customer,
            subject,
            snippet,
            priority,
            assignee,
            group,
            status,
            url,
            policy,
            first_event_at,
            last_event_at,
            metric,
            cycle,
            state,
            started_at,
            due_at,
            at_risk_at,
            target_seconds,
            elapsed_seconds,
            evaluated_at,
        ) = row
        instant = self._codec.from_driver
        return QueueRow(
            source,
            kind,
            conversation,
            channel,
            customer,
            subject,
            snippet,
            _PRIORITIES.get(priority),
            assignee,
            group,
            _STATUSES.get(status),
            url,
            policy,
            None if first_event_at is None else instant(first_event_at),
            None if last_event_at is None else instant(last_event_at),
            _METRICS.get(metric),
            int(cycle or 0),
            _STATES.get(state),
            None if started_at is None else instant(started_at),
            None if due_at is None else instant(due_at),
            None if at_risk_at is None else instant(at_risk_at),
            target_seconds,
            elapsed_seconds,
            None if evaluated_at is None else instant(evaluated_at),
        )

    def queue_counts(self, *, now: datetime) -> dict[str, int]:
        """Return how many open conversations are in each effective queue state.

        Keys: the clock states at stake, ``waiting``, ``no_policy``, and ``open`` (all).
        """
        now = require_utc(now, "now")
        conversation = _conversations.c
        clock = _URGENT.c
        state = case(
            (and_(clock.state.is_(None), conversation.policy.is_(None)), literal(NO_POLICY)),
            (clock.state.is_(None), literal(WAITING)),
            else_=_ranked_state(now),
        ).label("queue_state")
        statement = (
            select(state, func.count())
            .select_from(_with_urgent(_conversations))
            .where(conversation.is_open)
            .group_by(state)
        )
        with self._read("counting the queue") as connection:
            rows = connection.execute(statement).all()
        counts = {str(name): int(count) for name, count in rows}
        counts["open"] = sum(counts.values())
        return counts

    def facets(self) -> Facets:
        """Return the values each filter can take among open conversations."""
        conversation = _conversations.c

        def distinct(column: Any) -> Any:
            return select(column).where(conversation.is_open).distinct()

        with self._read("reading filter values") as connection:
            found: dict[str, tuple[str, ...]] = {}
            for name, column in (
                ("sources", conversation.source),
                ("channels", conversation.channel),
                ("priorities", conversation.priority),
                ("assignees", conversation.assignee),
                ("groups", conversation.group),
            ):
                values = connection.execute(distinct(column)).scalars().all()
                found[name] = tuple(sorted({str(v) for v in values if v not in (None, "")}))
            kinds = connection.execute(
                select(_sources.c.kind)
                .where(_sources.c.name.in_(found["sources"]) if found["sources"] else false())
                .distinct()
            )
            found["kinds"] = tuple(sorted(str(kind) for kind in kinds.scalars().all()))
        priorities = sorted(found["priorities"], key=lambda p: _PRIORITY_RANK.get(p, 9))
        found["priorities"] = tuple(priorities)
        return Facets(**found)

    # -- today ----------------------------------------------------------------------------

    def today(self, *, now: datetime, zone: tzinfo) -> list[PolicyToday]:
        """Return each policy's figures since the last local midnight in ``zone``.

        ``met`` counts clocks met that stopped today; ``breached`` clocks breached that
        stopped today or, still waiting for their reply, fell due today; ``open`` the
        clocks at stake now. Percentiles are nearest-rank over the counted time of the
        first-response clocks that stopped today, met or breached. Cancelled clocks
        count nowhere (SLA.md §2).
        """
        now = require_utc(now, "now")
        midnight = local_midnight(now, zone)
        clock = _clocks.c
        # Two queries that each read one range of an index (when the clocks stopped;
        # the clocks not stopped), rather than one whose OR reads every clock. The
        # states are compared in Python: with a state condition, SQLite would pick the
        # (state, due_at) index and read every met clock ever.
        stopped = select(clock.policy, clock.metric, clock.state, clock.elapsed_seconds).where(
            clock.stopped_at >= midnight
        )
        due_today = and_(clock.state == "breached", clock.due_at >= midnight)
        waiting = (
            select(clock.policy, func.count(), func.sum(case((due_today, 1), else_=0)))
            .where(clock.stopped_at.is_(None), clock.state.in_(_AT_STAKE))
            .group_by(clock.policy)
        )
        figures: dict[str, dict[str, int]] = {}

        def of(policy: Any) -> dict[str, int]:
            return figures.setdefault(str(policy), {"met": 0, "breached": 0, "open": 0})

        elapsed: dict[str, list[int]] = {}
        first_response = str(Metric.FIRST_RESPONSE)
        with self._read("reading today's figures") as connection:
            for policy, metric, state, seconds in connection.execute(stopped):
                if state not in ("met", "breached"):
                    continue
                of(policy)[state] += 1
                if metric == first_response:
                    elapsed.setdefault(str(policy), []).append(int(seconds))
            for policy, count, breached in connection.execute(waiting):
                of(policy)["open"] += int(count)
                of(policy)["breached"] += int(breached or 0)
        return [
            PolicyToday(
                policy=policy,
                met=counts["met"],
                breached=counts["breached"],
                open=counts["open"],
                first_response_p50=percentile(elapsed.get(policy, []), 0.5),
                first_response_p90=percentile(elapsed.get(policy, []), 0.9),
            )
            for policy, counts in sorted(figures.items())
        ]

    def first_response_times(
        self, *, since: datetime, until: datetime
    ) -> list[tuple[datetime, int]]:
        """Return ``(stopped_at, counted seconds)`` of first responses stopped in the window.

        Met and breached first-response clocks that stopped in ``[since, until)``, oldest
        first: what the board's sparkline of the last 24 hours is drawn from.
        """
        since, until = require_utc(since, "since"), require_utc(until, "until")
        clock = _clocks.c
        statement = (
            select(clock.stopped_at, clock.elapsed_seconds)
            .where(
                clock.stopped_at >= since,
                clock.stopped_at < until,
                clock.metric == str(Metric.FIRST_RESPONSE),
                clock.state.in_(("met", "breached")),
            )
            .order_by(clock.stopped_at)
        )
        with self._read("reading first response times") as connection:
            return [(at, int(seconds)) for at, seconds in connection.execute(statement)]

    # -- the breach log -------------------------------------------------------------------

    def breach_log(self, *, since: datetime, limit: int = 100) -> list[LogEntry]:
        """Return what breached, came back or was dismissed since ``since``, newest first.

        A breach is dated by its ``due_at`` and a recovery (a breached clock that got
        its reply) by its ``stopped_at``, both read from the clocks as they are now, so
        a history loaded later is dated right. Dismissals and their undoing made on a
        board are read from their events (undone or not: it is an audit), and those a
        source made from the clocks they cancelled; each names who and why.
        """
        since = require_utc(since, "since")
        clock = _clocks.c
        conversation = _conversations.c
        joined = _clocks.join(
            _conversations,
            and_(
                conversation.source == clock.source,
                conversation.conversation == clock.conversation,
            ),
        )
        # Who replied: stored since schema 0002; older rows only say it in a reason.
        replier = clock.get("stopped_by")
        columns = (
            clock.source,
            clock.conversation,
            clock.metric,
            clock.cycle,
            clock.policy,
            clock.due_at,
            clock.stopped_at,
            clock.target_seconds,
            clock.elapsed_seconds,
            clock.reasons,
            conversation.customer,
            conversation.assignee,
            (replier if replier is not None else null()).label("replier"),
        )
        breaches = (
            select(*columns)
            .select_from(joined)
            .where(clock.state == "breached", clock.due_at >= since)
            .order_by(clock.due_at.desc())
            .limit(limit)
        )
        # coalesce() keeps the planner off the (state, due_at) index: the stop-time
        # index read backwards finds the newest first and stops at the limit.
        state = func.coalesce(clock.state, "")
        recoveries = (
            select(*columns)
            .select_from(joined)
            .where(state == "breached", clock.stopped_at >= since)
            .order_by(clock.stopped_at.desc())
            .limit(limit)
        )
        cancelled = (
            select(*columns)
            .select_from(joined)
            .where(state == "cancelled", clock.stopped_at >= since)
            .order_by(clock.stopped_at.desc())
            .limit(limit * 3)
        )
        entries: list[LogEntry] = []
        with self._read("reading the breach log") as connection:
            for row in connection.execute(breaches):
                entries.append(_clock_entry(row, LogKind.BREACHED, row.due_at))
            for row in connection.execute(recoveries):
                entries.append(_clock_entry(row, LogKind.RECOVERED, row.stopped_at))
            # Dismissals and undos made on a board, found by their event ids (an index
            # range per source), undone or not; then those a source made (spam, deleted),
            # found by the clocks they cancelled.
            seen: set[tuple[str, str, datetime]] = set()
            for kind, prefix in (
                (LogKind.DISMISSED, DISMISS_PREFIX),
                (LogKind.UNDONE, UNDO_PREFIX),
            ):
                for row in self._board_events(connection, prefix, since, limit):
                    seen.add((row.source, row.conversation, row.at))
                    fields = row.fields if isinstance(row.fields, Mapping) else {}
                    entries.append(
                        LogEntry(
                            at=row.at,
                            kind=kind,
                            source=row.source,
                            conversation=row.conversation,
                            metric=None,
                            cycle=0,
                            policy=row.policy,
                            customer=row.customer,
                            assignee=row.assignee,
                            by=row.author or _text_or_none(fields.get("by")),
                            reason=(
                                _text_or_none(fields.get("reason")) or row.text
                                if kind is LogKind.DISMISSED
                                else None
                            ),
                        )
                    )
            for row in connection.execute(cancelled):
                once = (row.source, row.conversation, row.stopped_at)
                if once in seen:
                    continue
                seen.add(once)
                by, reason = self._dismissal_event(connection, row)
                entries.append(
                    replace(
                        _clock_entry(row, LogKind.DISMISSED, row.stopped_at),
                        metric=None,
                        cycle=0,
                        by=by,
                        reason=reason,
                        target_seconds=None,
                    )
                )
        entries.sort(key=lambda entry: (entry.at, entry.kind), reverse=True)
        return entries[:limit]

    @staticmethod
    def _board_events(
        connection: Connection, prefix: str, since: datetime, limit: int
    ) -> list[Any]:
        """Return the events a board stored under ``prefix`` since ``since``, newest first."""
        event = _events.c
        conversation = _conversations.c
        # Every id with the prefix sorts in [prefix, prefix with its last character + 1).
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        found: list[Any] = []
        for source in connection.execute(select(_sources.c.name)).scalars():
            found += connection.execute(
                select(
                    event.source,
                    event.conversation,
                    event.at,
                    event.author,
                    event.fields,
                    event.text,
                    conversation.customer,
                    conversation.assignee,
                    conversation.policy,
                )
                .select_from(
                    _events.join(
                        _conversations,
                        and_(
                            conversation.source == event.source,
                            conversation.conversation == event.conversation,
                        ),
                    )
                )
                .where(
                    event.source == source,
                    event.event_id >= prefix,
                    event.event_id < upper,
                    event.at >= since,
                )
                .order_by(event.at.desc())
                .limit(limit)
            ).all()
        return found

    @staticmethod
    def _dismissal_event(connection: Connection, row: Any) -> tuple[str | None, str | None]:
        """Return who dismissed a conversation a source dismissed, and why, if it says."""
        event = _events.c
        found = connection.execute(
            select(event.author, event.fields, event.text)
            .where(
                event.source == row.source,
                event.conversation == row.conversation,
                event.at <= row.stopped_at,
                event.kind == str(EventKind.DISMISSED),
            )
            .order_by(event.at.desc())
            .limit(1)
        ).first()
        if found is None:
            return None, None
        fields = found.fields if isinstance(found.fields, Mapping) else {}
        by = found.author or _text_or_none(fields.get("by"))
        return by, _text_or_none(fields.get("reason")) or found.text

    # -- live updates ---------------------------------------------------------------------

    def change_marker(self) -> ChangeMarker:
        """Return a marker that changes whenever anything the board shows was stored.

        Four indexed lookups: the last event id (an ingest or a dismissal), the last
        transition id (an evaluation that changed a state), the number of dirty
        conversations (an evaluation that changed no state still clears its flag) and
        the sources' last poll (health). Cheap enough to poll four times a second.
        """
        conversation = _conversations.c
        with self._read("checking for changes") as connection:
            last_event = connection.execute(select(func.max(_events.c.id))).scalar()
            last_transition = connection.execute(select(func.max(_transitions.c.id))).scalar()
            dirty = connection.execute(
                select(func.count()).select_from(_conversations).where(conversation.dirty)
            ).scalar()
            last_poll = connection.execute(select(func.max(_sources.c.last_poll_at))).scalar()
        return ChangeMarker(
            last_event=int(last_event or 0),
            last_transition=int(last_transition or 0),
            dirty=int(dirty or 0),
            last_poll=last_poll if isinstance(last_poll, datetime) else None,
        )

    # -- dismissals -----------------------------------------------------------------------

    def dismiss(self, key: tuple[str, str], *, reason: str, by: str, now: datetime) -> BoardEvent:
        """Store a dismissal of conversation ``key`` by ``by`` at ``now``; return the event.

        The ``dismissed`` event carries ``{"reason": ..., "by": ...}`` and is marked as
        written by ``by``; the conversation is marked dirty, so the next evaluation
        cancels its running clocks (SLA.md §2). Audited: it stays in the events.

        Raises:
            ValueError: ``now`` is naive.
            StorageError: the conversation is unknown, or the database failed.
        """
        now = require_utc(now, "now")
        event_id = f"{DISMISS_PREFIX}{uuid.uuid4()}"
        event = Event(
            source=key[0],
            conversation=key[1],
            id=event_id,
            at=now,
            kind=EventKind.DISMISSED,
            fields={"reason": reason, "by": by},
            author=by,
            text=reason,
        )
        self._store_board_event(key, event, now, "dismissing a conversation")
        return BoardEvent(event_id, now)

    def undo_dismiss(self, key: tuple[str, str], *, by: str, now: datetime) -> BoardEvent:
        """Take back the dismissal of ``key``: store ``{"dismissed": false}``; return the event.

        The undo is dated after the latest dismissal, even if this machine's clock is
        behind the one that dismissed (the engine orders events by time).

        Raises:
            ValueError: ``now`` is naive.
            StorageError: the conversation is unknown, or the database failed.
        """
        now = require_utc(now, "now")
        event = _events.c
        stored = (key[0], clean_id(key[1]))
        with self._read("reading a dismissal") as connection:
            latest = connection.execute(
                select(func.max(event.at)).where(
                    event.source == stored[0],
                    event.conversation == stored[1],
                    event.kind == str(EventKind.DISMISSED),
                )
            ).scalar()
        if isinstance(latest, datetime) and latest >= now:
            now = latest + timedelta(microseconds=1)
        event_id = f"{UNDO_PREFIX}{uuid.uuid4()}"
        undo = Event(
            source=key[0],
            conversation=key[1],
            id=event_id,
            at=now,
            kind=EventKind.UPDATE,
            fields={"dismissed": False, "by": by},
            author=by,
        )
        self._store_board_event(key, undo, now, "undoing a dismissal")
        return BoardEvent(event_id, now)

    def _store_board_event(
        self, key: tuple[str, str], item: Event, now: datetime, doing: str
    ) -> None:
        """Insert one event written on a board and mark its conversation dirty."""
        codec = self._codec
        source, conversation = key[0], clean_id(key[1])
        ((row, stored),) = codec.event_rows(source, [item], now).values()
        at = stored.at
        insert = bulk.event_insert(self.dialect)
        touch = bulk.conversation_touch(self.dialect)
        columns = _conversations.c
        with self._write(doing) as connection:
            found = connection.execute(
                select(columns.source).where(
                    columns.source == source, columns.conversation == conversation
                )
            ).first()
            if found is None:
                raise StorageError(
                    f"{self.display_url}: conversation {clean_text(key[1])[:80]!r} of "
                    f"{source!r} is not stored"
                )
            cursor = connection.connection.cursor()
            try:
                cursor.execute(insert.sql, row)
                cursor.execute(
                    touch.sql, (source, conversation, codec.to_driver(at), codec.to_driver(at))
                )
            finally:
                cursor.close()

    def dismissed(self, key: tuple[str, str]) -> bool:
        """Return whether ``key`` is dismissed as of its last evaluation."""
        columns = _conversations.c
        with self._read("reading a conversation") as connection:
            value = connection.execute(
                select(columns.dismissed).where(
                    columns.source == key[0], columns.conversation == clean_id(key[1])
                )
            ).scalar()
        return bool(value)
