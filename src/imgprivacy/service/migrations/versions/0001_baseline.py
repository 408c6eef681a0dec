"""Baseline: the schema the service created on start before it had migrations.

Revision ID: 0001
Revises:
Create Date: 2026-12-01

The tables are frozen here rather than imported from :mod:`imgprivacy.service.tables`, so later
changes to those do not change what this revision creates. :func:`adopt` takes over a database
made by those earlier versions (see :func:`imgprivacy.service.migrations.upgrade_schema`).
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateIndex

from imgprivacy.errors import SchemaError

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

logger = logging.getLogger("imgprivacy.service.migrations")

metadata = sa.MetaData()


def _account_table(name: str) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True, index=True),
        sa.Column("created_at", sa.DateTime, nullable=False),  # naive UTC
    )


users = _account_table("users")
pending_users = _account_table("pending_users")
guard_models = sa.Table(
    "guard_models",
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
    sa.Column("revision", sa.Integer, nullable=False, index=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("user_id", "name"),
)
bank_state = sa.Table(
    "bank_state",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("revision", sa.Integer, nullable=False),
)
# User names are unique without regard to case (ASCII names: SQL lower() agrees with Python's).
NAME_KEYS = (
    sa.Index("uq_users_name_lower", sa.func.lower(users.c.name), unique=True),
    sa.Index("uq_pending_users_name_lower", sa.func.lower(pending_users.c.name), unique=True),
)


def upgrade() -> None:
    bind = op.get_bind()
    metadata.create_all(bind, checkfirst=False)
    bind.execute(bank_state.insert().values(id=1, revision=0))


def downgrade() -> None:
    metadata.drop_all(op.get_bind(), checkfirst=False)


def adopt(connection: Connection, *, url: str) -> None:
    """Bring a database made before migrations to this revision's schema (then it is stamped).

    Such a database may lack the tables and indexes that came later (registrations waiting for
    approval, case-insensitive name keys). They are added; a name key that the stored names
    prevent (two users differing only in case) is left out with a warning, as before: the
    storage also compares names without case in the transaction of every insert.

    Raises
    ------
    SchemaError
        A table named like one of the service's lacks some of its columns: the database belongs
        to something else. Nothing is changed.
    """
    inspector = sa.inspect(connection)
    problems = []
    for table in metadata.sorted_tables:
        if inspector.has_table(table.name):
            present = {column["name"] for column in inspector.get_columns(table.name)}
            missing = [column.name for column in table.columns if column.name not in present]
            if missing:
                problems.append(f"table {table.name!r} lacks {', '.join(missing)}")
    if problems:
        raise SchemaError(
            f"The database {url} holds tables named like the service's that are not the "
            f"service's ({'; '.join(problems)}). Point IMGPRIVACY_DATABASE_URL at an empty "
            "database or at one the service created."
        )
    metadata.create_all(connection, checkfirst=True)  # only the missing tables
    if connection.scalar(sa.select(bank_state.c.id).where(bank_state.c.id == 1)) is None:
        connection.execute(bank_state.insert().values(id=1, revision=0))
    for index in NAME_KEYS:
        try:
            with connection.begin_nested():  # a failure must not abort the whole upgrade
                connection.execute(CreateIndex(index, if_not_exists=True))
        except DBAPIError as exc:
            logger.warning(
                "index %s not created (%s); registrations still compare names without case. "
                "Rename the users whose names differ only in case, then create it: %s",
                index.name,
                str(exc.orig).splitlines()[0],
                str(CreateIndex(index).compile(dialect=connection.dialect)).strip(),
            )
