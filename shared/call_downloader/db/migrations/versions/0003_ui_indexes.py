"""ui: indexes for the operator UI's call list and dashboard

The call list sorts (and pages by keyset) on `received_at` or `updated_at` with `id` as the
tie-breaker; the dashboard's windows filter on `received_at`; a source's own list filters on
`source_id` and sorts on `received_at`.

Revision ID: 0003_ui
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003_ui"
down_revision = "0002"
branch_labels = None
depends_on = None
# Indexes only: the previous code runs unchanged on this schema.
compatible_with_previous_code = True


def upgrade() -> None:
    op.create_index("ix_calls_received_id", "calls", ["received_at", "id"], unique=False)
    op.create_index("ix_calls_updated_id", "calls", ["updated_at", "id"], unique=False)
    op.create_index("ix_calls_source_received", "calls", ["source_id", "received_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_calls_source_received", table_name="calls")
    op.drop_index("ix_calls_updated_id", table_name="calls")
    op.drop_index("ix_calls_received_id", table_name="calls")
