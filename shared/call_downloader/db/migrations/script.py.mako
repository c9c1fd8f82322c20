"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}
# Expand (True): the code of the previous revision still works on the schema after this one
# (added tables, nullable or defaulted columns, indexes), so it stays ready during a rolling
# upgrade and after a rollback. Contract (False): drops or renames something the previous
# code uses; ship it a release after the code stopped using it (docs/deploy.md).
compatible_with_previous_code = False


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
