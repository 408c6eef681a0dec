"""Helpers shared by the routes: the process state, capped body reading, response models."""

from __future__ import annotations

import datetime as dt

from fastapi import Request
from pydantic import BaseModel

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


ERROR_RESPONSES = {
    401: {"model": ErrorOut, "description": "missing token / invalid token"},
    403: {"model": ErrorOut, "description": "admin token required / registration closed"},
    422: {"model": ErrorOut, "description": "invalid request (see detail)"},
}


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
    created_at: dt.datetime
    updated_at: dt.datetime

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
