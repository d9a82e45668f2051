"""Create the whole schema: sources, conversations, events, clocks, transitions, outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from monitor.storage.models import SafeJSON, UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# SQLite only makes an INTEGER PRIMARY KEY the fast, auto-assigned rowid; BIGINT would not.
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _instant(name: str, *, nullable: bool = True) -> sa.Column[object]:
    """Return an instant column (timestamptz, or sortable ISO text on SQLite)."""
    return sa.Column(name, UTCDateTime(), nullable=nullable)


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "sources",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("cursor", SafeJSON(), nullable=True),
        _instant("watermark"),
        _instant("last_poll_at"),
        _instant("last_success_at"),
        sa.Column("last_error", sa.Text(), nullable=True),
        _instant("last_error_at"),
        _instant("failing_since"),
        sa.Column("degraded", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "conversations",
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("conversation", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=True),
        sa.Column("priority", sa.String(), nullable=True),
        sa.Column("assignee", sa.Text(), nullable=True),
        sa.Column("group", sa.Text(), nullable=True),
        sa.Column("tags", SafeJSON(), nullable=True),
        sa.Column("channel", sa.Text(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("customer", sa.Text(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("dismissed", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("policy", sa.String(), nullable=True),
        sa.Column("is_open", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        _instant("first_event_at"),
        _instant("last_event_at"),
        _instant("next_deadline"),
        sa.Column("dirty", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("ingest_seq", sa.BigInteger(), server_default="0", nullable=False),
        _instant("evaluated_at"),
        sa.ForeignKeyConstraint(
            ["source"], ["sources.name"], name="fk_conversations_source", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("source", "conversation"),
    )
    op.create_index(
        "ix_conversations_dirty",
        "conversations",
        ["source", "conversation"],
        sqlite_where=sa.text("dirty = 1"),
        postgresql_where=sa.text("dirty"),
    )
    op.create_index("ix_conversations_open_deadline", "conversations", ["is_open", "next_deadline"])
    op.create_table(
        "events",
        sa.Column("id", ROW_ID, nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("conversation", sa.String(), nullable=False),
        _instant("at", nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=True),
        sa.Column("public", sa.Boolean(), nullable=True),
        sa.Column("status", sa.String(), nullable=True),
        sa.Column("fields", SafeJSON(), nullable=True),
        sa.Column("channel", sa.Text(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("author", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        _instant("ingested_at", nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "event_id", name="uq_events_source_event_id"),
    )
    op.create_index("ix_events_conversation_at", "events", ["source", "conversation", "at"])
    op.create_table(
        "clocks",
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("conversation", sa.String(), nullable=False),
        sa.Column("metric", sa.String(), nullable=False),
        sa.Column("cycle", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("policy", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("priority", sa.String(), nullable=True),
        _instant("started_at", nullable=False),
        _instant("due_at"),
        _instant("stopped_at"),
        _instant("at_risk_at"),
        sa.Column("target_seconds", sa.BigInteger(), nullable=False),
        sa.Column("elapsed_seconds", sa.BigInteger(), nullable=False),
        sa.Column("paused_seconds", sa.BigInteger(), nullable=False),
        sa.Column("reasons", SafeJSON(), nullable=True),
        _instant("wake_at"),
        _instant("updated_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["source", "conversation"],
            ["conversations.source", "conversations.conversation"],
            name="fk_clocks_conversation",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("source", "conversation", "metric", "cycle"),
    )
    op.create_index("ix_clocks_wake", "clocks", ["source", "wake_at"])
    op.create_index("ix_clocks_state_due", "clocks", ["state", "due_at"])
    op.create_index("ix_clocks_stopped", "clocks", ["stopped_at"])
    op.create_table(
        "clock_transitions",
        sa.Column("id", ROW_ID, nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("conversation", sa.String(), nullable=False),
        sa.Column("metric", sa.String(), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("previous", sa.String(), nullable=True),
        sa.Column("state", sa.String(), nullable=False),
        _instant("at", nullable=False),
        sa.Column("clock", SafeJSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_clock_transitions_at", "clock_transitions", ["at"])
    op.create_table(
        "alert_outbox",
        sa.Column("id", ROW_ID, nullable=False),
        sa.Column("idempotency_key", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        _instant("created_at", nullable=False),
        sa.Column("payload", SafeJSON(), nullable=False),
        sa.Column("status", sa.String(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        _instant("next_attempt_at"),
        _instant("delivered_at"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key", name="uq_alert_outbox_idempotency_key"),
    )
    op.create_index("ix_alert_outbox_due", "alert_outbox", ["status", "next_attempt_at"])


def downgrade() -> None:
    """Revert this revision: drop everything, children first."""
    for name in (
        "alert_outbox",
        "clock_transitions",
        "clocks",
        "events",
        "conversations",
        "sources",
    ):
        op.drop_table(name)
