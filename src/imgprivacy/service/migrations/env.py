"""Alembic's environment for the service database (see :mod:`imgprivacy.service.migrations`).

Migrations run through :func:`~imgprivacy.service.migrations.upgrade_schema`, which hands over a
connection already inside the one transaction (and holding the lock) the whole upgrade shares.
The service's tables are the target of ``autogenerate``, for drafting new revisions.
"""

from alembic import context

from imgprivacy.errors import SchemaError
from imgprivacy.service.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise SchemaError(
        "Service migrations need a database connection: run them through "
        "imgprivacy.service.migrations.upgrade_schema(url) (the service does at start), or pass "
        "alembic_config(connection) to alembic.command."
    )
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    transactional_ddl=True,  # on SQLite too: upgrade_schema's engine makes it so
    render_as_batch=True,  # drafts alter tables the way SQLite can (copy and rename)
)
with context.begin_transaction():
    context.run_migrations()
