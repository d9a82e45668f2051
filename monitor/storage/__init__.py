"""Provides the store: events, cursors, clocks and the alert outbox (SQLite or PostgreSQL).

The only package that imports SQLModel, SQLAlchemy or Alembic; everything it returns is
a domain type of :mod:`monitor.events` or one of the dataclasses below.
"""

from __future__ import annotations

from monitor.storage.cluster import (
    ChangeNotice,
    ClusterStatus,
    Lease,
    SourceStatus,
    WorkerSession,
    WorkerStatus,
    fenced,
)
from monitor.storage.store import (
    ConversationKey,
    EvaluationRecord,
    IngestResult,
    OutboxItem,
    SourceState,
    Store,
)

__all__ = [
    "ChangeNotice",
    "ClusterStatus",
    "ConversationKey",
    "EvaluationRecord",
    "IngestResult",
    "Lease",
    "OutboxItem",
    "SourceState",
    "SourceStatus",
    "Store",
    "WorkerSession",
    "WorkerStatus",
    "fenced",
]
