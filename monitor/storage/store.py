"""Provides the Store: events, cursors, clocks and the alert outbox over SQLite or PostgreSQL.

One code path serves both engines (SQLAlchemy Core over the SQLModel tables of
:mod:`monitor.storage.models`). Rows never leave this module: every read returns the
domain types of :mod:`monitor.events`, every datetime aware UTC.

SQLite runs in WAL mode with a busy timeout, and every write transaction starts with
``BEGIN IMMEDIATE``, so two writers queue for the lock instead of failing half-way with
"database is locked" (SQLAlchemy's pysqlite "serializable isolation" recipe).
PostgreSQL is reached through psycopg 3 (``postgres://`` and ``postgresql://`` URLs are
rewritten to it). Schema changes are Alembic migrations run in code by :meth:`Store.open`.

The hot paths (ingest, load_events, save_evaluations) run Core-built statements on the
driver's cursor with plain tuples (:mod:`monitor.storage.bulk`); the rest is plain Core.

Untrusted text: PostgreSQL cannot store ``\\x00`` and no driver can encode a lone
surrogate, so both become U+FFFD on the way in, on every engine alike
(:func:`monitor.storage.models.clean_text`); JSON NaN and infinities become null. Ids
longer than 255 characters are stored shortened to a stable digest (ids are indexed,
and PostgreSQL cannot index a huge value); every method taking a key accepts either form.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Connection,
    Engine,
    Row,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from monitor.errors import StorageError
from monitor.events import (
    AT_STAKE_STATES,
    OPEN_STATES,
    SOLVED_STATUSES,
    Clock,
    ClockState,
    Conversation,
    Event,
    Metric,
    Priority,
    Status,
    Transition,
    parse_instant,
    require_utc,
    thaw,
)
from monitor.storage import bulk
from monitor.storage.board import BoardQueries
from monitor.storage.cluster import ClusterQueries
from monitor.storage.models import clean_id, clean_optional, clean_text, table
from monitor.storage.outbox import OutboxQueries
from monitor.storage.reporting import ReportQueries

ConversationKey = tuple[str, str]
"""A conversation's identity: ``(source, conversation)``."""

AnyRow = Row[*tuple[Any, ...]]
"""A result row of any shape (rows are read by column name)."""


@dataclass(frozen=True, slots=True)
class SourceState:
    """A source's resume point and health, as last stored."""

    name: str
    kind: str
    cursor: dict[str, Any] | None
    watermark: datetime | None
    last_poll_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    failing_since: datetime | None
    degraded: bool


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one ingest stored: how many events were new, and the conversations they hit."""

    new_events: int
    conversations: frozenset[str]
    events: tuple[Event, ...] = ()
    """The new events as stored (as :meth:`Store.load_events` would return them), for
    :meth:`Store.complete_events`; empty when the store cannot vouch for them."""


@dataclass(frozen=True, slots=True)
class EvaluationRecord:
    """One conversation's evaluation, to be saved: its folded attributes, policy, clocks."""

    key: ConversationKey
    conversation: Conversation
    policy: str | None
    clocks: tuple[Clock, ...]


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """An alert to deliver, idempotent on ``key`` (a second item with the key is dropped)."""

    key: str
    target: str
    kind: str
    payload: dict[str, Any]
    created_at: datetime


_WRITE = "replywatch_write"
"""Execution option marking a connection whose transactions take the write lock."""

_MIGRATION_LOCK = 0x7265706C7977
"""PostgreSQL advisory lock held while checking or migrating the schema ("replyw")."""

_BUSY_TIMEOUT_MS = 10_000
_CHUNK = 500
"""Conversations per ``IN`` query: far below SQLite's 32766 variables, few round trips."""

_ERROR_LIMIT = 2000
"""Longest stored ``last_error``: an error message is a line, not a page."""

_SENSITIVE_QUERY_KEYS = ("password", "passfile", "sslpassword", "sslkey", "secret", "token")

_ID_CHUNK = 900
"""Event ids per duplicate-check query (SQLite takes 32766 variables; PostgreSQL more)."""

_sources = table("sources")
_conversations = table("conversations")
_events = table("events")
_clocks = table("clocks")
_transitions = table("clock_transitions")


def migrations_config() -> Config:
    """Return the Alembic config of the store's migrations, built in code (no alembic.ini)."""
    config = Config()
    location = str(Path(__file__).resolve().parent / "migrations")
    # Config values go through configparser interpolation, where "%" is special.
    config.set_main_option("script_location", location.replace("%", "%%"))
    return config


def _head_and_known(config: Config) -> tuple[str, frozenset[str]]:
    """Return the head revision and every revision this code knows."""
    script = ScriptDirectory.from_config(config)
    head = script.get_current_head()
    if head is None:  # pragma: no cover - the package always ships 0001
        raise StorageError("replywatch ships no schema migrations")
    return head, frozenset(s.revision for s in script.walk_revisions())


def _first_line(text_: str) -> str:
    """Return the first non-empty line of an error text, stripped."""
    for line in text_.splitlines():
        if line.strip():
            return line.strip()
    return text_.strip() or "unknown error"


def _reason(err: BaseException, secret: str | None) -> str:
    """Return a one-line reason for a database error, with no secret in it."""
    origin = err.orig if isinstance(err, DBAPIError) and err.orig is not None else err
    line = _first_line(str(origin))
    if secret:
        line = line.replace(secret, "***")
    return line


def _display_url(url: URL) -> str:
    """Return ``url`` fit to print: no password, no secret query parameter."""
    query = {
        key: value
        for key, value in url.query.items()
        if not any(word in key.lower() for word in _SENSITIVE_QUERY_KEYS)
    }
    # URL.set() ignores None, so the password is dropped by building the URL anew.
    shown = URL.create(
        url.drivername,
        username=url.username,
        host=url.host,
        port=url.port,
        database=url.database,
        query=query,
    )
    return shown.render_as_string(hide_password=False)


