"""Provides the tables of the store (SQLModel) and the column types both engines share.

Rows never leave ``monitor.storage``: :mod:`monitor.storage.store` converts them to the
domain types of :mod:`monitor.events` at its boundary. The hot paths (ingest, clock
upserts) use the :class:`~sqlalchemy.Table` objects with SQLAlchemy Core, never ORM
instances; the SQLModel classes are the schema's single declaration.

Two column types make SQLite and PostgreSQL behave alike:

- :class:`UTCDateTime` keeps aware UTC instants to the microsecond: ``timestamptz`` on
  PostgreSQL, fixed-width ISO 8601 text (``2026-01-05T09:30:00.000250Z``) on SQLite,
  which sorts in SQL exactly as the instants do. Naive datetimes are refused.
- :class:`SafeJSON` is JSON (``jsonb`` on PostgreSQL) whose strings went through
  :func:`clean_json`, so nothing a member of the public wrote can break an insert.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Dialect,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP
from sqlalchemy.types import TypeDecorator, TypeEngine
from sqlmodel import Field, SQLModel

REPLACEMENT = "\ufffd"
"""What a NUL byte or a lone surrogate becomes (PostgreSQL text cannot hold ``\\x00``)."""


def clean_text(value: str) -> str:
    """Return ``value`` storable by every engine: NUL and lone surrogates become U+FFFD.

    PostgreSQL refuses ``\\x00`` in ``text`` and ``jsonb``, and no driver can encode a
    lone surrogate (``json.loads('"\\\\ud800"')`` makes one) as UTF-8. Both engines get
    the same replacement so a store's content does not depend on its engine.
    """
    if "\x00" in value:
        value = value.replace("\x00", REPLACEMENT)
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # utf-16 with surrogatepass joins valid pairs and lets "replace" catch lone ones.
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


ID_LIMIT = 255
"""Longest id stored as is: ids are indexed, and PostgreSQL cannot index a huge value."""


def clean_id(value: str) -> str:
    """Return :func:`clean_text` of an id, shortened past ``ID_LIMIT`` to a stable digest.

    The shortening is deterministic (so re-polls still deduplicate) and idempotent
    (a stored id maps to itself), so ids read back can be passed in again.
    """
    value = clean_text(value)
    if len(value) <= ID_LIMIT:
        return value
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]
    return f"{value[:200]}~{digest}"


NAME_LIMIT = 64
"""Longest name (agent, assignee, channel) kept whole in the report's covering index."""


def clean_name(value: str | None) -> str | None:
    """Return :func:`clean_text` of a name, shortened past ``NAME_LIMIT`` to a stable digest.

    Names live in an index, and a PostgreSQL index entry has a size limit: a name
    longer than any real one is cut, and the digest keeps two long names apart.
    """
    if value is None:
        return None
    value = clean_text(value)
    if len(value) <= NAME_LIMIT:
        return value
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]
    return f"{value[: NAME_LIMIT - 14]}…~{digest}"


def clean_optional(value: str | None) -> str | None:
    """Return :func:`clean_text` of ``value``; None stays None."""
    return None if value is None else clean_text(value)


def clean_json(value: Any) -> Any:
    """Return plain JSON data with every string cleaned; NaN and infinities become None.

    Mappings become dicts with string keys, sequences become lists, and anything JSON
    cannot express becomes its ``str()``: a payload is data, never a reason to crash.
    """
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {clean_text(str(key)): clean_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [clean_json(item) for item in value]
    return clean_text(str(value))


def format_utc(value: datetime) -> str:
    """Return the SQLite text form of an aware instant: fixed width, so it sorts right."""
    if value.tzinfo is not UTC:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"refusing naive datetime {value.isoformat()}: store aware UTC only")
        value = value.astimezone(UTC)
    # "YYYY-MM-DDTHH:MM:SS.ffffffZ", the UTC isoformat to the microsecond; formatted by
    # hand, which is twice as fast: every stored instant passes here.
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031
        value.year, value.month, value.day,
        value.hour, value.minute, value.second, value.microsecond,
    )


