"""``/v1/models``: a user uploads, replaces, lists and deletes their OWN guard models.

Weights and statistics are never returned to anyone else: every query is scoped to the token's
user, and another user's model name is answered exactly like a missing one (404).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from imgprivacy.errors import StorageError
from imgprivacy.service.auth import check_name, current_user
from imgprivacy.service.errors import ServiceError
from imgprivacy.service.quarantine import QuarantineStore
from imgprivacy.service.routes.common import (
    AUTH_RESPONSES,
    ModelOut,
    binary_body,
    error_responses,
    read_capped,
    service,
)
from imgprivacy.service.storage import UserInfo
from imgprivacy.service.validation import BehaviourRefused, validate_upload

router = APIRouter(prefix="/v1/models", tags=["models"])


class QuarantinedOut(BaseModel):
    """A refused upload kept for the operator's review (``quarantine_refused``)."""

    name: str
    detail: str  # "model quarantined for review"
    reason: str  # why admission refused it, e.g. "model claims public probe images"
    problems: list[str]


UPLOAD_RESPONSES = {
    **AUTH_RESPONSES,
    202: {
        "model": QuarantinedOut,
        "description": "model quarantined for review: admission refused it for its behaviour "
        "and the service keeps such uploads for the operator (quarantine_refused); no check "
        "uses it unless the operator approves it",
    },
    **error_responses(
        403,
        413,
        422,
        e403="approval pending / model limit reached (the service-wide cap, max_models)",
        e422="invalid model file / model does not match this service / model gives non-finite "
        "distances / model statistics do not match its distances / model claims public probe "
        "images / too many models / invalid model name",
    ),
}
NOT_FOUND = {
    **AUTH_RESPONSES,
    **error_responses(404, 422, e404="model not found", e422="invalid request"),
}


@router.put(
    "/{name}",
    response_model=ModelOut,
    responses={201: {"model": ModelOut, "description": "created"}, **UPLOAD_RESPONSES},
    openapi_extra=binary_body(
        ["application/octet-stream"], "The .safetensors file written by `imgprivacy guard train`."
    ),
)
async def put_model(
    name: str, request: Request, response: Response, user: UserInfo = Depends(current_user)
) -> ModelOut | JSONResponse:
    """Upload (201) or replace (200) your model ``name``, validated before anything is stored.

    With ``quarantine_refused``, an upload refused for its behaviour is kept for the operator's
    review instead (202); it is not one of your models unless the operator approves it.
    """
    state = service(request)
    settings = state.settings
    check_name(name, what="model name")
    try:
        data = await read_capped(request, limit=settings.max_upload_bytes, what="a model file")
        _, new = await run_in_threadpool(
            validate_upload,
            data,
            settings=settings,
            input_dim=state.extractor.dim,
            probes=state.probes,
        )
        info, created = await run_in_threadpool(
            state.storage.put_model,
            user,
            name,
            new,
            max_models=settings.max_models_per_user,
            max_total_models=settings.max_models or None,
        )
    except BehaviourRefused as exc:
        state.metrics.uploads.labels("refused").inc()
        if not settings.quarantine_refused:
            raise
        await run_in_threadpool(
            QuarantineStore(state.storage).hold,
            user,
            name,
            exc.new,
            reason=exc.detail,
            problems=exc.problems,
            max_models=settings.max_models_per_user,
        )
        body = QuarantinedOut(
            name=name,
            detail="model quarantined for review",
            reason=exc.detail,
            problems=exc.problems,
        )
        return JSONResponse(body.model_dump(), status_code=202)
    except (ServiceError, StorageError) as exc:
        state.metrics.uploads.labels("refused").inc()
        raise exc
    state.metrics.uploads.labels("accepted").inc()
    await run_in_threadpool(state.sync.sync)
    response.status_code = 201 if created else 200
    return ModelOut.of(info)


@router.get("", response_model=list[ModelOut], responses=AUTH_RESPONSES)
def list_models(request: Request, user: UserInfo = Depends(current_user)) -> list[ModelOut]:
    """Your models' metadata (never anyone else's)."""
    return [ModelOut.of(m) for m in service(request).storage.list_models(user)]


@router.get(
    "/{name}",
    response_model=ModelOut,
    responses=NOT_FOUND,
)
def get_model(name: str, request: Request, user: UserInfo = Depends(current_user)) -> ModelOut:
    """One of your models' metadata."""
    return ModelOut.of(service(request).storage.get_model(user, name))


@router.delete(
    "/{name}",
    status_code=204,
    responses=NOT_FOUND,
)
def delete_model(name: str, request: Request, user: UserInfo = Depends(current_user)) -> Response:
    """Delete one of your models; the next check no longer uses it."""
    state = service(request)
    state.storage.delete_model(user.name, name)
    state.sync.sync()
    return Response(status_code=204)
