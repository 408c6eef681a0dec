"""``/v1/admin``: the operator lists users and models' metadata, removes abusive ones and, with
``approve_registrations``, approves or rejects new users; with ``quarantine_refused``, reviews the
uploads that admission refused for their behaviour (approve: into the bank; reject: deleted).

Even the admin sees no weights and no statistics (mu, sigma) through the API; a model's row shows
its stored breadth, what the Guard's breadth gate reads. User names in paths match without regard
to case, as registration compares them (``Alice`` names the user ``alice``).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from pydantic import AwareDatetime, BaseModel
from sqlalchemy import func, select

from imgprivacy.errors import RecordNotFoundError
from imgprivacy.service.auth import require_admin
from imgprivacy.service.quarantine import QuarantineStore
from imgprivacy.service.routes.common import error_responses, service
from imgprivacy.service.tables import PendingUser, User

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)])

ADMIN_RESPONSES = error_responses(401, 403, e401="missing token", e403="admin token required")


def _by_name(not_found: str, *, forbidden: str = "admin token required") -> dict[int, dict]:
    """Responses of an admin route that names a user, model or registration in its path."""
    return error_responses(
        401,
        403,
        404,
        422,
        e401="missing token",
        e403=forbidden,
        e404=not_found,
        e422="invalid request",
    )


def _registered(request: Request, name: str, *, pending: bool = False) -> str:
    """The user (or pending registration) name as registered that ``name`` matches without
    regard to case; ``name`` itself when none does (the storage then answers 404)."""
    table = PendingUser if pending else User
    with service(request).storage.session() as session:
        found = session.scalar(select(table.name).where(func.lower(table.name) == name.lower()))
    return name if found is None else found


class UserRow(BaseModel):
    name: str
    created_at: AwareDatetime  # UTC
    models: int


class PendingRow(BaseModel):
    name: str
    created_at: AwareDatetime  # when they registered (UTC)


class ModelRow(BaseModel):
    owner: str
    name: str
    sha256: str
    size_bytes: int
    hidden_dim: int
    probe_claim: float
    revision: int
    updated_at: AwareDatetime  # UTC
    # share of the service's probe digits the model claims at breadth_alpha (the Guard's alpha
    # when measured), what the Guard's breadth gate reads; null when unknown (no probe digits)
    breadth: float | None
    breadth_alpha: float | None


@router.get("/users", response_model=list[UserRow], responses=ADMIN_RESPONSES)
def list_users(request: Request) -> list[UserRow]:
    return [
        UserRow(name=u.name, created_at=u.created_at, models=n)
        for u, n in service(request).storage.list_users()
    ]


@router.get("/models", response_model=list[ModelRow], responses=ADMIN_RESPONSES)
def list_models(request: Request) -> list[ModelRow]:
    return [
        ModelRow(**{k: getattr(m, k) for k in ModelRow.model_fields})
        for m in service(request).storage.list_models()
    ]


@router.delete(
    "/models/{owner}/{name}",
    status_code=204,
    responses=_by_name("model not found"),
)
def delete_model(owner: str, name: str, request: Request) -> Response:
    state = service(request)
    owner = _registered(request, owner)
    try:
        state.storage.delete_model(owner, name)
    except RecordNotFoundError as exc:  # the storage's message speaks to the model's owner
        raise RecordNotFoundError(
            f"No model {owner}/{name}; GET /v1/admin/models lists them (model names are "
            "case-sensitive).",
            reason="model not found",
        ) from exc
    state.sync.sync()
    return Response(status_code=204)


@router.delete(
    "/users/{name}",
    status_code=204,
    responses=_by_name("user not found"),
)
def delete_user(name: str, request: Request) -> Response:
    """Remove a user, their token and all their models."""
    state = service(request)
    name = _registered(request, name)
    state.storage.delete_user(name)
    state.users.forget_user(name)
    state.sync.sync()
    return Response(status_code=204)


@router.get("/registrations", response_model=list[PendingRow], responses=ADMIN_RESPONSES)
def list_registrations(request: Request) -> list[PendingRow]:
    """Registrations waiting for approval, oldest first."""
    return [
        PendingRow(name=p.name, created_at=p.created_at)
        for p in service(request).storage.pending_users()
    ]


@router.post(
    "/registrations/{name}/approve",
    response_model=UserRow,
    responses=_by_name(
        "registration not found", forbidden="admin token required / user limit reached"
    ),
)
def approve_registration(name: str, request: Request) -> UserRow:
    """Turn a pending registration into a user: their token works from now on."""
    state = service(request)
    name = _registered(request, name, pending=True)
    user = state.storage.approve_user(name, max_users=state.settings.max_users or None)
    return UserRow(name=user.name, created_at=user.created_at, models=0)


@router.delete(
    "/registrations/{name}",
    status_code=204,
    responses=_by_name("registration not found"),
)
def reject_registration(name: str, request: Request) -> Response:
    """Refuse a pending registration: its token never works and the name is free again."""
    service(request).storage.reject_user(_registered(request, name, pending=True))
    return Response(status_code=204)


class QuarantineRow(BaseModel):
    owner: str
    name: str
    sha256: str
    size_bytes: int
    hidden_dim: int
    probe_claim: float  # the largest fraction of one probe source the model claimed
    reason: str  # why admission refused it (the 422 detail it would have had)
    problems: list[str]
    created_at: AwareDatetime  # when it was uploaded (UTC)


@router.get("/quarantine", response_model=list[QuarantineRow], responses=ADMIN_RESPONSES)
def list_quarantine(request: Request) -> list[QuarantineRow]:
    """Uploads refused for their behaviour and kept for review, oldest first."""
    return [
        QuarantineRow(**{k: getattr(q, k) for k in QuarantineRow.model_fields})
        for q in QuarantineStore(service(request).storage).list()
    ]


@router.post(
    "/quarantine/{owner}/{name}/approve",
    response_model=ModelRow,
    responses=error_responses(
        401,
        403,
        404,
        422,
        e401="missing token",
        e403="admin token required / model limit reached",
        e404="model not found",
        e422="invalid request / too many models",
    ),
)
def approve_quarantined(owner: str, name: str, request: Request) -> ModelRow:
    """Put the quarantined model into the bank (replacing the owner's model of that name)."""
    state = service(request)
    info = QuarantineStore(state.storage).approve(
        _registered(request, owner),
        name,
        max_models=state.settings.max_models_per_user,
        max_total_models=state.settings.max_models or None,
    )
    state.sync.sync()
    return ModelRow(**{k: getattr(info, k) for k in ModelRow.model_fields})


@router.delete(
    "/quarantine/{owner}/{name}",
    status_code=204,
    responses=_by_name("model not found"),
)
def reject_quarantined(owner: str, name: str, request: Request) -> Response:
    """Delete the quarantined model; the owner may upload another."""
    QuarantineStore(service(request).storage).reject(_registered(request, owner), name)
    return Response(status_code=204)
