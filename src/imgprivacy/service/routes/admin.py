"""``/v1/admin``: the operator lists users and models' metadata and removes abusive ones.

Even the admin sees no weights and no statistics through the API.
"""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from imgprivacy.service.auth import require_admin
from imgprivacy.service.routes.common import ERROR_RESPONSES, service

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)])


class UserRow(BaseModel):
    name: str
    created_at: dt.datetime
    models: int


class ModelRow(BaseModel):
    owner: str
    name: str
    sha256: str
    size_bytes: int
    hidden_dim: int
    probe_claim: float
    revision: int
    updated_at: dt.datetime


@router.get("/users", response_model=list[UserRow], responses=ERROR_RESPONSES)
def list_users(request: Request) -> list[UserRow]:
    return [
        UserRow(name=u.name, created_at=u.created_at, models=n)
        for u, n in service(request).storage.list_users()
    ]


@router.get("/models", response_model=list[ModelRow], responses=ERROR_RESPONSES)
def list_models(request: Request) -> list[ModelRow]:
    return [
        ModelRow(**{k: getattr(m, k) for k in ModelRow.model_fields})
        for m in service(request).storage.list_models()
    ]


@router.delete("/models/{owner}/{name}", status_code=204, responses=ERROR_RESPONSES)
def delete_model(owner: str, name: str, request: Request) -> Response:
    state = service(request)
    state.storage.delete_model(owner, name)
    state.sync.sync()
    return Response(status_code=204)


@router.delete("/users/{name}", status_code=204, responses=ERROR_RESPONSES)
def delete_user(name: str, request: Request) -> Response:
    """Remove a user, their token and all their models."""
    state = service(request)
    state.storage.delete_user(name)
    state.users.forget_user(name)
    state.sync.sync()
    return Response(status_code=204)
