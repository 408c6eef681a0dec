"""Guard models: the model half of :class:`~imgprivacy.service.storage.Storage`.

Each write stamps the model with the new ``bank_state.revision``; replicas poll
:meth:`ModelStore.model_revisions` and fetch what changed with :meth:`ModelStore.blobs` (see
:mod:`.sync`). Refusals are :class:`~imgprivacy.errors.QuotaExceededError`,
:class:`~imgprivacy.errors.CapacityError` and :class:`~imgprivacy.errors.RecordNotFoundError`.
"""

from __future__ import annotations

import dataclasses

from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer

from imgprivacy.errors import CapacityError, QuotaExceededError, RecordNotFoundError
from imgprivacy.service.database import Database
from imgprivacy.service.model_privacy import HEADER_PREFIX, header_prefix, privacy_of
from imgprivacy.service.tables import (
    BankState,
    GuardModel,
    ModelInfo,
    NewModel,
    User,
    UserInfo,
    now,
)

__all__ = ["ModelStore", "stored_upload", "write_upload"]

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
        breadth=model.breadth,
        breadth_alpha=model.breadth_alpha,
    )


class ModelStore(Database):
    """Transactions over guard models and what replicas poll; each public method is one."""

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
