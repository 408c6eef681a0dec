"""The quarantined_models table: uploads refused by behavioural admission, kept for review.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

The table is frozen here rather than imported from :mod:`imgprivacy.service.tables`, so later
changes to it do not change what this revision creates. It is only written with the
``quarantine_refused`` setting; databases of earlier versions get it empty.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

metadata = sa.MetaData()
users = sa.Table("users", metadata, sa.Column("id", sa.Integer, primary_key=True))
quarantined_models = sa.Table(
    "quarantined_models",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "user_id",
        sa.Integer,
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("blob", sa.LargeBinary, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size_bytes", sa.Integer, nullable=False),
    sa.Column("hidden_dim", sa.Integer, nullable=False),
    sa.Column("error_mean", sa.Double, nullable=False),
    sa.Column("error_std", sa.Double, nullable=False),
    sa.Column("probe_claim", sa.Double, nullable=False),
    sa.Column("reason", sa.String(128), nullable=False),
    sa.Column("problems", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),  # naive UTC
    sa.UniqueConstraint("user_id", "name"),
)


def upgrade() -> None:
    quarantined_models.create(op.get_bind())


def downgrade() -> None:
    quarantined_models.drop(op.get_bind())
