"""schema_compatibility: which code revisions may serve the schema as it is

Expand/contract migrations: a release whose migrations only expand the schema (new tables,
columns with defaults, indexes) declares `compatible_with_previous_code = True`, and the code
of the previous release stays ready against it (readiness reads this table), so a rolling
upgrade and `helm rollback` keep serving. `call-downloader migrate` rewrites the rows.

Revision ID: 0005_compat
Revises: 0004_queue
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_compat"
down_revision = "0004_queue"
branch_labels = None
depends_on = None
# A new table the previous code never reads.
compatible_with_previous_code = True


def upgrade() -> None:
    op.create_table(
        "schema_compatibility",
        sa.Column("code_revision", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("code_revision"),
    )


def downgrade() -> None:
    op.drop_table("schema_compatibility")
