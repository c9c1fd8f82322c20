"""queue_messages: the event transport when the database carries the events (embedded mode)

Revision ID: 0004_queue
Revises: 0003_ui
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_queue"
down_revision = "0003_ui"
branch_labels = None
depends_on = None
# A new table the previous code never reads.
compatible_with_previous_code = True


def upgrade() -> None:
    op.create_table(
        "queue_messages",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False,
            autoincrement=True,
        ),
        sa.Column("function", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dead", sa.Boolean(), nullable=False),
        sa.Column("dead_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_messages")),
    )
    op.create_index(
        "ix_queue_messages_due", "queue_messages", ["function", "dead", "available_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_queue_messages_due", table_name="queue_messages")
    op.drop_table("queue_messages")
