"""Add who stopped a clock, who held the conversation and its channel; the report's indexes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_COLUMNS = ("stopped_by", "assignee", "channel")
# Written out, not imported from the models: a migration is a snapshot of its schema.
_REPORT_INDEX = [
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
]


def upgrade() -> None:
    """Apply this revision: three nullable text columns and two partial indexes."""
    # Nullable with no default: adding them rewrites no row on either engine; the next
    # evaluation of a conversation fills them in.
    for name in _COLUMNS:
        op.add_column("clocks", sa.Column(name, sa.Text(), nullable=True))
    op.create_index(
        "ix_clocks_report",
        "clocks",
        _REPORT_INDEX,
        sqlite_where=sa.text("stopped_at IS NOT NULL"),
        postgresql_where=sa.text("stopped_at IS NOT NULL"),
    )
    op.create_index(
        "ix_clocks_open_breaches",
        "clocks",
        ["state", "due_at"],
        sqlite_where=sa.text("stopped_at IS NULL"),
        postgresql_where=sa.text("stopped_at IS NULL"),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_clocks_open_breaches", table_name="clocks")
    op.drop_index("ix_clocks_report", table_name="clocks")
    # SQLite cannot always drop a column in place: batch mode copies the table without it.
    with op.batch_alter_table("clocks") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
