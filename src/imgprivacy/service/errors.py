"""Service errors and the one exception handler that maps them onto HTTP responses.

Every error response has the body ``{"detail": <stable string>, "problems": [<messages>]}``.
``detail`` never changes wording (clients and tests branch on it); ``problems`` explains what
was expected, what was received and how to fix it.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from imgprivacy.errors import (
    CorruptFileError,
    ImgPrivacyError,
    InvalidInputError,
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


class MissingToken(ServiceError):
    status_code = 401
    detail = "missing token"


class InvalidToken(ServiceError):
    status_code = 401
    detail = "invalid token"


class AdminRequired(ServiceError):
    status_code = 403
    detail = "admin token required"


class RegistrationClosed(ServiceError):
    status_code = 403
    detail = "registration closed"


class NotFound(ServiceError):
    status_code = 404
    detail = "not found"


class Conflict(ServiceError):
    status_code = 409
    detail = "conflict"


class PayloadTooLarge(ServiceError):
    status_code = 413
    detail = "upload too large"


class UnsupportedMediaType(ServiceError):
    status_code = 415
    detail = "unsupported media type"


class Unprocessable(ServiceError):
    status_code = 422
    detail = "invalid input"


class NotReady(ServiceError):
    status_code = 503
    detail = "not ready"


# Library errors that escape a route: their class decides the status, the message the problems.
LIBRARY_ERRORS: dict[type[Exception], tuple[int, str]] = {
    CorruptFileError: (422, "invalid input"),
    InvalidInputError: (422, "invalid input"),
    UnknownNameError: (404, "not found"),
}


def _body(detail: str, problems: list[str]) -> dict:
    return {"detail": detail, "problems": problems}


async def handle_error(request: Request, exc: Exception) -> JSONResponse:
    """The one handler: service errors, library errors, FastAPI validation and HTTP errors."""
    headers = None
    if isinstance(exc, ServiceError):
        status, body = exc.status_code, _body(exc.detail, exc.problems)
        if status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, RequestValidationError):
        problems = [
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}"
            for err in exc.errors()
        ]
        status, body = 422, _body("invalid request", problems)
    elif isinstance(exc, StarletteHTTPException):
        status, body = exc.status_code, _body(str(exc.detail).lower(), [])
    else:
        for cls, (code, detail) in LIBRARY_ERRORS.items():
            if isinstance(exc, cls):
                status, body = code, _body(detail, [str(exc)])
                break
        else:
            logger.exception("unhandled error on %s %s", request.method, request.url.path)
            status, body = 500, _body("internal error", [])
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handler(app: FastAPI) -> None:
    for cls in (ServiceError, ImgPrivacyError, RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(cls, handle_error)