def parse_utc(value: str) -> datetime:
    """Return the aware UTC instant of a stored SQLite text timestamp."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC instant with microseconds: ``timestamptz`` or fixed-width ISO text."""

    impl = String(27)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Use ``timestamptz`` on PostgreSQL and the sortable text form elsewhere."""
        if dialect.name == "postgresql":
            return dialect.type_descriptor(TIMESTAMP(timezone=True))
        return dialect.type_descriptor(String(27))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        """Refuse naive datetimes; send UTC to the database."""
        if value is None:
            return None
        if dialect.name == "postgresql":
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(
                    f"refusing naive datetime {value.isoformat()}: store aware UTC only"
                )
            return value.astimezone(UTC)
        return format_utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Return aware UTC, whatever the session's time zone."""
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return parse_utc(str(value))


class SafeJSON(TypeDecorator[Any]):
    """JSON (``jsonb`` on PostgreSQL) whose content went through :func:`clean_json`."""

    impl = JSON(none_as_null=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Use ``jsonb`` on PostgreSQL: indexable, and it refuses what we must not store."""
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB(none_as_null=True))
        return dialect.type_descriptor(JSON(none_as_null=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        """Clean the value so every engine accepts it; None is SQL NULL."""
        return None if value is None else clean_json(value)


# SQLite only makes an INTEGER PRIMARY KEY the fast, auto-assigned rowid; BIGINT would not.
RowId = BigInteger().with_variant(Integer(), "sqlite")


def _instant(*, nullable: bool = True) -> Any:
    """Return a SQLModel field for an instant column."""
    return Field(sa_column=Column(UTCDateTime(), nullable=nullable))


def _json() -> Any:
    """Return a SQLModel field for a nullable JSON column."""
    return Field(sa_column=Column(SafeJSON(), nullable=True))


def _text() -> Any:
    """Return a SQLModel field for a nullable text column (untrusted, unbounded)."""
    return Field(sa_column=Column(Text(), nullable=True))


class SourceRow(SQLModel, table=True):
    """A configured source: its cursor, watermark and health."""

    __tablename__ = "sources"

    name: str = Field(sa_column=Column(String(), primary_key=True))
    kind: str = Field(sa_column=Column(String(), nullable=False))
    cursor: dict[str, Any] | None = _json()
    watermark: datetime | None = _instant()
    last_poll_at: datetime | None = _instant()
    last_success_at: datetime | None = _instant()
    last_error: str | None = _text()
    last_error_at: datetime | None = _instant()
    failing_since: datetime | None = _instant()
    degraded: bool = Field(
        sa_column=Column(Boolean(), nullable=False, server_default=text("false"))
    )


class ConversationRow(SQLModel, table=True):
    """A conversation: its folded attributes, evaluation summary and dirty flag.

    ``ingest_seq`` counts ingests that brought it new events; an evaluation clears
    ``dirty`` only if no ingest happened since its events were loaded.
    """

    __tablename__ = "conversations"
    __table_args__ = (
        ForeignKeyConstraint(
            ["source"], ["sources.name"], name="fk_conversations_source", ondelete="CASCADE"
        ),
        Index(
            "ix_conversations_dirty",
            "source",
            "conversation",
            # Each engine's spelling of the filter its queries use, so the planner uses it.
            sqlite_where=text("dirty = 1"),
            postgresql_where=text("dirty"),
        ),
        Index("ix_conversations_open_deadline", "is_open", "next_deadline"),
    )

    source: str = Field(sa_column=Column(String(), primary_key=True))
    conversation: str = Field(sa_column=Column(String(), primary_key=True))
    status: str | None = Field(sa_column=Column(String(), nullable=True))
    priority: str | None = Field(sa_column=Column(String(), nullable=True))
    assignee: str | None = _text()
    group: str | None = _text()
    tags: list[str] | None = _json()
    channel: str | None = _text()
    url: str | None = _text()
    customer: str | None = _text()
    subject: str | None = _text()
    dismissed: bool = Field(
        sa_column=Column(Boolean(), nullable=False, server_default=text("false"))
    )
    policy: str | None = Field(sa_column=Column(String(), nullable=True))
    is_open: bool = Field(sa_column=Column(Boolean(), nullable=False, server_default=text("true")))
    first_event_at: datetime | None = _instant()
    last_event_at: datetime | None = _instant()
    next_deadline: datetime | None = _instant()
    dirty: bool = Field(sa_column=Column(Boolean(), nullable=False, server_default=text("true")))
    ingest_seq: int = Field(sa_column=Column(BigInteger(), nullable=False, server_default="0"))
    evaluated_at: datetime | None = _instant()


class EventRow(SQLModel, table=True):
    """One normalized event; ``(source, event_id)`` is how re-polls deduplicate."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("source", "event_id", name="uq_events_source_event_id"),
        Index("ix_events_conversation_at", "source", "conversation", "at"),
    )

    id: int | None = Field(default=None, sa_column=Column(RowId, primary_key=True))
    source: str = Field(sa_column=Column(String(), nullable=False))
    event_id: str = Field(sa_column=Column(String(), nullable=False))
    conversation: str = Field(sa_column=Column(String(), nullable=False))
    at: datetime = _instant(nullable=False)
    kind: str = Field(sa_column=Column(String(), nullable=False))
    actor: str | None = Field(sa_column=Column(String(), nullable=True))
    public: bool | None = Field(sa_column=Column(Boolean(), nullable=True))
    status: str | None = Field(sa_column=Column(String(), nullable=True))
    fields: dict[str, Any] | None = _json()
    channel: str | None = _text()
    url: str | None = _text()
    author: str | None = _text()
    text: str | None = _text()
    ingested_at: datetime = _instant(nullable=False)


