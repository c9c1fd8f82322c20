"""auth: indexes on the user of refresh tokens and API keys

Ending every session of a user (password reset, deactivation), purging a user's expired
refresh tokens at login and listing a user's keys all filter on `user_id`.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None
# Indexes only: the previous code runs unchanged on this schema.
compatible_with_previous_code = True


def upgrade() -> None:
    op.create_index(op.f("ix_refresh_tokens_user_id"), "refresh_tokens", ["user_id"], unique=False)
    op.create_index(op.f("ix_api_keys_user_id"), "api_keys", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_api_keys_user_id"), table_name="api_keys")
    op.drop_index(op.f("ix_refresh_tokens_user_id"), table_name="refresh_tokens")
