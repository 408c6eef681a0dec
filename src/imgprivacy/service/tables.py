"""The SQL tables of the service (SQLAlchemy 2, SQLite and PostgreSQL) and the records read from them.

The schema is versioned by Alembic (:mod:`imgprivacy.service.migrations`): a change to these
tables needs a new revision there. Two choices kept databases of earlier versions working:

- Times are stored as they always were (``TIMESTAMP`` without a time zone, in UTC) and read back
  timezone-aware by :class:`UTCDateTime`, so every API answer carries its UTC offset.
- User names are unique without regard to case through a unique index on ``lower(name)`` (names
  are ASCII, where SQL ``lower`` and Python ``str.lower`` agree). New databases get it with their
  tables; adopting an older one adds it when its names allow it, and the storage checks names in
  the same transaction as the insert in any case.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def now() -> dt.datetime:
    """The current UTC time, to the second, timezone-aware."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


class UTCDateTime(TypeDecorator):
    """A ``DateTime`` column holding naive UTC, read back as an aware UTC ``datetime``."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: UTCDateTime}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=now)
    models: Mapped[list[GuardModel]] = relationship(
        back_populates="owner", cascade="all, delete-orphan", passive_deletes=True
    )


class PendingUser(Base):
    """A registration waiting for the admin's approval (``approve_registrations``)."""

    __tablename__ = "pending_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=now)


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
    created_at: Mapped[dt.datetime] = mapped_column(default=now)
    updated_at: Mapped[dt.datetime] = mapped_column(default=now)
    # Share of the probe digits the model claims at breadth_alpha (the Guard's alpha): its
    # breadth for the Guard's breadth gate; NULL when unknown (see imgprivacy.service.breadth).
    breadth: Mapped[float | None]
    breadth_alpha: Mapped[float | None]
    owner: Mapped[User] = relationship(back_populates="models")


class QuarantinedModel(Base):
    """An upload that behavioural admission refused, kept for the admin's review.

    Only with ``quarantine_refused``: the model is in no bank and no check uses it until the
    admin approves it (it then becomes a :class:`GuardModel`) or rejects it (it is deleted).
    """

    __tablename__ = "quarantined_models"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    blob: Mapped[bytes] = mapped_column(LargeBinary)  # the refused safetensors file
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int]
    hidden_dim: Mapped[int]
    error_mean: Mapped[float]
    error_std: Mapped[float]
    probe_claim: Mapped[float]  # the largest fraction of one probe source it claimed
    reason: Mapped[str] = mapped_column(String(128))  # the refusal's stable detail
    problems: Mapped[str] = mapped_column(Text)  # the refusal's problems, a JSON list
    created_at: Mapped[dt.datetime] = mapped_column(default=now)
    breadth: Mapped[float | None]  # as GuardModel's, measured at upload
    breadth_alpha: Mapped[float | None]


class BankState(Base):
    """One row: the revision of the last change to any model (and the writers' lock)."""

    __tablename__ = "bank_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    revision: Mapped[int] = mapped_column(default=0)


class ServiceSecret(Base):
    """A secret created once per database, by name (``probe_seed``: see :mod:`.probe`)."""

    __tablename__ = "service_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))


# Case-insensitive uniqueness of names (see the module docstring).
USER_NAME_KEY = Index("uq_users_name_lower", func.lower(User.name), unique=True)
PENDING_NAME_KEY = Index("uq_pending_users_name_lower", func.lower(PendingUser.name), unique=True)


# -- what the storage returns (plain records, detached from any session) ---------------------
@dataclass(frozen=True)
class UserInfo:
    id: int
    name: str
    created_at: dt.datetime


@dataclass(frozen=True)
class PendingInfo:
    """A registration waiting for the admin's approval."""

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
    # A DP model's budget, read from its file's metadata (service.model_privacy); None otherwise.
    dp_epsilon: float | None = None
    dp_delta: float | None = None
    # Share of the probe digits claimed at ``breadth_alpha`` (service.breadth); None when unknown.
    breadth: float | None = None
    breadth_alpha: float | None = None

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
    # Share of the probe digits claimed at ``breadth_alpha`` (the Guard's alpha at admission);
    # None when the service had no probe set.
    breadth: float | None = None
    breadth_alpha: float | None = None


@dataclass(frozen=True)
class QuarantineInfo:
    """A quarantined upload's metadata and why admission refused it (never its weights)."""

    owner: str
    name: str
    sha256: str
    size_bytes: int
    hidden_dim: int
    probe_claim: float
    reason: str
    problems: list[str]
    created_at: dt.datetime