REPORT_INDEX_COLUMNS = (
    "stopped_at",
    "state",
    "policy",
    "source",
    "channel",
    "priority",
    "metric",
    "elapsed_seconds",
    "target_seconds",
    "due_at",
    "conversation",
    "cycle",
    "stopped_by",
    "assignee",
)
"""``ix_clocks_report``: the period first, then every column the report reads."""


class ClockRow(SQLModel, table=True):
    """A conversation's clock as of its last evaluation.

    ``wake_at`` is the instant the clock changes state by itself with no new event
    (running: at_risk_at, else due_at; at_risk and overdue: due_at; otherwise None):
    the deadline queries read it alone, through one index.

    ``channel`` (the conversation's), ``stopped_by`` and ``assignee`` are for the
    weekly report; with them ``ix_clocks_report`` covers every column the report reads
    of a stopped clock, so a week of a million clocks is one ordered index range, never
    a million table lookups. It holds stopped clocks only, which rarely change, so
    running clocks (rewritten at every evaluation) cost it nothing. The untrusted names
    in it are bounded (:func:`clean_name`) so that no index entry grows past what
    PostgreSQL accepts. ``ix_clocks_open_breaches`` finds the breaches still running.
    """

    __tablename__ = "clocks"
    __table_args__ = (
        ForeignKeyConstraint(
            ["source", "conversation"],
            ["conversations.source", "conversations.conversation"],
            name="fk_clocks_conversation",
            ondelete="CASCADE",
        ),
        Index("ix_clocks_wake", "source", "wake_at"),
        Index("ix_clocks_state_due", "state", "due_at"),
        Index("ix_clocks_stopped", "stopped_at"),
        Index(
            "ix_clocks_report",
            *REPORT_INDEX_COLUMNS,
            sqlite_where=text("stopped_at IS NOT NULL"),
            postgresql_where=text("stopped_at IS NOT NULL"),
        ),
        Index(
            "ix_clocks_open_breaches",
            "state",
            "due_at",
            sqlite_where=text("stopped_at IS NULL"),
            postgresql_where=text("stopped_at IS NULL"),
        ),
    )

    source: str = Field(sa_column=Column(String(), primary_key=True))
    conversation: str = Field(sa_column=Column(String(), primary_key=True))
    metric: str = Field(sa_column=Column(String(), primary_key=True))
    cycle: int = Field(sa_column=Column(Integer(), primary_key=True, autoincrement=False))
    policy: str = Field(sa_column=Column(String(), nullable=False))
    state: str = Field(sa_column=Column(String(), nullable=False))
    priority: str | None = Field(sa_column=Column(String(), nullable=True))
    started_at: datetime = _instant(nullable=False)
    due_at: datetime | None = _instant()
    stopped_at: datetime | None = _instant()
    at_risk_at: datetime | None = _instant()
    target_seconds: int = Field(sa_column=Column(BigInteger(), nullable=False))
    elapsed_seconds: int = Field(sa_column=Column(BigInteger(), nullable=False))
    paused_seconds: int = Field(sa_column=Column(BigInteger(), nullable=False))
    reasons: list[str] | None = _json()
    wake_at: datetime | None = _instant()
    updated_at: datetime = _instant(nullable=False)
    stopped_by: str | None = _text()
    """The author of the message that stopped the clock (untrusted, :func:`clean_name`)."""
    assignee: str | None = _text()
    """The conversation's assignee at the stop, or at the evaluation while running."""
    channel: str | None = _text()
    """The conversation's channel (untrusted, :func:`clean_name`)."""


