"""Users and their guard models in a SQL database (SQLAlchemy 2: SQLite or PostgreSQL).

Every write runs in one transaction that also bumps the single ``bank_state.revision`` counter
and stamps the written model with it. The row lock on that counter orders concurrent writers, so
revisions become visible in commit order: a replica that has seen revision R and later reads R'
> R finds every change up to R' by comparing per-model revisions (see :mod:`.sync`).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import (
    ForeignKey,
    LargeBinary,
    String,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    defer,
    mapped_column,
    relationship,
    sessionmaker,
)

from imgprivacy.service.errors import Conflict, NotFound, Unprocessable


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=_now)
    models: Mapped[list[GuardModel]] = relationship(
        back_populates="owner", cascade="all, delete-orphan", passive_deletes=True
    )


class GuardModel(Base):
    __tablename__ = "guard_models"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    blob: Mapped[bytes] = mapped_column(LargeBinary)  # the validated safetensors file
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int]
    hidden_dim: Mapped[int]
    error_mean: Mapped[float]
    error_std: Mapped[float]
    probe_claim: Mapped[float]  # fraction of public probe images the model claimed at upload
    revision: Mapped[int] = mapped_column(index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=_now)
    updated_at: Mapped[dt.datetime] = mapped_column(default=_now)
    owner: Mapped[User] = relationship(back_populates="models")


class BankState(Base):
    """One row: the revision of the last change to any model."""

    __tablename__ = "bank_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    revision: Mapped[int] = mapped_column(default=0)


@dataclass(frozen=True)
class UserInfo:
    id: int
    name: str
    created_at: dt.datetime


@dataclass(frozen=True)
class ModelInfo:
    """A model's metadata (never its weights)."""

    owner: str
    name: str
    sha256: str
    size_bytes: int
    hidden_dim: int
    error_mean: float
    error_std: float
    probe_claim: float
    revision: int
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def key(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True)
class NewModel:
    """A validated upload, ready to store."""

    blob: bytes
    sha256: str
    hidden_dim: int
    error_mean: float
    error_std: float
    probe_claim: float


def _info(model: GuardModel, owner: str) -> ModelInfo:
    return ModelInfo(
        owner=owner,
        name=model.name,
        sha256=model.sha256,
        size_bytes=model.size_bytes,
        hidden_dim=model.hidden_dim,
        error_mean=model.error_mean,
        error_std=model.error_std,
        probe_claim=model.probe_claim,
        revision=model.revision,
        created_at=model.created_at,
        updated_at=model.updated_at,
    )


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


