"""The database under :class:`~imgprivacy.service.storage.Storage`: engine, transactions, lock.

Every write runs in one transaction that also bumps the single ``bank_state.revision`` counter
(or takes its row lock without a new revision); that row lock orders concurrent writers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, event, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from imgprivacy.service.migrations import upgrade_schema
from imgprivacy.service.tables import BankState

__all__ = ["Database", "make_engine"]


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and enforced foreign keys."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    """An engine, its sessions and the revision counter that every store's writes share."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def create_schema(self) -> None:
        """Bring the schema to this version's (Alembic migrations, see :mod:`.migrations`).

        Idempotent and safe for several workers starting together. Raises
        :class:`~imgprivacy.errors.SchemaError`, changing nothing, when a newer release wrote
        the database.
        """
        upgrade_schema(self.url)

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    def _lock(self, session: Session) -> None:
        """Queue behind other writers (row lock; SQLite's write lock) without a new revision."""
        session.execute(
            update(BankState).where(BankState.id == 1).values(revision=BankState.revision)
        )

    def _bump(self, session: Session) -> int:
        """Take the writers' lock and a new revision; returns that revision."""
        session.execute(
            update(BankState).where(BankState.id == 1).values(revision=BankState.revision + 1)
        )
        return session.scalar(select(BankState.revision).where(BankState.id == 1))
