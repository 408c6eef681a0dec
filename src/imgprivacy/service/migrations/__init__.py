"""Schema migrations of the service database (Alembic), applied by every worker at start.

:func:`upgrade_schema` brings a database to the newest revision this version knows (``head``):

- an empty database gets every revision, starting with the baseline (``0001``);
- a database created before the service had migrations (its tables, no ``alembic_version``) is
  adopted: the tables and indexes earlier versions lacked are added, then it is stamped at the
  baseline and upgraded like any other;
- a database at a revision this version does not know (written by a newer release) is refused
  with :class:`~imgprivacy.errors.SchemaError`: nothing is changed, nothing is downgraded.

The whole upgrade is one transaction behind a lock (PostgreSQL: an advisory lock, with
transactional DDL; SQLite: the write lock of ``BEGIN IMMEDIATE``), so workers starting together
queue and a failed migration leaves the database as it was. Alembic is configured here, in code:
no ``alembic.ini`` is needed. A new revision is written with::

    from alembic import command
    from imgprivacy.service.migrations import alembic_config
    command.revision(alembic_config(), message="add ...", rev_id="0003")

then edited by hand (SQLite alters tables through ``op.batch_alter_table``).
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, inspect, make_url, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from imgprivacy import __version__
from imgprivacy.errors import SchemaError

__all__ = ["BASELINE", "alembic_config", "current_revisions", "head_revision", "upgrade_schema"]

logger = logging.getLogger(__name__)

BASELINE = "0001"  # the schema as the service created it before it had migrations
_LOCK_KEY = zlib.crc32(b"imgprivacy.service.migrations")  # PostgreSQL advisory lock id


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for this package; ``connection`` is the one migrations run on."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this version of imgprivacy knows."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revisions(connection: Connection) -> tuple[str, ...]:
    """The revisions recorded in the database (empty when it has no ``alembic_version``)."""
    if not inspect(connection).has_table("alembic_version"):
        return ()
    return tuple(connection.scalars(text("SELECT version_num FROM alembic_version")))


def migration_engine(url: str) -> Engine:
    """An engine for migrating ``url``: one transaction per connection, DDL included.

    SQLite needs help for that: the driver's own transaction handling is switched off and every
    transaction starts with ``BEGIN IMMEDIATE`` (the write lock, held to the commit). Foreign keys
    stay off meanwhile, so a table that a migration rebuilds does not cascade deletes.
    """
    if not url.startswith("sqlite"):
        return create_engine(url, poolclass=NullPool)
    engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA foreign_keys=OFF")

    @event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def upgrade_schema(url: str) -> tuple[str, ...]:
    """Bring the database at ``url`` to :func:`head_revision`; returns the revisions it was at.

    Idempotent and safe for several processes at once (see the module docstring).

    Raises
    ------
    SchemaError
        The database is at a revision this version does not know, or holds tables named like the
        service's that lack some of their columns. Nothing was changed.
    """
    engine = migration_engine(url)
    try:
        with engine.connect() as connection, connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            config = alembic_config(connection)
            script = ScriptDirectory.from_config(config)
            before = current_revisions(connection)
            _check_known(script, before, url)
            if not before:
                baseline = script.get_revision(BASELINE).module
                present = set(inspect(connection).get_table_names()) & set(baseline.metadata.tables)
                if present:  # created before migrations existed
                    baseline.adopt(connection, url=_shown(url))
                    command.stamp(config, BASELINE)
                    logger.info("adopted the existing service tables at revision %s", BASELINE)
            command.upgrade(config, "head")
            after = current_revisions(connection)
    finally:
        engine.dispose()
    if after != before:
        logger.info("database schema upgraded from %s to %s", before or "nothing", after)
    return before


def _check_known(script: ScriptDirectory, revisions: tuple[str, ...], url: str) -> None:
    known = {s.revision for s in script.walk_revisions()}
    unknown = [r for r in revisions if r not in known]
    if unknown:
        raise SchemaError(
            f"The database {_shown(url)} is at schema revision {', '.join(unknown)}, which "
            f"imgprivacy {__version__} does not know (it knows {', '.join(sorted(known))}): a "
            "newer release wrote it. Upgrade imgprivacy on every worker (pip install -U "
            "'imgprivacy[service]'), or point IMGPRIVACY_DATABASE_URL at another database; "
            "this version never downgrades a schema."
        )


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
