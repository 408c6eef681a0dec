"""``/v1/users``: registration (the token is shown once) and who-am-I."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from imgprivacy.service.auth import (
    bearer_token,
    check_name,
    current_user,
    hash_token,
    is_admin,
    new_token,
    sent_admin_token,
)
from imgprivacy.service.errors import RegistrationClosed
from imgprivacy.service.ratelimit import limit_registrations
from imgprivacy.service.routes.common import AUTH_RESPONSES, error_responses, service
from imgprivacy.service.storage import UserInfo

router = APIRouter(prefix="/v1", tags=["users"])


class RegisterIn(BaseModel):
    name: str


class RegisterOut(BaseModel):
    name: str
    token: str  # shown once; the service keeps only its SHA-256
    approved: bool = True  # false: the token works once the admin approves the registration


class MeOut(BaseModel):
    name: str
    models: int


@router.post(
    "/users",
    status_code=201,
    response_model=RegisterOut,
    dependencies=[Depends(limit_registrations)],
    responses={
        202: {
            "model": RegisterOut,
            "description": "registered; the token works once the admin approves "
            "(approve_registrations)",
        },
        **error_responses(
            400,
            401,
            403,
            409,
            422,
            429,
            e401="missing token (registration is closed and no admin token was sent)",
            e403="registration closed / user limit reached",
            e422="invalid request / json too deeply nested / invalid user name",
        ),
    },
)
async def register(body: RegisterIn, request: Request, response: Response) -> RegisterOut:
    """Create a user and return their API token (only once: store it).

    Names are unique without regard to case (``ALICE`` is taken once ``alice`` exists).
    """
    state = service(request)
    settings = state.settings
    if settings.open_registration:
        admin = sent_admin_token(request)  # skips the approval; anyone may register
    else:
        admin = is_admin(state, bearer_token(request))  # 401 when no token was sent
        if not admin:
            raise RegistrationClosed("Registration is closed; ask the operator for an account.")
    name = check_name(body.name, what="user name")
    token = new_token()
    max_users = settings.max_users or None
    if settings.approve_registrations and not admin:
        await run_in_threadpool(
            state.storage.add_pending_user, name, hash_token(token), max_users=max_users
        )
        response.status_code = 202
        return RegisterOut(name=name, token=token, approved=False)
    await run_in_threadpool(state.storage.add_user, name, hash_token(token), max_users=max_users)
    return RegisterOut(name=name, token=token)


@router.get("/me", response_model=MeOut, responses=AUTH_RESPONSES)
def me(request: Request, user: UserInfo = Depends(current_user)) -> MeOut:
    """The user the token belongs to and how many models they have."""
    return MeOut(name=user.name, models=len(service(request).storage.list_models(user)))
