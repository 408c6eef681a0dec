"""Each stored (and quarantined) model's breadth for the Guard's breadth gate.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

``breadth`` is the share of the service's probe digits a model claims at ``breadth_alpha`` (the
Guard's alpha when it was measured). Both are nullable: models stored before this revision get
NULL, which the service fills in when it starts with a probe set (see
:mod:`imgprivacy.service.breadth`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("guard_models", "quarantined_models")
COLUMNS = ("breadth", "breadth_alpha")


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    for table in TABLES:
        present = {c["name"] for c in inspector.get_columns(table)}
        missing = [column for column in COLUMNS if column not in present]  # adopted: may have
        if not missing:
            continue
        with op.batch_alter_table(table) as batch:  # SQLite: ALTER TABLE ... ADD COLUMN
            for column in missing:
                batch.add_column(sa.Column(column, sa.Double, nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            for column in COLUMNS:
                batch.drop_column(column)
