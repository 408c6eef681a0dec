"""Users and their guard models in a SQL database (SQLAlchemy 2: SQLite or PostgreSQL).

Every write runs in one transaction that also bumps the single ``bank_state.revision`` counter
and stamps the written model with it. The row lock on that counter orders concurrent writers, so
revisions become visible in commit order: a replica that has seen revision R and later reads R'
> R finds every change up to R' by comparing per-model revisions (see :mod:`.sync`).

Refusals are storage errors from :mod:`imgprivacy.errors` (``AlreadyExistsError``,
``RecordNotFoundError``, ``QuotaExceededError``, ``CapacityError``), each with a stable
``reason``; the service's one exception handler turns them into HTTP answers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, event, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer, sessionmaker

from imgprivacy.errors import (
    AlreadyExistsError,
    CapacityError,
    QuotaExceededError,
    RecordNotFoundError,
)
from imgprivacy.service.migrations import upgrade_schema
from imgprivacy.service.model_privacy import HEADER_PREFIX, header_prefix, privacy_of
from imgprivacy.service.tables import (
    BankState,
    GuardModel,
    ModelInfo,
    NewModel,
    PendingInfo,
    PendingUser,
    User,
    UserInfo,
    now,
)

__all__ = ["ModelInfo", "NewModel", "PendingInfo", "Storage", "UserInfo", "make_engine"]

# The upload's fields a stored row keeps as they are (a guard model's and a quarantined one's).
UPLOAD_FIELDS = tuple(field.name for field in dataclasses.fields(NewModel))


def write_upload(row, new: NewModel) -> None:
    """Copy an upload's file and statistics onto a stored row (a model or a quarantined one)."""
    for name in UPLOAD_FIELDS:
        setattr(row, name, getattr(new, name))
    row.size_bytes = len(new.blob)


def stored_upload(row) -> NewModel:
    """The upload a stored row holds, as :func:`write_upload` wrote it."""
    return NewModel(**{name: getattr(row, name) for name in UPLOAD_FIELDS})


def user_info(user: User) -> UserInfo:
    return UserInfo(user.id, user.name, user.created_at)


