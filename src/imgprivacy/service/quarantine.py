"""Quarantine: uploads that behavioural admission refused, kept for the admin's review.

With the ``quarantine_refused`` setting, an upload refused for its *behaviour* (non-finite
distances, statistics that do not match its distances, claims over ``probe_max_claim``; steps 6-8
of :mod:`imgprivacy.service.validation`) is stored here with the refusal instead of being
dropped. It is in no bank and no check uses it. The admin lists the quarantine, then approves a
model (it enters the bank as if it had passed admission, within the usual model caps) or rejects
it (it is deleted). Uploads refused for their format or cost are never quarantined: they cannot
be scored at all.

Each user keeps at most ``max_models_per_user`` quarantined models (a re-upload under the same
name replaces its entry), so a refused upload costs its owner the same room as an accepted one.
"""

from __future__ import annotations

import json

from sqlalchemy import delete, func, select
from sqlalchemy.orm import defer

from imgprivacy.errors import QuotaExceededError, RecordNotFoundError
from imgprivacy.service.storage import Storage, stored_upload, user_info, write_upload
from imgprivacy.service.tables import (
    ModelInfo,
    NewModel,
    QuarantinedModel,
    QuarantineInfo,
    User,
    UserInfo,
    now,
)

__all__ = ["QuarantineStore"]


def _info(row: QuarantinedModel, owner: str) -> QuarantineInfo:
    return QuarantineInfo(
        owner=owner,
        name=row.name,
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        hidden_dim=row.hidden_dim,
        probe_claim=row.probe_claim,
        reason=row.reason,
        problems=list(json.loads(row.problems)),
        created_at=row.created_at,
    )


class QuarantineStore:
    """The quarantine's transactions, on the tables of ``storage``."""

    def __init__(self, storage: Storage):
        self.storage = storage

    def hold(
        self,
        user: UserInfo,
        name: str,
        new: NewModel,
        *,
        reason: str,
        problems: list[str],
        max_models: int,
    ) -> QuarantineInfo:
        """Keep ``user``'s refused upload ``name`` (replacing an earlier one of that name)."""
        with self.storage.session() as session:
            self.storage._lock(session)  # the count below and the write are one step
            row = session.scalar(
                select(QuarantinedModel).where(
                    QuarantinedModel.user_id == user.id, QuarantinedModel.name == name
                )
            )
            if row is None:
                count = session.scalar(
                    select(func.count())
                    .select_from(QuarantinedModel)
                    .where(QuarantinedModel.user_id == user.id)
                )
                if count >= max_models:
                    raise QuotaExceededError(
                        f"You already have {count} models waiting for review, the most this "
                        "service keeps per user; wait for the operator's decision.",
                        reason="too many models",
                    )
                row = QuarantinedModel(user_id=user.id, name=name)
                session.add(row)
            write_upload(row, new)
            row.reason = reason
            row.problems = json.dumps(list(problems))
            row.created_at = now()
            session.flush()
            return _info(row, user.name)

    def list(self) -> list[QuarantineInfo]:
        """Every quarantined upload, oldest first."""
        with self.storage.session() as session:
            rows = session.execute(
                select(QuarantinedModel, User.name)
                .join(User)
                .options(defer(QuarantinedModel.blob))
                .order_by(QuarantinedModel.created_at, QuarantinedModel.id)
            ).all()
            return [_info(row, owner) for row, owner in rows]

    def approve(
        self, owner: str, name: str, *, max_models: int, max_total_models: int | None
    ) -> ModelInfo:
        """Move the quarantined model into the stored models (one transaction, a new revision)."""
        with self.storage.session() as session:
            # Lock before reading: two approvals of one model, or an approval racing the
            # owner's deletion, must see each other's commit (one 200, then 404; never a 500).
            self.storage._lock(session)
            found = session.execute(
                select(QuarantinedModel, User)
                .join(User)
                .where(User.name == owner, QuarantinedModel.name == name)
            ).first()
            if found is None:
                raise _not_quarantined(owner, name)
            row, user = found
            info, _ = self.storage._put_model(
                session,
                user_info(user),
                name,
                stored_upload(row),
                max_models=max_models,
                max_total_models=max_total_models,
            )
            session.delete(row)
            return info

    def reject(self, owner: str, name: str) -> None:
        """Delete the quarantined model."""
        with self.storage.session() as session:
            user_id = select(User.id).where(User.name == owner).scalar_subquery()
            result = session.execute(
                delete(QuarantinedModel).where(
                    QuarantinedModel.user_id == user_id, QuarantinedModel.name == name
                )
            )
            if result.rowcount == 0:
                raise _not_quarantined(owner, name)


def _not_quarantined(owner: str, name: str) -> RecordNotFoundError:
    return RecordNotFoundError(
        f"No model {owner}/{name} waits in quarantine; GET /v1/admin/quarantine lists them.",
        reason="model not found",
    )
