"""Provides the alert outbox queries: queueing, claiming, and settling alerts after a send.

An outbox row moves ``pending`` -> ``sending`` -> ``delivered`` or ``failed``, or back
to ``pending`` for a retry. The columns of the initial schema carry the whole protocol:

- ``attempts`` counts claims. A ``pending`` row with no attempt is fresh; a row with
  attempts belongs to a group that was tried and is retried as that same group.
- ``next_attempt_at`` is, for a fresh row, its creation; for a tried ``pending`` row,
  when its target may be tried again (back-off); for a ``sending`` row, the end of the
  claim's lease, which is also the claim's stamp: settling a claim only touches rows
  still carrying its stamp, so a worker whose lease ran out cannot settle rows another
  worker took over; for a ``delivered`` or ``failed`` row, when it was settled, which
  is what the per-target rate limit reads (through the ``(status, next_attempt_at)``
  index, so it never scans old rows).

Claiming is one write transaction per target: SQLite's ``BEGIN IMMEDIATE`` serializes
claimers; on PostgreSQL a transaction-scoped advisory lock on the target lets one
worker at a time decide for it (others skip it) and ``FOR UPDATE SKIP LOCKED`` keeps
any two claimers off the same rows. A target is skipped while a group of it is in
flight or backing off, or while it sent within its minimum interval, so its messages
go out one at a time, in order, at the platform's pace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from monitor.errors import StorageError
from monitor.events import Clock, Conversation, Priority, Status, require_utc
from monitor.storage import bulk
from monitor.storage.models import clean_id, clean_text, table

if TYPE_CHECKING:
    from monitor.storage.store import OutboxItem

_outbox = table("alert_outbox")
_sources = table("sources")
_clocks = table("clocks")
_conversations = table("conversations")
_events = table("events")

_OUTBOX_LOCK = 0x7277_6F62
"""First half of the PostgreSQL advisory lock key of a target's claims ("rwob")."""

_ERROR_LIMIT = 2000
_KEY_CHUNK = 500

PENDING, SENDING, DELIVERED, FAILED = "pending", "sending", "delivered", "failed"
_WAITING = (PENDING, SENDING)
_SETTLED = (DELIVERED, FAILED)


@dataclass(frozen=True, slots=True)
class ClaimedAlert:
    """One outbox row taken by a claim."""

    id: int
    key: str
    kind: str
    payload: dict[str, Any]
    created_at: datetime
    attempts: int
    """Claims of this row so far, this one included."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A group of one target's alerts taken for one send; ``stamp`` identifies the claim."""

    target: str
    stamp: datetime
    """The end of the lease: after it, another worker may take the rows over."""
    items: tuple[ClaimedAlert, ...]

    @property
    def ids(self) -> list[int]:
        """The outbox row ids of the claim."""
        return [item.id for item in self.items]


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """An outbox row as ``check`` and the board show it (its payload left out)."""

    key: str
    target: str
    kind: str
    status: str
    created_at: datetime
    attempts: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class BreachToRepeat:
    """A confirmed breach still open, with what an alert says about its conversation."""

    clock: Clock
    conversation: Conversation
    last_customer_text: str | None