class ClockTransitionRow(SQLModel, table=True):
    """An append-only record of a clock's state change, with the clock as it was."""

    __tablename__ = "clock_transitions"
    __table_args__ = (Index("ix_clock_transitions_at", "at"),)

    id: int | None = Field(default=None, sa_column=Column(RowId, primary_key=True))
    source: str = Field(sa_column=Column(String(), nullable=False))
    conversation: str = Field(sa_column=Column(String(), nullable=False))
    metric: str = Field(sa_column=Column(String(), nullable=False))
    cycle: int = Field(sa_column=Column(Integer(), nullable=False))
    previous: str | None = Field(sa_column=Column(String(), nullable=True))
    state: str = Field(sa_column=Column(String(), nullable=False))
    at: datetime = _instant(nullable=False)
    clock: dict[str, Any] = Field(sa_column=Column(SafeJSON(), nullable=False))


class AlertOutboxRow(SQLModel, table=True):
    """An alert waiting to be delivered (transactional outbox), idempotent on its key."""

    __tablename__ = "alert_outbox"
    __table_args__ = (
        UniqueConstraint("idempotency_key", name="uq_alert_outbox_idempotency_key"),
        Index("ix_alert_outbox_due", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, sa_column=Column(RowId, primary_key=True))
    idempotency_key: str = Field(sa_column=Column(String(), nullable=False))
    target: str = Field(sa_column=Column(String(), nullable=False))
    kind: str = Field(sa_column=Column(String(), nullable=False))
    created_at: datetime = _instant(nullable=False)
    payload: dict[str, Any] = Field(sa_column=Column(SafeJSON(), nullable=False))
    status: str = Field(
        sa_column=Column(String(), nullable=False, server_default=text("'pending'"))
    )
    attempts: int = Field(sa_column=Column(Integer(), nullable=False, server_default="0"))
    next_attempt_at: datetime | None = _instant()
    delivered_at: datetime | None = _instant()
    last_error: str | None = _text()


class WorkerRow(SQLModel, table=True):
    """A worker process sharing the sources of a PostgreSQL store (docs/deployment.md).

    ``id`` is also the key of the session advisory lock the worker holds while alive;
    ``fenced_writes`` counts its writes the database refused for a lost lease.
    """

    __tablename__ = "workers"

    id: int = Field(sa_column=Column(BigInteger(), primary_key=True, autoincrement=False))
    host: str = Field(sa_column=Column(String(), nullable=False))
    pid: int = Field(sa_column=Column(Integer(), nullable=False))
    started_at: datetime = _instant(nullable=False)
    heartbeat_at: datetime = _instant(nullable=False)
    fenced_writes: int = Field(
        sa_column=Column(BigInteger(), nullable=False, server_default="0")
    )


class SourceLeaseRow(SQLModel, table=True):
    """Who polls a source: the owning worker and the lease's epoch, bumped at each acquisition.

    A free lease has no owner. Every write for the source checks owner, epoch and
    expiry in its own transaction (fencing).
    """

    __tablename__ = "source_leases"
    __table_args__ = (
        ForeignKeyConstraint(
            ["source"], ["sources.name"], name="fk_source_leases_source", ondelete="CASCADE"
        ),
        Index("ix_source_leases_owner", "owner"),
    )

    source: str = Field(sa_column=Column(String(), primary_key=True))
    owner: int | None = Field(sa_column=Column(BigInteger(), nullable=True))
    epoch: int = Field(sa_column=Column(BigInteger(), nullable=False, server_default="0"))
    acquired_at: datetime | None = _instant()
    expires_at: datetime | None = _instant()


class JobClaimRow(SQLModel, table=True):
    """A scheduled job done once per period for the whole deployment (the weekly report)."""

    __tablename__ = "job_claims"

    job: str = Field(sa_column=Column(String(), primary_key=True))
    period: str = Field(sa_column=Column(String(), primary_key=True))
    claimed_at: datetime = _instant(nullable=False)
    claimed_by: str | None = _text()


metadata = SQLModel.metadata
"""The schema as this code expects it; migrations must produce exactly this."""


def table(name: str) -> Table:
    """Return the Core table ``name`` of the store's schema."""
    return metadata.tables[name]
