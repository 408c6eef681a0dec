"""API tokens: shown once at registration, stored only as a SHA-256 hash.

Tokens are 256 random bits, so a plain SHA-256 (no salt, no slow hash) cannot be inverted and
lets the service find the user by an indexed lookup. The admin token comes from the settings and
is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from imgprivacy.service.errors import (
    AdminRequired,
    ApprovalPending,
    InvalidToken,
    MissingToken,
    Unprocessable,
)
from imgprivacy.service.storage import UserInfo

TOKEN_PREFIX = "ipk_"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer_token(request: Request) -> str:
    """The token of ``Authorization: Bearer <token>``, or :class:`MissingToken`."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise MissingToken("Send your API token as 'Authorization: Bearer <token>'.")
    return token.strip()


def is_admin(state, token: str) -> bool:
    admin = state.settings.admin_token
    return admin is not None and hmac.compare_digest(
        token.encode(), admin.get_secret_value().encode()
    )


def sent_admin_token(request: Request) -> bool:
    """Whether the request carries the admin token (False when it carries none)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and is_admin(request.app.state.service, token.strip())


async def current_user(request: Request) -> UserInfo:
    """FastAPI dependency: the user whose token authorises this request.

    A cached token is answered on the event loop; only a cache miss queries the database (in
    the thread pool), so a check costs no thread hop.
    """
    state = request.app.state.service
    token_hash = hash_token(bearer_token(request))
    user = state.users.cached(token_hash)
    if user is None:
        user = await run_in_threadpool(state.users.lookup, token_hash)
    if user is None and await run_in_threadpool(state.storage.is_pending, token_hash):
        raise ApprovalPending(
            "Your registration waits for the operator's approval; retry once it is approved."
        )
    if user is None:
        raise InvalidToken(
            "This token belongs to no user (it may have been deleted); register again with "
            "POST /v1/users."
        )
    return user


def require_admin(request: Request) -> None:
    """FastAPI dependency: the admin token from the settings."""
    state = request.app.state.service
    token = bearer_token(request)
    if not is_admin(state, token):
        raise AdminRequired("This endpoint needs the admin token configured on the service.")


def check_name(value: str, *, what: str) -> str:
    if not NAME_PATTERN.match(value):
        raise Unprocessable(
            f"Expected a {what} of 1-64 letters, digits, '.', '_' or '-' starting with a letter "
            f"or digit, got {value!r}.",
            detail=f"invalid {what}",
        )
    return value
