"""Helpers shared by the routes: the process state, capped body reading, response models."""

from __future__ import annotations

from fastapi import Request
from pydantic import AwareDatetime, BaseModel

from imgprivacy.service.errors import PayloadTooLarge
from imgprivacy.service.state import ServiceState
from imgprivacy.service.storage import ModelInfo


def service(request: Request) -> ServiceState:
    return request.app.state.service


async def read_capped(request: Request, *, limit: int, what: str) -> bytes:
    """The request body, refusing (413) as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Expected {what} of at most {limit} bytes, got {declared} bytes.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Expected {what} of at most {limit} bytes, got more.")
        chunks.append(chunk)
    return b"".join(chunks)


class ErrorOut(BaseModel):
    detail: str  # stable, e.g. "invalid token", "model claims public probe images"
    problems: list[str]  # what was expected, what was received, how to fix it


# Every ``detail`` a status can carry, as the OpenAPI describes it.
ERROR_DETAILS = {
    400: "bad request (a body the framework could not parse, e.g. a broken multipart form)",
    401: "missing token / invalid token",
    403: "admin token required / registration closed / approval pending / user limit reached "
    "/ model limit reached",
    404: "not found / user not found / model not found / registration not found",
    409: "user already exists (user names are compared without case)",
    413: "upload too large (the body passed this endpoint's cap; refused while streaming)",
    415: "unsupported media type",
    422: "invalid request / json too deeply nested / invalid user name / invalid model name / "
    "invalid image / invalid features / invalid model file / model does not match this "
    "service / model claims public probe images / too many models",
    429: "too many requests (wait Retry-After seconds)",
    503: "not ready",
}

RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds until this client may try again.",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def error_responses(*codes: int, **descriptions: str) -> dict[int, dict]:
    """OpenAPI ``responses`` for these error statuses, all in the ``ErrorOut`` shape.

    ``descriptions`` (``e404="model not found"``) narrow a status to the details this route
    can give; the default lists every detail of the status.
    """
    out = {}
    for code in codes:
        out[code] = {
            "model": ErrorOut,
            "description": descriptions.get(f"e{code}", ERROR_DETAILS[code]),
        }
        if code == 429:
            out[code]["headers"] = RETRY_AFTER
    return out


# Any route: a body past the endpoint's cap (413), even where the route reads no body.
APP_RESPONSES = error_responses(413)
# Routes that need a user's token.
AUTH_RESPONSES = error_responses(401, 403, e403="approval pending")


class ModelOut(BaseModel):
    """A model's metadata as its owner sees it (the weights are never returned)."""

    name: str
    sha256: str
    size_bytes: int
    hidden_dim: int
    error_mean: float
    error_std: float
    probe_claim: float
    revision: int
    created_at: AwareDatetime  # UTC
    updated_at: AwareDatetime
    # Differential privacy of a model trained with `guard train --dp-epsilon` (from the file's
    # metadata); null for a model trained without it.
    dp_epsilon: float | None = None
    dp_delta: float | None = None

    @classmethod
    def of(cls, info: ModelInfo) -> ModelOut:
        return cls(**{name: getattr(info, name) for name in cls.model_fields})


def binary_body(media_types: list[str], description: str) -> dict:
    """OpenAPI for a raw request body (FastAPI cannot infer it)."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {m: {"schema": {"type": "string", "format": "binary"}} for m in media_types},
        }
    }
