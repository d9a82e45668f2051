"""Provides the hot paths of the store at driver level: compiled statements and row codecs.

Ingest and evaluation move every event and clock through the store, so their rows skip
SQLAlchemy's per-row parameter and result processing (which costs more than SQLite's
own insert): statements are still built with SQLAlchemy Core, compiled once per
dialect with positional parameters, and executed with the driver's ``executemany``
on plain tuples. The conversions the column types would do are done here, once:
instants as fixed-width text on SQLite (:func:`~monitor.storage.models.format_utc`),
JSON as text, untrusted strings cleaned (:func:`~monitor.storage.models.clean_text`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from types import MappingProxyType
from typing import Any

import orjson
from sqlalchemy import bindparam, case, false, literal_column, null, or_, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import psycopg

from monitor.events import (
    Actor,
    Clock,
    ClockState,
    Event,
    EventKind,
    Status,
    thaw,
)
from monitor.storage.models import (
    ID_LIMIT,
    SafeJSON,
    UTCDateTime,
    clean_id,
    clean_json,
    clean_name,
    clean_text,
    format_utc,
    parse_utc,
    table,
)

_events = table("events")
_conversations = table("conversations")
_sources = table("sources")
_clocks = table("clocks")
_transitions = table("clock_transitions")

_KINDS = {kind.value: kind for kind in EventKind}
_ACTORS = {actor.value: actor for actor in Actor}
_STATUSES = {status.value: status for status in Status}
_EMPTY: Mapping[str, Any] = MappingProxyType({})


_ORJSON = (
    orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
"""What orjson writes itself: plain JSON types (and enums by value); anything else,
str subclasses included, is refused and so written by :func:`_json_dumps_text`."""


def json_text(value: Any) -> str:
    """Return ``value`` as compact JSON text that every engine stores.

    The common case is one ``orjson.dumps`` (reasons and clock snapshots are written
    for every clock); what it refuses (non-string keys, huge integers, lone surrogates,
    other types) takes the ``json`` route, and text holding what PostgreSQL refuses
    (``\\u0000``) goes through :func:`clean_json` first. NaN is written as null either way.
    """
    try:
        text = orjson.dumps(value, option=_ORJSON).decode()
    except TypeError:  # orjson.JSONEncodeError included
        return _json_dumps_text(value)
    if "\\u0000" in text:
        return _clean_json_text(value)
    return text


def _json_dumps_text(value: Any) -> str:
    """:func:`json_text` by ``json.dumps``, for what orjson does not write."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return _clean_json_text(value)
    if "\\u0000" in text:
        return _clean_json_text(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return _clean_json_text(value)
    return text


def _clean_json_text(value: Any) -> str:
    """Return the JSON text of ``value`` after :func:`clean_json`."""
    return json.dumps(
        clean_json(value), ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str
    )


@dataclass(frozen=True, slots=True)
class Compiled:
    """A statement compiled for the driver, and the names of its positional parameters."""

    sql: str
    order: tuple[str, ...]
    _pick: Callable[[Mapping[str, Any]], Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # One C-level lookup per row instead of a generator over the names.
        object.__setattr__(self, "_pick", itemgetter(*self.order) if self.order else None)

    def row(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """Return the parameter tuple of one row given by name."""
        if len(self.order) < 2:
            return tuple(values[name] for name in self.order)
        return tuple(self._pick(values))


def _positional_dialect(dialect_name: str) -> Any:
    """Return a dialect compiling positional parameters, so rows can be plain tuples."""
    if dialect_name == "postgresql":
        # No implicit RETURNING of new ids: nobody reads them.
        return psycopg.dialect(  # type: ignore[no-untyped-call]
            paramstyle="format", implicit_returning=False
        )
    return sqlite.dialect(paramstyle="qmark")


def compile_for_driver(
    statement: Any, dialect_name: str, keys: Sequence[str] | None = None
) -> Compiled:
    """Compile a Core statement for ``dialect_name`` with positional parameters.

    With ``keys`` (the inserted columns), the parameters start in that order, so rows
    can be built as tuples in it.
    """
    dialect = _positional_dialect(dialect_name)
    if keys is None:
        compiled = statement.compile(dialect=dialect)
    else:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    order = tuple(compiled.positiontup or ())
    if keys is not None and order[: len(keys)] != tuple(keys):  # pragma: no cover - a guard
        raise AssertionError(f"parameters {order} do not start with {tuple(keys)}")
    return Compiled(str(compiled.string), order)


def _insert(dialect_name: str) -> Callable[[Any], Any]:
    """Return the dialect's ``insert`` (the one with ON CONFLICT)."""
    return postgresql.insert if dialect_name == "postgresql" else sqlite.insert


EVENT_COLUMNS = (
    "source",
    "event_id",
    "conversation",
    "at",
    "kind",
    "actor",
    "public",
    "status",
    "fields",
    "channel",
    "url",
    "author",
    "text",
    "ingested_at",
)
CONVERSATION_INDEX = EVENT_COLUMNS.index("conversation")


def event_insert(dialect_name: str) -> Compiled:
    """Return ``INSERT INTO events ... ON CONFLICT (source, event_id) DO NOTHING``."""
    statement = _insert(dialect_name)(_events).on_conflict_do_nothing(
        index_elements=[_events.c.source, _events.c.event_id]
    )
    return compile_for_driver(statement, dialect_name, EVENT_COLUMNS)


def conversation_touch(dialect_name: str) -> Compiled:
    """Return the upsert marking a conversation dirty after new events.

    Parameters: source, conversation, first_event_at, last_event_at (of its new
    events, widening the stored span). A new row takes the column defaults (dirty,
    ingest_seq 0); an existing one gets dirty and its ingest_seq incremented.
    """
    statement = _insert(dialect_name)(_conversations)
    new = statement.excluded
    columns = _conversations.c
    statement = statement.on_conflict_do_update(
        index_elements=[columns.source, columns.conversation],
        set_={
            "dirty": true(),
            "ingest_seq": columns.ingest_seq + literal_column("1"),
            "first_event_at": case(
                (
                    or_(
                        columns.first_event_at.is_(None),
                        new.first_event_at < columns.first_event_at,
                    ),
                    new.first_event_at,
                ),
                else_=columns.first_event_at,
            ),
            "last_event_at": case(
                (
                    or_(
                        columns.last_event_at.is_(None),
                        new.last_event_at > columns.last_event_at,
                    ),
                    new.last_event_at,
                ),
                else_=columns.last_event_at,
            ),
        },
    )
    keys = ("source", "conversation", "first_event_at", "last_event_at")
    return compile_for_driver(statement, dialect_name, keys)


def source_polled(dialect_name: str) -> Compiled:
    """Return the update of a source after a successful poll.

    Parameters: ``p_name``; ``p_cursor`` as JSON text; ``p_now``; ``p_watermark``,
    which moves the watermark forward only, and keeps it when NULL.
    """
    columns = _sources.c
    watermark = bindparam("p_watermark", type_=UTCDateTime())
    now = bindparam("p_now", type_=UTCDateTime())
    statement = (
        update(_sources)
        .where(columns.name == bindparam("p_name"))
        .values(
            cursor=bindparam("p_cursor", type_=SafeJSON()),
            last_poll_at=now,
            last_success_at=now,
            last_error=null(),
            last_error_at=null(),
            failing_since=null(),
            degraded=false(),
            watermark=case(
                (watermark.is_(None), columns.watermark),
                (or_(columns.watermark.is_(None), columns.watermark < watermark), watermark),
                else_=columns.watermark,
            ),
        )
    )
    return compile_for_driver(statement, dialect_name)


CONVERSATION_COLUMNS = (
    "source",
    "conversation",
    "status",
    "priority",
    "assignee",
    "group",
    "tags",
    "channel",
    "url",
    "customer",
    "subject",
    "dismissed",
)
"""The columns of a conversation's folded attributes (``monitor.events.Conversation``)."""

SUMMARY_COLUMNS = (
    *CONVERSATION_COLUMNS,
    "policy",
    "is_open",
    "next_deadline",
    "dirty",
    "ingest_seq",
    "evaluated_at",
)


def conversation_summary(dialect_name: str) -> Compiled:
    """Return the upsert of a conversation's evaluated attributes and summary.

    ``seen_seq`` is the ingest_seq load_events saw (-1: not loaded by this store):
    ``dirty`` is cleared only if it still matches, so an ingest that raced the
    evaluation leaves the conversation dirty. A new row is inserted clean.
    """
    statement = _insert(dialect_name)(_conversations)
    new = statement.excluded
    columns = _conversations.c
    updated: dict[str, Any] = {
        name: getattr(new, name)
        for name in SUMMARY_COLUMNS
        if name not in ("source", "conversation", "dirty", "ingest_seq")
    }
    updated["dirty"] = case(
        (columns.ingest_seq == bindparam("seen_seq"), false()), else_=columns.dirty
    )
    statement = statement.on_conflict_do_update(
        index_elements=[columns.source, columns.conversation], set_=updated
    )
    return compile_for_driver(statement, dialect_name, SUMMARY_COLUMNS)


CLOCK_COLUMNS = (
    "source",
    "conversation",
    "metric",
    "cycle",
    "policy",
    "state",
    "priority",
    "started_at",
    "due_at",
    "stopped_at",
    "at_risk_at",
    "target_seconds",
    "elapsed_seconds",
    "paused_seconds",
    "reasons",
    "wake_at",
    "updated_at",
    "stopped_by",
    "assignee",
    "channel",
)
if tuple(column.name for column in _clocks.columns) != CLOCK_COLUMNS:  # pragma: no cover
    raise AssertionError("bulk.CLOCK_COLUMNS is out of step with the clocks table")


def clock_upsert(dialect_name: str) -> Compiled:
    """Return the upsert of a clock on its key (source, conversation, metric, cycle)."""
    statement = _insert(dialect_name)(_clocks)
    new = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=[column for column in _clocks.columns if column.primary_key],
        set_={
            column.name: getattr(new, column.name)
            for column in _clocks.columns
            if not column.primary_key
        },
    )
    return compile_for_driver(statement, dialect_name, CLOCK_COLUMNS)


TRANSITION_COLUMNS = (
    "source",
    "conversation",
    "metric",
    "cycle",
    "previous",
    "state",
    "at",
    "clock",
)


def transition_insert(dialect_name: str) -> Compiled:
    """Return the insert of one clock transition."""
    return compile_for_driver(_transitions.insert(), dialect_name, TRANSITION_COLUMNS)


class Codec:
    """Converts between domain values and what one engine's driver takes and returns."""

    def __init__(self, dialect_name: str) -> None:
        """Prepare the conversions of ``dialect_name`` (``sqlite`` or ``postgresql``)."""
        self.on_sqlite = dialect_name == "sqlite"
        self.to_driver: Callable[[datetime], Any] = (
            format_utc if self.on_sqlite else self._aware_utc
        )
        self.from_driver: Callable[[Any], datetime] = parse_utc if self.on_sqlite else self._to_utc

    @staticmethod
    def _aware_utc(value: datetime) -> datetime:
        """Refuse a naive instant; return it in UTC."""
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"refusing naive datetime {value.isoformat()}: store aware UTC only")
        return value if value.tzinfo is UTC else value.astimezone(UTC)

    @staticmethod
    def _to_utc(value: datetime) -> datetime:
        """Return a ``timestamptz`` psycopg read (in the session's zone) in UTC."""
        return value if value.tzinfo is UTC else value.astimezone(UTC)

    def optional(self, value: datetime | None) -> Any:
        """Return the driver value of an optional instant."""
        return None if value is None else self.to_driver(value)

    def json_from(self, value: Any) -> Any:
        """Return the Python value of a JSON column (text on SQLite, parsed by psycopg)."""
        if isinstance(value, str | bytes):
            return json.loads(value)
        return value

    def event_rows(
        self, source: str, events: Sequence[Event], now: datetime
    ) -> dict[str, tuple[tuple[Any, ...], Event]]:
        """Return the ``events`` row (in ``EVENT_COLUMNS`` order) and event by event id.

        The first event of an id in the batch wins; text is cleaned here, once.

        Raises:
            ValueError: an event of another source.
        """
        # Runs once per event ingested: locals, and str() of the StrEnums (C-level,
        # unlike Enum.value), keep it a small part of an ingest. Events of one page
        # share conversations, urls and instants: each is cleaned or formatted once.
        clean, to_driver = clean_text, self.to_driver
        ingested_at = to_driver(now)
        rows: dict[str, tuple[tuple[Any, ...], Event]] = {}
        conversations: dict[str, str] = {}
        instants: dict[datetime, Any] = {}
        urls: dict[str, str] = {}
        for item in events:
            if item.source != source:
                raise ValueError(
                    f"event {item.id!r} belongs to source {item.source!r}, not {source!r}"
                )
            event_id = item.id
            if not (len(event_id) <= ID_LIMIT and event_id.isascii() and "\x00" not in event_id):
                event_id = clean_id(event_id)
            if event_id in rows:
                continue
            conversation = conversations.get(item.conversation)
            if conversation is None:
                conversation = conversations[item.conversation] = clean_id(item.conversation)
            at = instants.get(item.at)
            if at is None:
                at = instants[item.at] = to_driver(item.at)
            actor, status, channel, url, author, text = (
                item.actor,
                item.status,
                item.channel,
                item.url,
                item.author,
                item.text,
            )
            if url is not None:
                cleaned = urls.get(url)
                if cleaned is None:
                    cleaned = urls[url] = clean(url)
                url = cleaned
            row = (
                source,
                event_id,
                conversation,
                at,
                str(item.kind),
                None if actor is None else str(actor),
                item.public,
                None if status is None else str(status),
                json_text(thaw(item.fields)) if item.fields else None,
                None if channel is None else clean(channel),
                url,
                None if author is None else clean(author),
                None if text is None else clean(text),
                ingested_at,
            )
            rows[event_id] = (row, item)
        return rows

    def event(self, row: Sequence[Any]) -> Event:
        """Return the event of a row selected as ``EVENT_COLUMNS`` (without ingested_at)."""
        fields = row[8]
        return Event(
            row[0],
            row[2],
            row[1],
            self.from_driver(row[3]),
            _KINDS[row[4]],
            None if row[5] is None else _ACTORS[row[5]],
            None if row[6] is None else bool(row[6]),
            None if row[7] is None else _STATUSES[row[7]],
            _EMPTY if fields is None else self.json_from(fields),
            row[9],
            row[10],
            row[11],
            row[12],
        )

    def stored_event(self, row: tuple[Any, ...], item: Event) -> Event:
        """Return the event :meth:`event` reads back from ``row``, built by :meth:`event_rows`
        from ``item``: ``item`` itself when storing changes nothing in it (the common case).
        """
        if (
            row[1] == item.id
            and row[2] == item.conversation
            and row[9] == item.channel
            and row[10] == item.url
            and row[11] == item.author
            and row[12] == item.text
            and (item.public is None or type(item.public) is bool)
            and (not item.fields or _plain(item.fields))
        ):
            return item
        return self.event(row)

    def clock_row(
        self, clock: Clock, updated_at: Any, channel: str | None = None
    ) -> tuple[Any, ...]:
        """Return the ``clocks`` row of a clock, in ``CLOCK_COLUMNS`` order.

        ``updated_at`` is already a driver value: one evaluation formats it once.
        ``channel`` is the conversation's, kept with the clock for the report.
        """
        optional = self.optional
        due_at, at_risk_at = optional(clock.due_at), optional(clock.at_risk_at)
        wake = wake_at(clock)
        return (
            clock.source,
            clean_id(clock.conversation),
            str(clock.metric),
            clock.cycle,
            clean_text(clock.policy),
            str(clock.state),
            None if clock.priority is None else str(clock.priority),
            self.to_driver(clock.started_at),
            due_at,
            optional(clock.stopped_at),
            at_risk_at,
            clock.target_seconds,
            clock.elapsed_seconds,
            clock.paused_seconds,
            json_text(list(clock.reasons)) if clock.reasons else None,
            None if wake is None else (at_risk_at if wake is clock.at_risk_at else due_at),
            updated_at,
            clean_name(clock.stopped_by),
            clean_name(clock.assignee),
            clean_name(channel),
        )


_PLAIN_SCALARS = (str, int, float, bool, type(None))


def _plain(value: Any) -> bool:
    """Whether frozen JSON-like ``value`` reads back equal from its stored JSON text.

    True for finite numbers, strings :func:`clean_text` keeps and containers of them;
    False for what storing rewrites (NaN, NUL, lone surrogates, other types).
    """
    kind = type(value)
    if kind is str:
        return clean_text(value) is value
    if kind is MappingProxyType:
        return all(_plain(key) and _plain(item) for key, item in value.items())
    if kind is tuple:
        return all(_plain(item) for item in value)
    if kind is float:
        return math.isfinite(value)
    return kind in _PLAIN_SCALARS


def wake_at(clock: Clock) -> datetime | None:
    """Return the instant ``clock`` changes state by itself, with no new event.

    Running: at_risk_at (else due_at); at risk or overdue: due_at (an overdue clock
    waits for the watermark to confirm it, SLA.md §6); otherwise never.
    """
    if clock.state is ClockState.RUNNING:
        return clock.at_risk_at if clock.at_risk_at is not None else clock.due_at
    if clock.state in (ClockState.AT_RISK, ClockState.OVERDUE):
        return clock.due_at
    return None


def in_chunks(values: Sequence[str], size: int) -> Iterator[list[str]]:
    """Yield ``values`` in lists of at most ``size``."""
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def select_in(dialect_name: str, columns: str, table_name: str, count: int) -> str:
    """Return ``SELECT columns FROM table WHERE source = ? AND conversation IN (count)``.

    Filtering one source at a time with a plain ``IN`` lets both engines use the
    (source, conversation, ...) indexes; SQLite scans for a row-value ``IN``.
    """
    if dialect_name == "postgresql":
        return f"SELECT {columns} FROM {table_name} WHERE source = %s AND conversation = ANY(%s)"
    marks = ", ".join("?" * count)
    return f"SELECT {columns} FROM {table_name} WHERE source = ? AND conversation IN ({marks})"


def in_parameters(dialect_name: str, source: str, values: list[str]) -> tuple[Any, ...]:
    """Return the parameters of :func:`select_in`."""
    if dialect_name == "postgresql":
        return (source, values)
    return (source, *values)