class Storage:
    """Transactions over users and models; each public method is one transaction."""

    def __init__(self, url: str):
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def create_schema(self) -> None:
        """Create missing tables and the revision row (idempotent, safe for several workers)."""
        for attempt in range(3):  # workers starting together may race on CREATE TABLE
            try:
                Base.metadata.create_all(self.engine)
                break
            except DBAPIError:
                if attempt == 2:
                    raise
                time.sleep(0.2 * (attempt + 1))
        try:
            with self.session() as session:
                if session.get(BankState, 1) is None:
                    session.add(BankState(id=1, revision=0))
        except IntegrityError:
            pass  # another worker inserted it first

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    # -- users ------------------------------------------------------------------------------
    def add_user(self, name: str, token_hash: str) -> UserInfo:
        try:
            with self.session() as session:
                user = User(name=name, token_hash=token_hash)
                session.add(user)
                session.flush()
                return UserInfo(user.id, user.name, user.created_at)
        except IntegrityError:
            raise Conflict(
                f"A user called {name!r} already exists; choose another name.",
                detail="user already exists",
            ) from None

    def user_by_token_hash(self, token_hash: str) -> UserInfo | None:
        with self.session() as session:
            user = session.scalar(select(User).where(User.token_hash == token_hash))
            return None if user is None else UserInfo(user.id, user.name, user.created_at)

    def list_users(self) -> list[tuple[UserInfo, int]]:
        with self.session() as session:
            counts = dict(
                session.execute(
                    select(GuardModel.user_id, func.count()).group_by(GuardModel.user_id)
                ).all()
            )
            users = session.scalars(select(User).order_by(User.name)).all()
            return [(UserInfo(u.id, u.name, u.created_at), counts.get(u.id, 0)) for u in users]

    def delete_user(self, name: str) -> list[str]:
        """Remove a user and all their models; returns the removed models' names."""
        with self.session() as session:
            self._bump(session)  # write lock first (SQLite), and replicas drop the models
            user = session.scalar(select(User).where(User.name == name))
            if user is None:
                raise NotFound(f"No user called {name!r}.", detail="user not found")
            names = list(
                session.scalars(select(GuardModel.name).where(GuardModel.user_id == user.id))
            )
            session.delete(user)  # the database cascades to the models (ON DELETE CASCADE)
            return names

    # -- models -----------------------------------------------------------------------------
    def _bump(self, session: Session) -> int:
        session.execute(
            update(BankState).where(BankState.id == 1).values(revision=BankState.revision + 1)
        )
        return session.scalar(select(BankState.revision).where(BankState.id == 1))

    def put_model(
        self, user: UserInfo, name: str, new: NewModel, *, max_models: int
    ) -> tuple[ModelInfo, bool]:
        """Create or replace ``user``'s model ``name``; returns (info, created)."""
        with self.session() as session:
            revision = self._bump(session)  # takes the row lock first: writers queue here
            model = session.scalar(
                select(GuardModel).where(GuardModel.user_id == user.id, GuardModel.name == name)
            )
            created = model is None
            if created:
                count = len(
                    session.scalars(
                        select(GuardModel.id).where(GuardModel.user_id == user.id)
                    ).all()
                )
                if count >= max_models:
                    raise Unprocessable(
                        f"You already have {count} models, the most this service keeps per user; "
                        "delete one or replace it by uploading under its name.",
                        detail="too many models",
                    )
                model = GuardModel(user_id=user.id, name=name, created_at=_now())
                session.add(model)
            model.blob = new.blob
            model.sha256 = new.sha256
            model.size_bytes = len(new.blob)
            model.hidden_dim = new.hidden_dim
            model.error_mean = new.error_mean
            model.error_std = new.error_std
            model.probe_claim = new.probe_claim
            model.revision = revision
            model.updated_at = _now()
            session.flush()
            return _info(model, user.name), created

    def list_models(self, owner: UserInfo | None = None) -> list[ModelInfo]:
        """Metadata of ``owner``'s models, or of everyone's when ``owner`` is None."""
        with self.session() as session:
            query = (
                select(GuardModel, User.name)
                .join(User)
                .options(defer(GuardModel.blob))  # metadata only: never read the weights here
                .order_by(User.name, GuardModel.name)
            )
            if owner is not None:
                query = query.where(GuardModel.user_id == owner.id)
            return [
                _info(m, o)
                for m, o in session.execute(query.execution_options(yield_per=256)).all()
            ]

    def get_model(self, owner: UserInfo, name: str) -> ModelInfo:
        with self.session() as session:
            model = session.scalar(
                select(GuardModel)
                .options(defer(GuardModel.blob))
                .where(GuardModel.user_id == owner.id, GuardModel.name == name)
            )
            if model is None:
                raise _model_not_found(name)
            return _info(model, owner.name)

    def delete_model(self, owner_name: str, name: str) -> None:
        with self.session() as session:
            self._bump(session)
            model = session.scalar(
                select(GuardModel)
                .join(User)
                .where(User.name == owner_name, GuardModel.name == name)
            )
            if model is None:
                raise _model_not_found(name)
            session.delete(model)

    # -- what replicas poll -----------------------------------------------------------------
    def revision(self) -> int:
        with self.session() as session:
            return session.scalar(select(BankState.revision).where(BankState.id == 1)) or 0

    def model_revisions(self) -> tuple[int, dict[str, int]]:
        """(global revision, {owner/name: model revision}) read in one transaction."""
        with self.session() as session:
            revision = session.scalar(select(BankState.revision).where(BankState.id == 1)) or 0
            rows = session.execute(
                select(User.name, GuardModel.name, GuardModel.revision).join(User)
            ).all()
            return revision, {f"{o}/{n}": r for o, n, r in rows}

    def blobs(self, keys: list[str]) -> dict[str, tuple[int, bytes]]:
        """{owner/name: (revision, safetensors bytes)} for the given keys that still exist."""
        wanted = {tuple(k.split("/", 1)) for k in keys}
        out = {}
        with self.session() as session:
            owners = sorted({o for o, _ in wanted})
            rows = session.execute(
                select(User.name, GuardModel.name, GuardModel.revision, GuardModel.blob)
                .join(User)
                .where(User.name.in_(owners))
            )
            for owner, name, revision, blob in rows:
                if (owner, name) in wanted:
                    out[f"{owner}/{name}"] = (revision, blob)
        return out


def _model_not_found(name: str) -> NotFound:
    return NotFound(
        f"You have no model called {name!r}; GET /v1/models lists yours.", detail="model not found"
    )
