"""Re-evaluate open threads without statuses: answered mentions are no longer open.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

Until this revision a conversation without statuses (a mention) that a policy covers
stayed open once answered, so the board listed it as waiting for good. The schema is
unchanged; such conversations stored as open are marked dirty, and the monitor's
evaluate-dirty job applies the new rule to each once it starts.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

# Written out, not imported from the models: a migration is a snapshot of its schema.
_conversations = sa.table(
    "conversations",
    sa.column("status", sa.String()),
    sa.column("policy", sa.String()),
    sa.column("is_open", sa.Boolean()),
    sa.column("dismissed", sa.Boolean()),
    sa.column("dirty", sa.Boolean()),
)


def upgrade() -> None:
    """Apply this revision: mark the open, covered conversations without status dirty."""
    columns = _conversations.c
    op.execute(
        _conversations.update()
        .where(
            columns.status.is_(None),
            columns.policy.is_not(None),
            columns.is_open.is_(sa.true()),
            columns.dismissed.is_(sa.false()),
        )
        .values(dirty=True)
    )


def downgrade() -> None:
    """Revert this revision: nothing to undo (an evaluation more is harmless)."""