class OutboxQueries:
    """Mixed into Store: the alert outbox."""

    _engine: Engine
    _fence: Callable[[Connection, Iterable[str]], None]
    _codec: bulk.Codec
    dialect: str
    display_url: str

    if TYPE_CHECKING:

        def _write(self, doing: str) -> AbstractContextManager[Connection]: ...

        def _read(self, doing: str) -> AbstractContextManager[Connection]: ...

    # -- queueing -------------------------------------------------------------------------

    def _enqueue(self, connection: Connection, items: Sequence[OutboxItem]) -> None:
        """Insert outbox items in ``connection``'s transaction; a key already queued is dropped."""
        rows = []
        for item in items:
            created_at = require_utc(item.created_at, f"outbox item {item.key!r} created_at")
            rows.append(
                {
                    "idempotency_key": clean_id(item.key),
                    "target": clean_text(item.target),
                    "kind": clean_text(item.kind),
                    "created_at": created_at,
                    "payload": item.payload,
                    "status": PENDING,
                    "attempts": 0,
                    "next_attempt_at": created_at,
                }
            )
        if rows:
            insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
            connection.execute(
                insert(_outbox).on_conflict_do_nothing(index_elements=[_outbox.c.idempotency_key]),
                rows,
            )

    def enqueue(self, items: Sequence[OutboxItem]) -> None:
        """Queue alerts in one transaction; an item whose key is already queued is dropped.

        Raises:
            StorageError: the database failed.
        """
        if items:
            with self._write("queueing alerts") as connection:
                self._enqueue(connection, items)

    def source_recovered(
        self,
        source: str,
        *,
        now: datetime,
        decide: Callable[[datetime, str | None], Sequence[OutboxItem]] | None = None,
    ) -> bool:
        """Mark a failing source healthy again; return False if it was not failing.

        ``decide(failing_since, last_error)`` gives the alerts of the recovery, queued in
        the same transaction, so a crash cannot keep the recovery and lose its alert.

        Raises:
            StorageError: the source is not registered, or the database failed.
        """
        require_utc(now, "now")
        columns = _sources.c
        with self._write(f"recording the recovery of {source!r}") as connection:
            self._fence(connection, [source])
            row = connection.execute(
                select(columns.failing_since, columns.last_error)
                .where(columns.name == source)
                .with_for_update()
            ).first()
            if row is None:
                raise StorageError(f"{self.display_url}: source {source!r} is not registered")
            if row.failing_since is None:
                return False
            connection.execute(
                _sources.update()
                .where(columns.name == source)
                .values(failing_since=None, degraded=False)
            )
            if decide is not None:
                self._enqueue(connection, decide(row.failing_since, row.last_error))
        return True

    # -- claiming and settling ------------------------------------------------------------

    def waiting_targets(self) -> list[str]:
        """Return the targets with alerts pending or being sent (cheap: the status index)."""
        statement = (
            select(_outbox.c.target)
            .where(_outbox.c.status.in_(_WAITING))
            .distinct()
            .order_by(_outbox.c.target)
        )
        with self._read("listing waiting alerts") as connection:
            return [row.target for row in connection.execute(statement)]

    def claim_alerts(
        self,
        target: str,
        *,
        now: datetime,
        group_window: float,
        min_interval: float = 0.0,
        lease: float = 120.0,
        limit: int = 100,
    ) -> Claim | None:
        """Take the next group of ``target``'s alerts to send, or None if none is ready.

        A group that was tried before is retried first, as the same group (so a message
        resent after an uncertain attempt carries the same items and key). Otherwise the
        fresh alerts form a group once the oldest has waited ``group_window`` seconds:
        every fresh alert due by then, oldest first, up to ``limit``. Nothing is taken
        while a group of the target is in flight or backing off, or while the target was
        sent to less than ``min_interval`` seconds ago. The rows become ``sending`` with
        one more attempt and a lease of ``lease`` seconds, whose end is the claim's stamp.

        Raises:
            StorageError: the database failed.
        """
        now = require_utc(now, "now")
        c = _outbox.c
        waiting = and_(c.target == target, c.status.in_(_WAITING))
        with self._write(f"claiming alerts for {target!r}") as connection:
            if self.dialect == "postgresql":
                locked = connection.execute(
                    select(func.pg_try_advisory_xact_lock(_OUTBOX_LOCK, func.hashtext(target)))
                ).scalar()
                if not locked:
                    return None
            busy = select(c.id).where(waiting, c.attempts > 0, c.next_attempt_at > now)
            if connection.execute(busy.limit(1)).first() is not None:
                return None
            if min_interval > 0:
                recent = select(c.id).where(
                    c.status.in_(_SETTLED),
                    c.next_attempt_at > now - timedelta(seconds=min_interval),
                    c.target == target,
                )
                if connection.execute(recent.limit(1)).first() is not None:
                    return None
            retry_at = connection.execute(
                select(func.min(c.next_attempt_at)).where(waiting, c.attempts > 0)
            ).scalar()
            if retry_at is not None:
                group = and_(waiting, c.attempts > 0, c.next_attempt_at == retry_at)
            else:
                group = and_(
                    c.target == target,
                    c.status == PENDING,
                    c.attempts == 0,
                    c.next_attempt_at <= now,
                )
            statement = (
                select(c.id, c.idempotency_key, c.kind, c.payload, c.created_at, c.attempts)
                .where(group)
                .order_by(c.created_at, c.id)
                .limit(limit)
            )
            if self.dialect == "postgresql":
                statement = statement.with_for_update(skip_locked=True)
            rows = connection.execute(statement).all()
            if not rows:
                return None
            if retry_at is None and rows[0].created_at + timedelta(seconds=group_window) > now:
                return None
            stamp = now + timedelta(seconds=lease)
            ids = [row.id for row in rows]
            connection.execute(
                _outbox.update()
                .where(c.id.in_(ids))
                .values(status=SENDING, attempts=c.attempts + 1, next_attempt_at=stamp)
            )
        return Claim(
            target=target,
            stamp=stamp,
            items=tuple(
                ClaimedAlert(
                    id=row.id,
                    key=row.idempotency_key,
                    kind=row.kind,
                    payload=dict(self._codec.json_from(row.payload) or {}),
                    created_at=row.created_at,
                    attempts=row.attempts + 1,
                )
                for row in rows
            ),
        )

    def _settle(self, claim: Claim, doing: str, **values: Any) -> int:
        """Update the rows still held by ``claim``; return how many were."""
        c = _outbox.c
        with self._write(doing) as connection:
            result = connection.execute(
                _outbox.update()
                .where(c.id.in_(claim.ids), c.status == SENDING, c.next_attempt_at == claim.stamp)
                .values(**values)
            )
        return int(result.rowcount)

    def mark_delivered(self, claim: Claim, *, now: datetime) -> int:
        """Mark a claim's alerts delivered; return how many rows it still held.

        Raises:
            StorageError: the database failed.
        """
        now = require_utc(now, "now")
        return self._settle(
            claim,
            f"marking alerts for {claim.target!r} delivered",
            status=DELIVERED,
            delivered_at=now,
            next_attempt_at=now,
            last_error=None,
        )

    def retry_alerts(self, claim: Claim, *, retry_at: datetime, error: str) -> int:
        """Put a claim's alerts back as pending, to be retried together at ``retry_at``.

        Raises:
            StorageError: the database failed.
        """
        retry_at = require_utc(retry_at, "retry_at")
        return self._settle(
            claim,
            f"scheduling a retry for {claim.target!r}",
            status=PENDING,
            next_attempt_at=retry_at,
            last_error=clean_text(error)[:_ERROR_LIMIT],
        )

    def fail_alerts(self, claim: Claim, *, now: datetime, error: str) -> int:
        """Mark a claim's alerts failed for good with the platform's reason.

        Raises:
            StorageError: the database failed.
        """
        now = require_utc(now, "now")
        return self._settle(
            claim,
            f"marking alerts for {claim.target!r} failed",
            status=FAILED,
            next_attempt_at=now,
            last_error=clean_text(error)[:_ERROR_LIMIT],
        )

    def fail_unknown_targets(self, known: Sequence[str], *, now: datetime) -> int:
        """Fail the waiting alerts of targets no longer configured; return how many.

        Raises:
            StorageError: the database failed.
        """
        now = require_utc(now, "now")
        c = _outbox.c
        with self._write("failing alerts of removed targets") as connection:
            result = connection.execute(
                _outbox.update()
                .where(c.status.in_(_WAITING), c.target.not_in(list(known)))
                .values(
                    status=FAILED,
                    next_attempt_at=now,
                    last_error="no alert target of this name in the config",
                )
            )
        return int(result.rowcount)

    # -- reads ----------------------------------------------------------------------------

    def failed_alerts(self, limit: int = 50) -> list[OutboxEntry]:
        """Return the latest ``limit`` alerts that failed for good, newest first."""
        return self._entries(_outbox.c.status == FAILED, limit)

    def waiting_alerts(self, limit: int = 1000) -> list[OutboxEntry]:
        """Return up to ``limit`` alerts pending or being sent, oldest first."""
        return self._entries(_outbox.c.status.in_(_WAITING), limit, newest_first=False)

    def _entries(
        self, condition: Any, limit: int, *, newest_first: bool = True
    ) -> list[OutboxEntry]:
        c = _outbox.c
        order = (c.created_at.desc(), c.id.desc()) if newest_first else (c.created_at, c.id)
        statement = (
            select(
                c.idempotency_key,
                c.target,
                c.kind,
                c.status,
                c.created_at,
                c.attempts,
                c.last_error,
            )
            .where(condition)
            .order_by(*order)
            .limit(limit)
        )
        with self._read("reading the alert outbox") as connection:
            rows = connection.execute(statement).all()
        return [
            OutboxEntry(
                row.idempotency_key,
                row.target,
                row.kind,
                row.status,
                row.created_at,
                row.attempts,
                row.last_error,
            )
            for row in rows
        ]

    def outbox_counts(self) -> dict[str, int]:
        """Return how many outbox rows are in each status."""
        statement = select(_outbox.c.status, func.count()).group_by(_outbox.c.status)
        with self._read("counting alerts") as connection:
            return {status: int(count) for status, count in connection.execute(statement)}

    def sent_alerts(self, keys: Sequence[str]) -> dict[str, tuple[datetime, bool]]:
        """Return, for each of ``keys`` in the outbox, when it was created and if delivered."""
        stored = {clean_id(key): key for key in keys}
        found: dict[str, tuple[datetime, bool]] = {}
        c = _outbox.c
        with self._read("reading sent alerts") as connection:
            for chunk in bulk.in_chunks(list(stored), _KEY_CHUNK):
                rows = connection.execute(
                    select(c.idempotency_key, c.created_at, c.status).where(
                        c.idempotency_key.in_(chunk)
                    )
                )
                for row in rows:
                    found[stored[row.idempotency_key]] = (row.created_at, row.status == DELIVERED)
        return found

    def breaches_to_repeat(self) -> list[BreachToRepeat]:
        """Return every confirmed breach still waiting for its reply, with its context."""
        # Imported here: store.py mixes this class in, so it cannot be imported at the top.
        from monitor.storage.store import _clock_from_row

        clock, conversation, event = _clocks.c, _conversations.c, _events.c
        last_text = (
            select(event.text)
            .where(
                event.source == clock.source,
                event.conversation == clock.conversation,
                event.kind == "message",
                event.actor == "customer",
                event.public,
                event.text.is_not(None),
            )
            .order_by(event.at.desc(), event.event_id.desc())
            .limit(1)
            .scalar_subquery()
        )
        statement = (
            select(
                *(clock[name] for name in bulk.CLOCK_COLUMNS),
                *(conversation[name].label(f"c_{name}") for name in bulk.CONVERSATION_COLUMNS),
                last_text.label("last_text"),
            )
            .join_from(
                _clocks,
                _conversations,
                and_(
                    conversation.source == clock.source,
                    conversation.conversation == clock.conversation,
                ),
            )
            .where(clock.state == "breached", clock.stopped_at.is_(None))
            .order_by(clock.due_at, clock.source, clock.conversation, clock.metric, clock.cycle)
        )
        with self._read("reading open breaches") as connection:
            rows = connection.execute(statement).all()
        return [
            BreachToRepeat(
                clock=_clock_from_row(row),
                conversation=_conversation(row._mapping),
                last_customer_text=row.last_text,
            )
            for row in rows
        ]




def _conversation(row: Mapping[Any, Any]) -> Conversation:
    """Return the conversation of a joined row's ``c_``-labelled columns."""
    priority, status = row["c_priority"], row["c_status"]
    return Conversation(
        source=row["c_source"],
        id=row["c_conversation"],
        status=None if status is None else Status(status),
        priority=None if priority is None else Priority(priority),
        assignee=row["c_assignee"],
        group=row["c_group"],
        tags=tuple(str(tag) for tag in row["c_tags"] or ()),
        channel=row["c_channel"],
        url=row["c_url"],
        customer=row["c_customer"],
        subject=row["c_subject"],
        dismissed=bool(row["c_dismissed"]),
    )
