"""The service_secrets table: secrets created once per database (the probe seed).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

The table is frozen here rather than imported from :mod:`imgprivacy.service.tables`, so later
changes to it do not change what this revision creates. Versions between the baseline and this
revision created the same table on start, outside the migrations: a database they served already
has it, with its secret, and keeps both.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from imgprivacy.errors import SchemaError

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

metadata = sa.MetaData()
service_secrets = sa.Table(
    "service_secrets",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(128), nullable=False),
)


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if not inspector.has_table(service_secrets.name):
        service_secrets.create(bind)
        return
    present = {column["name"] for column in inspector.get_columns(service_secrets.name)}
    missing = [column.name for column in service_secrets.columns if column.name not in present]
    if missing:
        raise SchemaError(
            f"The database holds a table {service_secrets.name!r} that is not the service's (it "
            f"lacks {', '.join(missing)}). Rename or drop that table, or point "
            "IMGPRIVACY_DATABASE_URL at another database."
        )


def downgrade() -> None:
    service_secrets.drop(op.get_bind())