def _info(model: GuardModel, owner: str, header: bytes | None = None) -> ModelInfo:
    dp_epsilon, dp_delta = privacy_of(header)
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
        dp_epsilon=dp_epsilon,
        dp_delta=dp_delta,
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

    # -- users ------------------------------------------------------------------------------
    def add_user(self, name: str, token_hash: str, *, max_users: int | None = None) -> UserInfo:
        """Create user ``name`` (unique without regard to case), at most ``max_users`` in all."""
        try:
            with self.session() as session:
                self._lock(session)  # the checks below and the insert are one step
                _check_name_free(session, name)
                _check_capacity(session, max_users)
                user = User(name=name, token_hash=token_hash)
                session.add(user)
                session.flush()
                return user_info(user)
        except IntegrityError:  # a database without the lower(name) index, raced
            raise _user_exists(name) from None

    def add_pending_user(
        self, name: str, token_hash: str, *, max_users: int | None = None
    ) -> PendingInfo:
        """Record a registration that waits for :meth:`approve_user`; its token works after."""
        try:
            with self.session() as session:
                self._lock(session)
                _check_name_free(session, name)
                _check_capacity(session, max_users)
                pending = PendingUser(name=name, token_hash=token_hash)
                session.add(pending)
                session.flush()
                return PendingInfo(pending.name, pending.created_at)
        except IntegrityError:
            raise _user_exists(name) from None

    def pending_users(self) -> list[PendingInfo]:
        with self.session() as session:
            rows = session.scalars(select(PendingUser).order_by(PendingUser.created_at)).all()
            return [PendingInfo(p.name, p.created_at) for p in rows]

    def is_pending(self, token_hash: str) -> bool:
        with self.session() as session:
            found = session.scalar(
                select(PendingUser.id).where(PendingUser.token_hash == token_hash)
            )
            return found is not None

    def approve_user(self, name: str, *, max_users: int | None = None) -> UserInfo:
        """Turn the pending registration ``name`` into a user (same name, same token)."""
        with self.session() as session:
            self._lock(session)
            pending = session.scalar(select(PendingUser).where(PendingUser.name == name))
            if pending is None:
                raise _no_pending(name)
            _check_capacity(session, max_users, pending=-1)  # it counts already
            user = User(name=pending.name, token_hash=pending.token_hash)
            session.delete(pending)
            session.add(user)
            session.flush()
            return user_info(user)

    def reject_user(self, name: str) -> None:
        """Forget the pending registration ``name``."""
        with self.session() as session:
            pending = session.scalar(select(PendingUser).where(PendingUser.name == name))
            if pending is None:
                raise _no_pending(name)
            session.delete(pending)

    def user_by_token_hash(self, token_hash: str) -> UserInfo | None:
        with self.session() as session:
            user = session.scalar(select(User).where(User.token_hash == token_hash))
            return None if user is None else user_info(user)

    def list_users(self) -> list[tuple[UserInfo, int]]:
        with self.session() as session:
            counts = dict(
                session.execute(
                    select(GuardModel.user_id, func.count()).group_by(GuardModel.user_id)
                ).all()
            )
            users = session.scalars(select(User).order_by(User.name)).all()
            return [(user_info(u), counts.get(u.id, 0)) for u in users]

    def delete_user(self, name: str) -> list[str]:
        """Remove a user and all their models; returns the removed models' names."""
        with self.session() as session:
            self._bump(session)  # write lock first (SQLite), and replicas drop the models
            user = session.scalar(select(User).where(User.name == name))
            if user is None:
                raise RecordNotFoundError(f"No user called {name!r}.", reason="user not found")
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
        self,
        user: UserInfo,
        name: str,
        new: NewModel,
        *,
        max_models: int,
        max_total_models: int | None = None,
    ) -> tuple[ModelInfo, bool]:
        """Create or replace ``user``'s model ``name``; returns (info, created).

        A new model needs ``user`` to hold fewer than ``max_models`` and the whole store fewer
        than ``max_total_models`` (None: no cap); replacing one needs neither.
        """
        with self.session() as session:
            return self._put_model(
                session,
                user,
                name,
                new,
                max_models=max_models,
                max_total_models=max_total_models,
            )

    def _put_model(
        self,
        session: Session,
        user: UserInfo,
        name: str,
        new: NewModel,
        *,
        max_models: int,
        max_total_models: int | None,
    ) -> tuple[ModelInfo, bool]:
        """:meth:`put_model` inside ``session`` (the quarantine's approval shares it)."""
        revision = self._bump(session)  # takes the row lock first: writers queue here
        model = session.scalar(
            select(GuardModel).where(GuardModel.user_id == user.id, GuardModel.name == name)
        )
        created = model is None
        if created:
            count = len(
                session.scalars(select(GuardModel.id).where(GuardModel.user_id == user.id)).all()
            )
            if count >= max_models:
                raise QuotaExceededError(
                    f"You already have {count} models, the most this service keeps per user; "
                    "delete one or replace it by uploading under its name.",
                    reason="too many models",
                )
            total = session.scalar(select(func.count()).select_from(GuardModel))
            if max_total_models is not None and total >= max_total_models:
                raise CapacityError(
                    f"The service holds {total} models, the most its operator allows; "
                    "replace one of yours by uploading under its name, or ask the operator.",
                    reason="model limit reached",
                )
            model = GuardModel(user_id=user.id, name=name, created_at=now())
            session.add(model)
        write_upload(model, new)
        model.revision = revision
        model.updated_at = now()
        session.flush()
        return _info(model, user.name, new.blob[:HEADER_PREFIX]), created

    def list_models(self, owner: UserInfo | None = None) -> list[ModelInfo]:
        """Metadata of ``owner``'s models, or of everyone's when ``owner`` is None."""
        with self.session() as session:
            query = (
                select(GuardModel, User.name, header_prefix())
                .join(User)
                .options(defer(GuardModel.blob))  # metadata only: never read the weights here
                .order_by(User.name, GuardModel.name)
            )
            if owner is not None:
                query = query.where(GuardModel.user_id == owner.id)
            return [
                _info(m, o, header)
                for m, o, header in session.execute(query.execution_options(yield_per=256)).all()
            ]

    def get_model(self, owner: UserInfo, name: str) -> ModelInfo:
        with self.session() as session:
            row = session.execute(
                select(GuardModel, header_prefix())
                .options(defer(GuardModel.blob))
                .where(GuardModel.user_id == owner.id, GuardModel.name == name)
            ).first()
            if row is None:
                raise _model_not_found(name)
            return _info(row[0], owner.name, row[1])

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


def _model_not_found(name: str) -> RecordNotFoundError:
    return RecordNotFoundError(
        f"You have no model called {name!r}; GET /v1/models lists yours.", reason="model not found"
    )


def _user_exists(name: str) -> AlreadyExistsError:
    return AlreadyExistsError(
        f"A user called {name!r} already exists (names are compared without case); "
        "choose another name.",
        reason="user already exists",
    )


def _no_pending(name: str) -> RecordNotFoundError:
    return RecordNotFoundError(
        f"No registration called {name!r} waits for approval; GET /v1/admin/registrations "
        "lists them.",
        reason="registration not found",
    )


def _check_name_free(session: Session, name: str) -> None:
    key = name.lower()  # names are ASCII: SQL lower() agrees
    for table in (User, PendingUser):
        if session.scalar(select(table.id).where(func.lower(table.name) == key)) is not None:
            raise _user_exists(name)


def _check_capacity(session: Session, max_users: int | None, *, pending: int = 0) -> None:
    """Refuse one more user when users and pending registrations (+ ``pending``) fill the cap."""
    if max_users is None:
        return
    count = sum(
        session.scalar(select(func.count()).select_from(table)) for table in (User, PendingUser)
    )
    if count + pending >= max_users:
        raise CapacityError(
            f"The service has {max_users} users, the most its operator allows; ask the operator "
            "to raise max_users or remove unused accounts.",
            reason="user limit reached",
        )