def _parse_url(raw: str) -> tuple[URL, str, str | None]:
    """Return the engine URL, its display form and its password, or raise StorageError."""
    try:
        url = make_url(raw.strip())
    except (ArgumentError, ValueError) as err:
        scheme = raw.split("://", 1)[0] if "://" in raw else ""
        shown = f"{scheme}://…" if scheme.isidentifier() else "the configured database URL"
        raise StorageError(f"cannot open database {shown}: not a database URL") from err
    display = _display_url(url)
    password = url.password if isinstance(url.password, str) else None
    backend = url.get_backend_name()
    if backend in ("postgres", "postgresql"):
        if url.drivername in ("postgres", "postgresql"):
            url = url.set(drivername="postgresql+psycopg")
        if "connect_timeout" not in url.query:
            url = url.update_query_dict({"connect_timeout": "10"})
    elif backend != "sqlite":
        raise StorageError(
            f"cannot open database {display}: unsupported database "
            f"{backend!r} (use sqlite:///PATH or postgresql://...)"
        )
    return url, display, password


def _json_dumps(value: Any) -> str:
    """Serialize JSON compactly; anything JSON cannot express becomes its ``str()``."""
    return json.dumps(
        value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str
    )


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """Configure a new SQLite connection: WAL, busy timeout, FKs, manual transactions."""
    # pysqlite's own transaction handling would BEGIN (deferred) on its own schedule;
    # turning it off lets the "begin" hook below choose BEGIN or BEGIN IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    """Start a transaction: IMMEDIATE for writers, so they queue instead of deadlocking."""
    if connection.get_execution_options().get(_WRITE):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        connection.exec_driver_sql("BEGIN")


