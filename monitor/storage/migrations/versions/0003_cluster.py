"""Add the cluster tables: workers, source leases, and once-per-period job claims.

Revision ID: 0003
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from monitor.storage.models import UTCDateTime

revision: str = "0003"
# At merge with 0002_clock_people this becomes "0002": the history stays one line.
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Apply this revision: three new tables, nothing existing is touched."""
    op.create_table(
        "workers",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
        sa.Column("fenced_writes", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "source_leases",
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("owner", sa.BigInteger(), nullable=True),
        sa.Column("epoch", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("acquired_at", UTCDateTime(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["source"], ["sources.name"], name="fk_source_leases_source", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("source"),
    )
    op.create_index("ix_source_leases_owner", "source_leases", ["owner"])
    op.create_table(
        "job_claims",
        sa.Column("job", sa.String(), nullable=False),
        sa.Column("period", sa.String(), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=False),
        sa.Column("claimed_by", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("job", "period"),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("job_claims")
    op.drop_index("ix_source_leases_owner", table_name="source_leases")
    op.drop_table("source_leases")
    op.drop_table("workers")
