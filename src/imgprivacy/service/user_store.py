"""Users and pending registrations: the user half of :class:`~imgprivacy.service.storage.Storage`.

Names are unique without regard to case across users and pending registrations; ``max_users``
counts both. Refusals are :class:`~imgprivacy.errors.AlreadyExistsError`,
:class:`~imgprivacy.errors.RecordNotFoundError` and :class:`~imgprivacy.errors.CapacityError`.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from imgprivacy.errors import AlreadyExistsError, CapacityError, RecordNotFoundError
from imgprivacy.service.database import Database
from imgprivacy.service.tables import GuardModel, PendingInfo, PendingUser, User, UserInfo

__all__ = ["UserStore", "user_info"]


def user_info(user: User) -> UserInfo:
    return UserInfo(user.id, user.name, user.created_at)


class UserStore(Database):
    """Transactions over users and pending registrations; each public method is one."""

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