def _in_memory(url: URL) -> bool:
    """True for an SQLite database that lives in one connection's memory."""
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _create_engine(url: URL) -> Engine:
    """Create the engine for ``url`` with the settings of its backend."""
    if url.get_backend_name() == "sqlite":
        memory = _in_memory(url)
        engine = create_engine(
            url,
            json_serializer=_json_dumps,
            connect_args={"check_same_thread": False, "timeout": _BUSY_TIMEOUT_MS / 1000},
            # An in-memory database lives in one connection: every user must share it.
            poolclass=StaticPool if memory else None,
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return create_engine(url, json_serializer=_json_dumps, pool_pre_ping=True)


def _optional_instant(value: Any) -> datetime | None:
    """Parse an ISO instant from a JSON snapshot; None stays None."""
    return None if value is None else parse_instant(str(value))


def _clock_from_json(data: Mapping[str, Any]) -> Clock:
    """Return the clock of a transition's snapshot (the form of ``Clock.to_json``)."""
    priority = data.get("priority")
    return Clock(
        source=str(data["source"]),
        conversation=str(data["conversation"]),
        policy=str(data["policy"]),
        metric=Metric(data["metric"]),
        cycle=int(data["cycle"]),
        state=ClockState(data["status"]),
        started_at=parse_instant(str(data["started_at"])),
        due_at=_optional_instant(data.get("due_at")),
        stopped_at=_optional_instant(data.get("stopped_at")),
        target_seconds=int(data["target_seconds"]),
        elapsed_seconds=int(data["elapsed_seconds"]),
        paused_seconds=int(data["paused_seconds"]),
        priority=None if priority is None else Priority(priority),
        at_risk_at=_optional_instant(data.get("at_risk_at")),
        reasons=tuple(str(reason) for reason in data.get("reasons") or ()),
        # Snapshots written before these fields existed have neither key.
        stopped_by=data.get("stopped_by"),
        assignee=data.get("assignee"),
    )


def _conversation_from_row(row: AnyRow) -> Conversation:
    """Return the domain conversation of a ``conversations`` row."""
    return Conversation(
        source=row.source,
        id=row.conversation,
        status=None if row.status is None else Status(row.status),
        priority=None if row.priority is None else Priority(row.priority),
        assignee=row.assignee,
        group=row.group,
        tags=tuple(str(tag) for tag in row.tags or ()),
        channel=row.channel,
        url=row.url,
        customer=row.customer,
        subject=row.subject,
        dismissed=bool(row.dismissed),
    )


def _source_from_row(row: AnyRow) -> SourceState:
    """Return the domain state of a ``sources`` row."""
    return SourceState(
        name=row.name,
        kind=row.kind,
        cursor=None if row.cursor is None else dict(row.cursor),
        watermark=row.watermark,
        last_poll_at=row.last_poll_at,
        last_success_at=row.last_success_at,
        last_error=row.last_error,
        last_error_at=row.last_error_at,
        failing_since=row.failing_since,
        degraded=bool(row.degraded),
    )


def _by_source(keys: Sequence[ConversationKey]) -> dict[str, list[str]]:
    """Group conversation keys by source, keeping their order and dropping repeats."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for source, conversation in dict.fromkeys(keys):
        grouped[source].append(conversation)
    return grouped


class Store(OutboxQueries, BoardQueries, ReportQueries, ClusterQueries):
    """The replywatch store: one object per process, safe to share between threads.

    Every write method is one transaction: it either happens entirely or raises
    :class:`StorageError` (any database failure, one line, no secret) and changes
    nothing. Methods refuse naive datetimes with ``ValueError``.
    """

    display_url: str
    """The database URL fit to print (no password)."""
    dialect: str
    """``"sqlite"`` or ``"postgresql"``."""

    def __init__(
        self, engine: Engine, display_url: str, secret: str | None, url: str | None = None
    ) -> None:
        """Wrap an engine; use :meth:`open`, which also checks the schema."""
        self._engine = engine
        self._url = url
        self._secret = secret
        self.display_url = display_url
        self.dialect = engine.dialect.name
        self._insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        self._codec = bulk.Codec(self.dialect)
        # The hot paths use the driver's cursor directly; its errors are translated too.
        self._driver_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        self._event_insert = bulk.event_insert(self.dialect)
        self._conversation_touch = bulk.conversation_touch(self.dialect)
        self._source_polled = bulk.source_polled(self.dialect)
        self._conversation_summary = bulk.conversation_summary(self.dialect)
        self._clock_upsert = bulk.clock_upsert(self.dialect)
        self._transition_insert = bulk.transition_insert(self.dialect)
        self._config = migrations_config()
        self._migrated_from: str | None = None
        self._migrated = False
        # ingest_seq of conversations as load_events saw them: save_evaluations clears
        # `dirty` only if no ingest touched the conversation in between.
        self._seen_seq: dict[ConversationKey, int] = {}
        self._seen_lock = threading.Lock()

    # -- opening and schema ---------------------------------------------------------------

    @classmethod
    def open(cls, url: str, *, upgrade: bool = True) -> Store:
        """Open the store at ``url``, checking its schema.

        An empty or older database is migrated to this code's head revision, unless
        ``upgrade`` is False, in which case it is refused. A database at a revision
        this code does not know (a newer replywatch migrated it) is always refused.

        Raises:
            StorageError: the database is unreachable, refused, or at an unusable schema.
        """
        engine_url, display, secret = _parse_url(url)
        try:
            engine = _create_engine(engine_url)
        except (ArgumentError, NoSuchModuleError, ImportError) as err:
            raise StorageError(f"cannot open database {display}: {_first_line(str(err))}") from err
        store = cls(engine, display, secret, None if _in_memory(engine_url) else url)
        try:
            store._check_schema(upgrade=upgrade)
        except SQLAlchemyError as err:
            engine.dispose()
            raise StorageError(f"cannot open database {display}: {_reason(err, secret)}") from err
        except BaseException:
            engine.dispose()
            raise
        return store

    @property
    def shared_url(self) -> str | None:
        """The URL another process opens this same database with (None: in memory, not
        shareable). It holds the password, if any: pass it on, never print it."""
        return self._url

    def close(self) -> None:
        """Release every connection; the store cannot be used afterwards."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        """Return the store itself, closed when the ``with`` block ends."""
        return self

    def __exit__(self, *_exc: object) -> None:
        """Close the store."""
        self.close()

    def _current_revision(self, connection: Connection) -> str | None:
        """Return the schema revision stored in the database (None: no schema)."""
        return MigrationContext.configure(connection).get_current_revision()

    def _refuse_unknown(self, current: str | None, head: str, known: frozenset[str]) -> None:
        """Refuse a database migrated by a newer replywatch."""
        if current is not None and current not in known:
            raise StorageError(
                f"{self.display_url}: database is at schema {current}, newer than this "
                f"replywatch ({head}); upgrade replywatch"
            )

    def _check_schema(self, *, upgrade: bool) -> None:
        """Check the schema at open; migrate it to head if allowed and needed."""
        head, known = _head_and_known(self._config)
        with self._connect(write=False) as connection, connection.begin():
            current = self._current_revision(connection)
        self._refuse_unknown(current, head, known)
        if current == head:
            return
        if not upgrade:
            found = "empty (no replywatch schema)" if current is None else f"at schema {current}"
            raise StorageError(
                f"{self.display_url}: database is {found}, behind this replywatch ({head}); "
                "run `replywatch db upgrade`"
            )
        self._migrate()

    def _migrate(self) -> str | None:
        """Migrate to head in one write transaction; return the revision found before."""
        head, known = _head_and_known(self._config)
        with self._connect(write=True) as connection, connection.begin():
            if self.dialect == "postgresql":
                # Several workers may start at once: one migrates, the others then see head.
                connection.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            current = self._current_revision(connection)
            self._refuse_unknown(current, head, known)
            if current != head:
                self._config.attributes["connection"] = connection
                try:
                    command.upgrade(self._config, "head")
                finally:
                    del self._config.attributes["connection"]
                self._migrated_from, self._migrated = current, True
        return current

    def upgrade(self) -> tuple[str | None, str]:
        """Migrate the schema to head; return ``(from revision, to revision)``.

        ``from`` is the revision before the latest migration this store ran, in
        :meth:`open` or here (None: the database was empty), so ``Store.open(url)``
        followed by ``upgrade()`` reports what opening did; when this store never
        migrated anything, both are the current revision.

        Raises:
            StorageError: the database is unreachable or at a newer, unknown schema.
        """
        head, _known = _head_and_known(self._config)
        with self._translate("upgrading the schema"):
            current = self._migrate()
        if current != head:
            return current, head
        return (self._migrated_from if self._migrated else head), head

    # -- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _connect(self, *, write: bool) -> Iterator[Connection]:
        """Yield a connection; on SQLite a writer's transactions are BEGIN IMMEDIATE."""
        with self._engine.connect() as connection:
            if write:
                connection.execution_options(**{_WRITE: True})
            elif self.dialect == "postgresql":
                # Reads spanning several queries see one snapshot, as on SQLite.
                connection.execution_options(isolation_level="REPEATABLE READ")
            yield connection

    @contextmanager
    def _translate(self, doing: str) -> Iterator[None]:
        """Turn any database failure into a one-line StorageError naming the store."""
        try:
            yield
        except (SQLAlchemyError, self._driver_error) as err:
            raise StorageError(
                f"{self.display_url}: {doing} failed: {_reason(err, self._secret)}"
            ) from err

    @contextmanager
    def _write(self, doing: str) -> Iterator[Connection]:
        """Yield a connection inside one write transaction, committed on success."""
        with (
            self._translate(doing),
            self._connect(write=True) as connection,
            connection.begin(),
        ):
            yield connection

    @contextmanager
    def _read(self, doing: str) -> Iterator[Connection]:
        """Yield a connection inside one read transaction."""
        with (
            self._translate(doing),
            self._connect(write=False) as connection,
            connection.begin(),
        ):
            yield connection

    def _select_in(
        self,
        connection: Connection,
        columns: str,
        table_name: str,
        keys: Sequence[ConversationKey],
    ) -> Iterator[Sequence[Any]]:
        """Yield the rows of ``table_name`` for the conversations ``keys``, one query
        per source and chunk of conversations."""
        for source, conversations in _by_source(keys).items():
            for chunk in bulk.in_chunks(conversations, _CHUNK):
                sql = bulk.select_in(self.dialect, columns, table_name, len(chunk))
                parameters = bulk.in_parameters(self.dialect, source, chunk)
                yield from self._fetch(connection, sql, parameters)

    @staticmethod
    def _fetch(connection: Connection, sql: str, parameters: Sequence[Any]) -> list[Any]:
        """Run a query on the driver's cursor; return its rows as plain tuples."""
        cursor = connection.connection.cursor()
        try:
            cursor.execute(sql, parameters)
            return list(cursor.fetchall())
        finally:
            cursor.close()

    @staticmethod
    def _execute(connection: Connection, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run a statement on the driver's cursor once per row; return the rows changed."""
        cursor = connection.connection.cursor()
        try:
            if len(rows) == 1:
                cursor.execute(sql, rows[0])
            else:
                cursor.executemany(sql, rows)
            return int(cursor.rowcount)
        finally:
            cursor.close()

    # -- sources --------------------------------------------------------------------------

    def register_sources(self, sources: Sequence[tuple[str, str]]) -> None:
        """Make sure every ``(name, kind)`` has a row; an existing row keeps its state."""
        if not sources:
            return
        rows = [{"name": name, "kind": kind} for name, kind in dict(sources).items()]
        statement = self._insert(_sources)
        statement = statement.on_conflict_do_update(
            index_elements=[_sources.c.name], set_={"kind": statement.excluded.kind}
        )
        with self._write("registering sources") as connection:
            connection.execute(statement, rows)

    def source_state(self, name: str) -> SourceState:
        """Return the stored state of source ``name``.

        Raises:
            StorageError: no such source is registered.
        """
        with self._read("reading a source") as connection:
            row = connection.execute(select(_sources).where(_sources.c.name == name)).first()
        if row is None:
            raise StorageError(f"{self.display_url}: source {name!r} is not registered")
        return _source_from_row(row)

    def sources(self) -> list[SourceState]:
        """Return every registered source, by name."""
        with self._read("reading sources") as connection:
            rows = connection.execute(select(_sources).order_by(_sources.c.name)).all()
        return [_source_from_row(row) for row in rows]

    # -- ingest ---------------------------------------------------------------------------

    def ingest(
        self,
        source: str,
        events: Sequence[Event],
        cursor: Mapping[str, Any],
        watermark: datetime | None,
        *,
        now: datetime,
    ) -> IngestResult:
        """Store one poll's events with the cursor and watermark that cover them.

        One transaction: events are inserted idempotently on ``(source, id)``; every
        conversation that got a new event is marked dirty; the cursor is replaced; the
        watermark moves forward only (None keeps it); the source is marked healthy.
        ``conversations`` lists the conversations that got a new event.

        Raises:
            ValueError: an event of another source, or a naive datetime.
            StorageError: the source is not registered, or the database failed.
        """
        now = require_utc(now, "now")
        if watermark is not None:
            watermark = require_utc(watermark, "watermark")
        codec = self._codec
        batch = codec.event_rows(source, events, now)
        polled = self._source_polled.row(
            {
                "p_name": source,
                "p_cursor": bulk.json_text(thaw(cursor)),
                "p_now": codec.to_driver(now),
                "p_watermark": codec.optional(watermark),
            }
        )
        with self._write(f"storing events of {source!r}") as connection:
            self._fence(connection, [source])
            self._notify(connection, "sources", source)
            if self._execute(connection, self._source_polled.sql, [polled]) == 0:
                raise StorageError(f"{self.display_url}: source {source!r} is not registered")
            fresh, inserted = self._insert_new_events(connection, source, batch)
            if not fresh:
                return IngestResult(0, frozenset())
            rows = [row for row, _item in fresh]
            span: dict[str, datetime] = {}  # the first new event of each conversation
            ends: dict[str, datetime] = {}  # and the last
            for row, item in fresh:
                at = item.at
                conversation = row[bulk.CONVERSATION_INDEX]
                first = span.get(conversation)
                if first is None:
                    span[conversation] = ends[conversation] = at
                elif at < first:
                    span[conversation] = at
                elif at > ends[conversation]:
                    ends[conversation] = at
            self._execute(
                connection,
                self._conversation_touch.sql,
                [
                    (
                        source,
                        conversation,
                        codec.to_driver(first),
                        codec.to_driver(ends[conversation]),
                    )
                    for conversation, first in span.items()
                ],
            )
            self._notify(connection, "events", source, span)
        # An insert that a concurrent writer's same ids beat stored their events, not these.
        stored = (
            tuple(codec.stored_event(row, item) for row, item in fresh)
            if inserted == len(rows)
            else ()
        )
        return IngestResult(inserted if inserted >= 0 else len(rows), frozenset(span), stored)

    def _insert_new_events(
        self,
        connection: Connection,
        source: str,
        batch: Mapping[str, tuple[tuple[Any, ...], Event]],
    ) -> tuple[list[tuple[tuple[Any, ...], Event]], int]:
        """Insert the events of ``batch`` not stored yet; return them and the rows inserted.

        Most batches are all new (a backfill, a busy page): they are inserted at once,
        under a savepoint. Only when an id was stored already is that undone, the stored
        ids looked up and the others inserted, so the common case skips the lookup.
        """
        items = list(batch.values())
        if not items:
            return [], 0
        cursor = connection.connection.cursor()
        try:
            cursor.execute("SAVEPOINT replywatch_ingest")
            inserted = self._execute(connection, self._event_insert.sql, [r for r, _ in items])
            if inserted == len(items):
                cursor.execute("RELEASE SAVEPOINT replywatch_ingest")
                return items, inserted
            cursor.execute("ROLLBACK TO SAVEPOINT replywatch_ingest")
            cursor.execute("RELEASE SAVEPOINT replywatch_ingest")
        finally:
            cursor.close()
        known = self._known_event_ids(connection, source, list(batch))
        fresh = [item for event_id, item in batch.items() if event_id not in known]
        if not fresh:
            return [], 0
        return fresh, self._execute(connection, self._event_insert.sql, [r for r, _ in fresh])

    def _known_event_ids(
        self, connection: Connection, source: str, event_ids: Sequence[str]
    ) -> set[str]:
        """Return which of ``event_ids`` of ``source`` are stored already."""
        known: set[str] = set()
        for chunk in bulk.in_chunks(event_ids, _ID_CHUNK):
            if self.dialect == "postgresql":
                sql = "SELECT event_id FROM events WHERE source = %s AND event_id = ANY(%s)"
                parameters: tuple[Any, ...] = (source, chunk)
            else:
                marks = ", ".join("?" * len(chunk))
                sql = f"SELECT event_id FROM events WHERE source = ? AND event_id IN ({marks})"
                parameters = (source, *chunk)
            known.update(row[0] for row in self._fetch(connection, sql, parameters))
        return known

    def record_failure(
        self,
        source: str,
        error: str,
        *,
        degraded: bool,
        now: datetime,
        decide: Callable[[datetime], Sequence[OutboxItem]] | None = None,
    ) -> bool:
        """Record a failed poll; return True if the source was healthy until now.

        ``failing_since`` keeps the first failure of a run of failures, so the runner
        can log a failing source once, not on every poll. When the source starts failing,
        ``decide(failing_since)`` gives its alerts, queued in the same transaction.

        Raises:
            StorageError: the source is not registered, or the database failed.
        """
        now = require_utc(now, "now")
        with self._write(f"recording a failure of {source!r}") as connection:
            self._fence(connection, [source])
            self._notify(connection, "sources", source)
            row = connection.execute(
                select(_sources.c.failing_since).where(_sources.c.name == source).with_for_update()
            ).first()
            if row is None:
                raise StorageError(f"{self.display_url}: source {source!r} is not registered")
            was_healthy = row.failing_since is None
            connection.execute(
                _sources.update()
                .where(_sources.c.name == source)
                .values(
                    last_error=clean_text(error)[:_ERROR_LIMIT],
                    last_error_at=now,
                    failing_since=now if was_healthy else row.failing_since,
                    degraded=degraded,
                    last_poll_at=now,
                )
            )
            if was_healthy and decide is not None:
                self._enqueue(connection, decide(now))
        return was_healthy

    # -- evaluation -----------------------------------------------------------------------

    def dirty_conversations(
        self, source: str | None = None, limit: int = 5000
    ) -> list[ConversationKey]:
        """Return up to ``limit`` conversations with events not evaluated yet."""
        statement = select(_conversations.c.source, _conversations.c.conversation).where(
            _conversations.c.dirty
        )
        if source is not None:
            statement = statement.where(_conversations.c.source == source)
        statement = statement.order_by(_conversations.c.source, _conversations.c.conversation)
        with self._read("listing dirty conversations") as connection:
            rows = connection.execute(statement.limit(limit)).all()
        return [(row.source, row.conversation) for row in rows]

    def dirty_sources(self) -> set[str]:
        """Return the sources that have conversations with events not evaluated yet."""
        statement = select(_conversations.c.source).where(_conversations.c.dirty).distinct()
        with self._read("listing dirty sources") as connection:
            return set(connection.execute(statement).scalars())

    def due_conversations(self, source: str, until: datetime) -> list[ConversationKey]:
        """Return the conversations of ``source`` with an open clock due to change by ``until``.

        A clock is due once the instant it changes state by itself has come: a running
        clock's ``at_risk_at`` (else ``due_at``), an at-risk or overdue clock's ``due_at``.
        An overdue clock stays due until an evaluation confirms it (SLA.md §6).
        """
        until = require_utc(until, "until")
        statement = (
            select(_clocks.c.conversation)
            .where(_clocks.c.source == source, _clocks.c.wake_at <= until)
            .distinct()
            .order_by(_clocks.c.conversation)
        )
        with self._read("listing due conversations") as connection:
            rows = connection.execute(statement).all()
        return [(source, row.conversation) for row in rows]

    def next_deadline(self, source: str, after: datetime) -> datetime | None:
        """Return the earliest instant after ``after`` at which an open clock of ``source``
        changes state by itself (its at_risk_at or due_at), or None."""
        after = require_utc(after, "after")
        statement = select(func.min(_clocks.c.wake_at)).where(
            _clocks.c.source == source, _clocks.c.wake_at > after
        )
        with self._read("finding the next deadline") as connection:
            value = connection.execute(statement).scalar()
        return value if isinstance(value, datetime) else None

    def load_events(self, keys: Sequence[ConversationKey]) -> dict[ConversationKey, list[Event]]:
        """Return the events of each conversation in ``keys``, sorted by ``Event.sort_key``.

        Every key is in the result (an unknown conversation has no events). One query
        per source and chunk of conversations.
        """
        stored = {key: _stored_key(key) for key in keys}
        found: dict[ConversationKey, list[Event]] = {key: [] for key in stored.values()}
        seen: dict[ConversationKey, int] = {}
        codec = self._codec
        with self._read("loading events") as connection:
            # The sequence is read before the events: a racing ingest then leaves the
            # conversation dirty rather than marked clean with events unseen.
            for source, conversation, sequence in self._select_in(
                connection, "source, conversation, ingest_seq", "conversations", list(found)
            ):
                seen[(source, conversation)] = sequence
            for row in self._select_in(connection, _EVENT_SELECT, "events", list(found)):
                found[(row[0], row[2])].append(codec.event(row))
        for events in found.values():
            events.sort(key=_sort_key)
        with self._seen_lock:
            self._seen_seq.update(seen)
        return {key: found[stored_key] for key, stored_key in stored.items()}

    def complete_events(
        self, keys: Sequence[ConversationKey], fresh: Mapping[ConversationKey, Sequence[Event]]
    ) -> dict[ConversationKey, list[Event]]:
        """Return what :meth:`load_events` does, reading only what ``fresh`` does not hold.

        ``fresh`` holds events as ingests stored them (``IngestResult.events``) by stored
        conversation key. A conversation that has as many stored events as distinct fresh
        ones has no others (ids are unique, and the fresh ones are stored): its events
        are taken from ``fresh``; the others are read from the database.
        """
        stored = {key: _stored_key(key) for key in keys}
        found: dict[ConversationKey, list[Event]] = {key: [] for key in stored.values()}
        seen: dict[ConversationKey, int] = {}
        codec = self._codec
        with self._read("loading events") as connection:
            # The sequence is read first, as in load_events.
            for source, conversation, sequence in self._select_in(
                connection, "source, conversation, ingest_seq", "conversations", list(found)
            ):
                seen[(source, conversation)] = sequence
            counts = dict(self._event_counts(connection, list(found)))
            missing: list[ConversationKey] = []
            for key, events in found.items():
                known = fresh.get(key, ())
                if known and counts.get(key) == len({event.id for event in known}):
                    events.extend(known)
                else:
                    missing.append(key)
            if missing:
                for row in self._select_in(connection, _EVENT_SELECT, "events", missing):
                    found[(row[0], row[2])].append(codec.event(row))
        for events in found.values():
            events.sort(key=_sort_key)
        with self._seen_lock:
            self._seen_seq.update(seen)
        return {key: found[stored_key] for key, stored_key in stored.items()}

    def _event_counts(
        self, connection: Connection, keys: Sequence[ConversationKey]
    ) -> Iterator[tuple[ConversationKey, int]]:
        """Yield how many events each of ``keys`` has stored (none: not yielded)."""
        for source, conversations in _by_source(keys).items():
            for chunk in bulk.in_chunks(conversations, _CHUNK):
                sql = bulk.select_in(self.dialect, "conversation, count(*)", "events", len(chunk))
                parameters = bulk.in_parameters(self.dialect, source, chunk)
                for conversation, count in self._fetch(
                    connection, f"{sql} GROUP BY conversation", parameters
                ):
                    yield (source, conversation), int(count)

    def save_evaluations(
        self,
        records: Sequence[EvaluationRecord],
        *,
        now: datetime,
        decide: Callable[[Sequence[Transition]], Sequence[OutboxItem]] | None = None,
    ) -> list[Transition]:
        """Save evaluations; return the clock transitions they make, in record order.

        One transaction: each conversation's summary is upserted (``is_open``: an open
        clock, or a status neither solved nor closed and not dismissed; a thread without
        statuses, such as a mention, that a policy covers is open only while a clock of it
        is open or breached and still waiting for its reply, so an answered mention leaves
        the queue and a follow-up brings it back; ``next_deadline``: the earliest instant
        one of its open clocks changes state by itself), its clocks upserted and the ones
        no longer produced deleted, a transition appended for every clock whose state
        changed (``previous`` None for a new clock) and for every breach that was waiting
        for its reply and has stopped (``breached`` to ``breached`` with ``stopped_at``
        set: its recovery), and ``dirty`` cleared unless an ingest touched the
        conversation since :meth:`load_events` read it. The evaluation of a conversation
        that an ingest has touched since is not saved at all (it stays dirty): another
        evaluation, of its newer events, may have been saved meanwhile, and a transition
        back to an older state would be a lie. ``decide`` turns the transitions
        into outbox items, inserted in the same transaction and idempotent on their key;
        if it raises, nothing is saved.

        Raises:
            ValueError: a clock of another conversation, a duplicate key, a naive datetime.
            StorageError: the database failed.
        """
        now = require_utc(now, "now")
        if not records:
            return []
        keys = [_stored_key(record.key) for record in records]
        if len(set(keys)) != len(keys):
            raise ValueError("save_evaluations got the same conversation twice")
        for record in records:
            for clock in record.clocks:
                if (clock.source, clock.conversation) != record.key:
                    raise ValueError(f"clock {clock.key!r} does not belong to {record.key!r}")
            if len({clock.key for clock in record.clocks}) != len(record.clocks):
                raise ValueError(f"duplicate clock in the evaluation of {record.key!r}")
        summaries = [self._summary_row(record, now) for record in records]
        updated_at = self._codec.to_driver(now)

        def rows_of(records: Sequence[EvaluationRecord]) -> list[tuple[Any, ...]]:
            return [
                self._codec.clock_row(clock, updated_at, record.conversation.channel)
                for record in records
                for clock in record.clocks
            ]

        clock_rows = rows_of(records)
        with self._seen_lock:
            seen = {key: self._seen_seq.pop(key, -1) for key in keys}
        for summary in summaries:
            summary["seen_seq"] = seen[(summary["source"], summary["conversation"])]
        with self._write("saving evaluations") as connection:
            self._fence(connection, {source for source, _conversation in keys})
            # An evaluation of events that an ingest has added to since they were read
            # (in another process, alongside) is not saved: it could undo a newer one.
            stale = {
                (source, conversation)
                for source, conversation, sequence in self._select_in(
                    connection, "source, conversation, ingest_seq", "conversations", keys
                )
                if seen[(source, conversation)] not in (-1, sequence)
            }
            if stale:
                records = [r for r, key in zip(records, keys, strict=True) if key not in stale]
                summaries = [s for s in summaries if (s["source"], s["conversation"]) not in stale]
                clock_rows = rows_of(records)
                keys = [key for key in keys if key not in stale]
            previous: dict[tuple[str, str, str, int], ClockState] = {}
            # Breaches stored as still waiting for their reply: if one stops now, the
            # state stays breached, yet the recovery is a transition of its own.
            open_breaches: set[tuple[str, str, str, int]] = set()
            for source, conversation, metric, cycle, state, stopped_at in self._select_in(
                connection,
                "source, conversation, metric, cycle, state, stopped_at",
                "clocks",
                keys,
            ):
                previous[(source, conversation, metric, cycle)] = ClockState(state)
                if state == ClockState.BREACHED and stopped_at is None:
                    open_breaches.add((source, conversation, metric, cycle))
            self._execute(
                connection,
                self._conversation_summary.sql,
                [self._conversation_summary.row(summary) for summary in summaries],
            )
            transitions = self._save_clocks(
                connection, records, clock_rows, previous, now, open_breaches=open_breaches
            )
            if decide is not None and transitions:
                self._enqueue(connection, decide(transitions))
            for source, conversations in _by_source(keys).items():
                self._notify(connection, "clocks", source, conversations)
        return transitions

    def _summary_row(self, record: EvaluationRecord, now: datetime) -> dict[str, Any]:
        """Return the driver values of a conversation's summary, by column name."""
        conversation = record.conversation
        open_clocks = [clock for clock in record.clocks if clock.state in OPEN_STATES]
        wakes = [wake for wake in map(bulk.wake_at, open_clocks) if wake is not None]
        at_stake = any(
            clock.stopped_at is None and clock.state in AT_STAKE_STATES for clock in record.clocks
        )
        settled = (
            conversation.status in SOLVED_STATUSES
            or conversation.dismissed
            or (conversation.status is None and record.policy is not None and not at_stake)
        )
        codec = self._codec
        source, conversation_id = _stored_key(record.key)
        return {
            "source": source,
            "conversation": conversation_id,
            "status": None if conversation.status is None else str(conversation.status),
            "priority": None if conversation.priority is None else str(conversation.priority),
            "assignee": clean_optional(conversation.assignee),
            "group": clean_optional(conversation.group),
            "tags": bulk.json_text(list(conversation.tags)) if conversation.tags else None,
            "channel": clean_optional(conversation.channel),
            "url": clean_optional(conversation.url),
            "customer": clean_optional(conversation.customer),
            "subject": clean_optional(conversation.subject),
            "dismissed": conversation.dismissed,
            "policy": clean_optional(record.policy),
            "is_open": bool(open_clocks) or not settled,
            "next_deadline": codec.optional(min(wakes, default=None)),
            "dirty": False,
            "ingest_seq": 0,
            "evaluated_at": codec.to_driver(now),
        }

    def _save_clocks(
        self,
        connection: Connection,
        records: Sequence[EvaluationRecord],
        clock_rows: list[tuple[Any, ...]],
        previous: Mapping[tuple[str, str, str, int], ClockState],
        now: datetime,
        *,
        open_breaches: AbstractSet[tuple[str, str, str, int]] = frozenset(),
    ) -> list[Transition]:
        """Upsert produced clocks, delete the others, log and return the state changes.

        A breach in ``open_breaches`` (stored as not stopped) that stops now makes a
        transition too, from ``breached`` to ``breached``: its recovery.
        """
        transitions: list[Transition] = []
        produced: set[tuple[str, str, str, int]] = set()
        for record in records:
            for clock in record.clocks:
                key = (clock.source, clean_id(clock.conversation), str(clock.metric), clock.cycle)
                produced.add(key)
                before = previous.get(key)
                recovered = key in open_breaches and clock.stopped_at is not None
                if before is not clock.state or recovered:
                    transitions.append(Transition(clock=clock, previous=before, at=now))
        stale = [key for key in previous if key not in produced]
        if stale:
            columns = _clocks.c
            connection.execute(
                delete(_clocks).where(
                    columns.source == bindparam("b_source"),
                    columns.conversation == bindparam("b_conversation"),
                    columns.metric == bindparam("b_metric"),
                    columns.cycle == bindparam("b_cycle"),
                ),
                [
                    {"b_source": s, "b_conversation": c, "b_metric": m, "b_cycle": n}
                    for s, c, m, n in stale
                ],
            )
        if clock_rows:
            self._execute(connection, self._clock_upsert.sql, clock_rows)
        if transitions:
            at = self._codec.to_driver(now)
            self._execute(
                connection,
                self._transition_insert.sql,
                [
                    self._transition_insert.row(
                        {
                            "source": item.clock.source,
                            "conversation": clean_id(item.clock.conversation),
                            "metric": str(item.clock.metric),
                            "cycle": item.clock.cycle,
                            "previous": None if item.previous is None else str(item.previous),
                            "state": str(item.clock.state),
                            "at": at,
                            "clock": bulk.json_text(item.clock.to_json()),
                        }
                    )
                    for item in transitions
                ],
            )
        return transitions

    # -- reads for the CLI, board and reports ---------------------------------------------

    def _clocks_where(self, *conditions: Any, doing: str) -> list[Clock]:
        """Return the clocks matching ``conditions``, soonest due first."""
        columns = _clocks.c
        statement = (
            select(*(_clocks.c[name] for name in bulk.CLOCK_COLUMNS))
            .where(*conditions)
            .order_by(
                columns.due_at.is_(None),
                columns.due_at,
                columns.source,
                columns.conversation,
                columns.metric,
                columns.cycle,
            )
        )
        with self._read(doing) as connection:
            rows = connection.execute(statement).all()
        return [_clock_from_row(row) for row in rows]

    def open_clocks(self) -> list[Clock]:
        """Return every open clock (running, at risk, paused, overdue), soonest due first."""
        return self._clocks_where(
            _clocks.c.state.in_([str(state) for state in OPEN_STATES]), doing="reading clocks"
        )

    def clocks(
        self,
        *,
        source: str | None = None,
        stopped_from: datetime | None = None,
        stopped_to: datetime | None = None,
    ) -> list[Clock]:
        """Return clocks, optionally of one source and stopped in ``[stopped_from, stopped_to)``.

        With either bound given, clocks that have not stopped are left out.
        """
        conditions = []
        if source is not None:
            conditions.append(_clocks.c.source == source)
        if stopped_from is not None:
            conditions.append(_clocks.c.stopped_at >= require_utc(stopped_from, "stopped_from"))
        if stopped_to is not None:
            conditions.append(_clocks.c.stopped_at < require_utc(stopped_to, "stopped_to"))
        return self._clocks_where(*conditions, doing="reading clocks")

    def state_counts(self) -> dict[ClockState, int]:
        """Return how many clocks that have not stopped are in each state.

        That is every open clock, and the breaches still waiting for their reply.
        """
        statement = (
            select(_clocks.c.state, func.count())
            .where(_clocks.c.stopped_at.is_(None))
            .group_by(_clocks.c.state)
        )
        with self._read("counting clocks") as connection:
            rows = connection.execute(statement).all()
        return {ClockState(state): int(count) for state, count in rows}

    def conversation(
        self, key: ConversationKey
    ) -> tuple[Conversation, list[Event], list[Clock]] | None:
        """Return a conversation with its events (sorted) and clocks, or None if unknown."""
        key = _stored_key(key)
        source, conversation_id = key
        with self._read("reading a conversation") as connection:
            row = connection.execute(
                select(_conversations).where(
                    _conversations.c.source == source,
                    _conversations.c.conversation == conversation_id,
                )
            ).first()
            if row is None:
                return None
            event_rows = list(self._select_in(connection, _EVENT_SELECT, "events", [key]))
            clock_rows = connection.execute(
                select(*(_clocks.c[name] for name in bulk.CLOCK_COLUMNS))
                .where(_clocks.c.source == source, _clocks.c.conversation == conversation_id)
                .order_by(_clocks.c.metric, _clocks.c.cycle)
            ).all()
        events = sorted(map(self._codec.event, event_rows), key=_sort_key)
        return _conversation_from_row(row), events, [_clock_from_row(r) for r in clock_rows]

    def transitions(self, *, since: datetime | None = None, limit: int = 200) -> list[Transition]:
        """Return the latest ``limit`` transitions at or after ``since``, oldest first."""
        statement = select(_transitions).order_by(_transitions.c.id.desc()).limit(limit)
        if since is not None:
            statement = statement.where(_transitions.c.at >= require_utc(since, "since"))
        with self._read("reading transitions") as connection:
            rows = connection.execute(statement).all()
        return [
            Transition(
                clock=_clock_from_json(row.clock),
                previous=None if row.previous is None else ClockState(row.previous),
                at=row.at,
            )
            for row in reversed(rows)
        ]

    def counts(self) -> dict[str, int]:
        """Return the number of events, conversations, open conversations and open clocks."""
        open_states = [str(state) for state in OPEN_STATES]
        queries = {
            "events": select(func.count()).select_from(_events),
            "conversations": select(func.count()).select_from(_conversations),
            "open_conversations": select(func.count())
            .select_from(_conversations)
            .where(_conversations.c.is_open),
            "open_clocks": select(func.count())
            .select_from(_clocks)
            .where(_clocks.c.state.in_(open_states)),
        }
        with self._read("counting") as connection:
            return {
                name: int(connection.execute(query).scalar() or 0)
                for name, query in queries.items()
            }


_EVENT_SELECT = ", ".join(column for column in bulk.EVENT_COLUMNS if column != "ingested_at")
"""The columns :meth:`bulk.Codec.event` reads, in its order."""


def _stored_key(key: ConversationKey) -> ConversationKey:
    """Return the key a conversation is stored under (its id cleaned and bounded)."""
    return (key[0], clean_id(key[1]))


def _sort_key(item: Event) -> tuple[datetime, int, str]:
    """Return an event's total order (SLA.md §1)."""
    return item.sort_key


def _clock_from_row(row: AnyRow) -> Clock:
    """Return the domain clock of a row selected as ``bulk.CLOCK_COLUMNS`` through Core."""
    return Clock(
        source=row.source,
        conversation=row.conversation,
        policy=row.policy,
        metric=Metric(row.metric),
        cycle=row.cycle,
        state=ClockState(row.state),
        started_at=row.started_at,
        due_at=row.due_at,
        stopped_at=row.stopped_at,
        target_seconds=row.target_seconds,
        elapsed_seconds=row.elapsed_seconds,
        paused_seconds=row.paused_seconds,
        priority=None if row.priority is None else Priority(row.priority),
        at_risk_at=row.at_risk_at,
        reasons=tuple(str(reason) for reason in row.reasons or ()),
        stopped_by=row.stopped_by,
        assignee=row.assignee,
    )
