"""Service errors and the one exception handler that maps them onto HTTP responses.

Every error response has the body ``{"detail": <stable string>, "problems": [<messages>]}``.
``detail`` never changes wording (clients and tests branch on it); ``problems`` explains what
was expected, what was received and how to fix it.
"""

from __future__ import annotations

import logging
import math
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from imgprivacy.errors import (
    AlreadyExistsError,
    CapacityError,
    CorruptFileError,
    ImgPrivacyError,
    InvalidInputError,
    QuotaExceededError,
    RecordNotFoundError,
    StorageError,
    UnknownNameError,
)

logger = logging.getLogger(__name__)


class ServiceError(ImgPrivacyError):
    """An error with an HTTP status and a stable ``detail`` string."""

    status_code = 400
    detail = "bad request"

    def __init__(self, problems: str | list[str] | None = None, *, detail: str | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems or [])
        if detail is not None:
            self.detail = detail
        super().__init__("; ".join([self.detail, *self.problems]))

    def headers(self) -> dict[str, str] | None:
        return None


class MissingToken(ServiceError):
    status_code = 401
    detail = "missing token"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class InvalidToken(ServiceError):
    status_code = 401
    detail = "invalid token"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class AdminRequired(ServiceError):
    status_code = 403
    detail = "admin token required"


class RegistrationClosed(ServiceError):
    status_code = 403
    detail = "registration closed"


class ApprovalPending(ServiceError):
    status_code = 403
    detail = "approval pending"


class PayloadTooLarge(ServiceError):
    status_code = 413
    detail = "upload too large"


class RequestTimeout(ServiceError):
    status_code = 408
    detail = "request timeout"


class UnsupportedMediaType(ServiceError):
    status_code = 415
    detail = "unsupported media type"


class Unprocessable(ServiceError):
    status_code = 422
    detail = "invalid input"


class TooManyRequests(ServiceError):
    """429 with ``Retry-After``: whole seconds until the client's next request is allowed."""

    status_code = 429
    detail = "too many requests"

    def __init__(self, problems: str | list[str] | None = None, *, retry_after: float):
        super().__init__(problems)
        self.retry_after = max(1, math.ceil(retry_after))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class NotReady(ServiceError):
    status_code = 503
    detail = "not ready"


# Storage refusals: the class decides the status, the error's ``reason`` is the detail.
STORAGE_ERRORS: dict[type[StorageError], int] = {
    AlreadyExistsError: 409,
    RecordNotFoundError: 404,
    QuotaExceededError: 422,
    CapacityError: 403,
}

# Library errors that escape a route: their class decides the status, the message the problems.
LIBRARY_ERRORS: dict[type[Exception], tuple[int, str]] = {
    CorruptFileError: (422, "invalid input"),
    InvalidInputError: (422, "invalid input"),
    UnknownNameError: (404, "not found"),
}


# The status a request is counted and logged with when its client hung up before the answer
# (nginx's "client closed request"): no one receives it, and it is not a server error.
CLIENT_CLOSED_REQUEST = 499


def _body(detail: str, problems: list[str]) -> dict:
    return {"detail": detail, "problems": problems}


def error_response(exc: ServiceError) -> JSONResponse:
    """The response of a :class:`ServiceError` (also sent by middleware, outside the router)."""
    return JSONResponse(
        _body(exc.detail, exc.problems), status_code=exc.status_code, headers=exc.headers()
    )


def route_methods(routers) -> list[tuple[re.Pattern, frozenset[str]]]:
    """(path regex, methods) of every route of ``routers`` (kept for the ``Allow`` header)."""
    return [
        (route.path_regex, frozenset(route.methods))
        for router in routers
        for route in router.routes
        if getattr(route, "methods", None) and hasattr(route, "path_regex")
    ]


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this request's path (the ``Allow`` header of a 405).

    Starlette names only the first route whose path matched, but one path often has several
    routes (``GET``, ``PUT`` and ``DELETE /v1/models/{name}`` are three).
    """
    path = request.scope["path"]
    table = getattr(request.app.state, "route_methods", [])
    return sorted({m for regex, methods in table if regex.match(path) for m in methods})


def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    headers = dict(exc.headers or {})
    problems = []
    if exc.status_code == 405:
        allow = allowed_methods(request) or sorted(headers.get("Allow", "").split(", "))
        headers["Allow"] = ", ".join(allow)
        problems.append(f"{request.method} is not served on this path; use {', '.join(allow)}.")
    body = _body(str(exc.detail).lower(), problems)
    return JSONResponse(body, status_code=exc.status_code, headers=headers or None)


async def handle_error(request: Request, exc: Exception) -> JSONResponse:
    """The one handler: service, storage and library errors, FastAPI validation, HTTP errors.

    A client that disconnected mid-request is logged as such and counted as 499. Anything else
    is a bug: logged with its traceback and answered 500 in the same shape.
    """
    if isinstance(exc, ClientDisconnect):
        logger.info(
            "client disconnected during %s %s",
            request.method,
            request.url.path,
            extra={"client_disconnect": True},
        )
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    if isinstance(exc, ServiceError):
        return error_response(exc)
    if isinstance(exc, RequestValidationError):
        problems = [
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}"
            for err in exc.errors()
        ]
        return JSONResponse(_body("invalid request", problems), status_code=422)
    if isinstance(exc, StarletteHTTPException):
        return _http_error(request, exc)
    if isinstance(exc, StorageError):
        status = next((code for cls, code in STORAGE_ERRORS.items() if isinstance(exc, cls)), 400)
        return JSONResponse(_body(exc.reason, [str(exc)]), status_code=status)
    for cls, (code, detail) in LIBRARY_ERRORS.items():
        if isinstance(exc, cls):
            return JSONResponse(_body(detail, [str(exc)]), status_code=code)
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(_body("internal error", []), status_code=500)


def install_error_handler(app: FastAPI) -> None:
    # Exception last: Starlette answers it from its outermost middleware, so even an error in
    # another middleware gets the JSON shape instead of a plain-text 500 (and re-raises it for
    # the server to log). A client's disconnect is answered inside, like a service error: it
    # is no error of the server's.
    for cls in (
        ClientDisconnect,
        ServiceError,
        ImgPrivacyError,
        RequestValidationError,
        StarletteHTTPException,
        Exception,
    ):
        app.add_exception_handler(cls, handle_error)
