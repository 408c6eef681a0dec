"""``/v1/users``: registration (the token is shown once) and who-am-I."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from imgprivacy.service.auth import (
    bearer_token,
    check_name,
    current_user,
    hash_token,
    is_admin,
    new_token,
)
from imgprivacy.service.errors import RegistrationClosed
from imgprivacy.service.routes.common import ERROR_RESPONSES, service
from imgprivacy.service.storage import UserInfo

router = APIRouter(prefix="/v1", tags=["users"])


class RegisterIn(BaseModel):
    name: str


class RegisterOut(BaseModel):
    name: str
    token: str  # shown once; the service keeps only its SHA-256


class MeOut(BaseModel):
    name: str
    models: int


@router.post("/users", status_code=201, response_model=RegisterOut, responses=ERROR_RESPONSES)
async def register(body: RegisterIn, request: Request) -> RegisterOut:
    """Create a user and return their API token (only once: store it)."""
    state = service(request)
    if not state.settings.open_registration and not is_admin(state, bearer_token(request)):
        raise RegistrationClosed("Registration is closed; ask the operator for an account.")
    name = check_name(body.name, what="user name")
    token = new_token()
    await run_in_threadpool(state.storage.add_user, name, hash_token(token))
    return RegisterOut(name=name, token=token)


@router.get("/me", response_model=MeOut, responses=ERROR_RESPONSES)
def me(request: Request, user: UserInfo = Depends(current_user)) -> MeOut:
    """The user the token belongs to and how many models they have."""
    return MeOut(name=user.name, models=len(service(request).storage.list_models(user)))
