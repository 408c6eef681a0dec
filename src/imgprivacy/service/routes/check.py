"""``POST /v1/check``: share or block an image the caller wants to upload.

The answer never names the user or model that claimed the image, nor any distance or interval:
those would let the uploader learn about other users' models. The operator's log has them.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from imgprivacy.service.auth import current_user
from imgprivacy.service.errors import Unprocessable
from imgprivacy.service.images import IMAGE_TYPES, check_image_bytes, json_features, unsupported
from imgprivacy.service.ratelimit import limit_checks
from imgprivacy.service.routes.common import (
    AUTH_RESPONSES,
    error_responses,
    read_capped,
    service,
)

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["check"])

BLOCK_REASON = "the image lies inside the privacy interval of a model registered by another user"


class CheckOut(BaseModel):
    decision: Literal["share", "block"]
    share: bool
    reason: str
    policy: str  # the Guard policy the service applies
    alpha: float  # width of the privacy intervals in standard deviations


CHECK_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "string", "format": "binary"}},
                    "required": ["image"],
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"features": {"type": "array", "items": {"type": "number"}}},
                    "required": ["features"],
                }
            },
        },
    }
}


async def _features(request: Request):
    state = service(request)
    settings = state.settings
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=1)
        except HTTPException as exc:  # Starlette's multipart parser: a bare 400
            raise Unprocessable(
                [
                    f"Could not parse the multipart form: {exc.detail}",
                    "Send one multipart/form-data part named 'image' holding a PNG or JPEG "
                    "file, or the file itself as the body with Content-Type image/png.",
                ],
                detail="invalid image",
            ) from exc
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            raise unsupported("multipart/form-data without an 'image' file field")
        data = await upload.read(settings.max_image_bytes + 1)
        content_type = "image/png"  # decoded by its magic bytes below, not by the name
    elif content_type in IMAGE_TYPES or content_type == "application/json":
        data = await read_capped(request, limit=settings.max_image_bytes, what="an image")
    else:
        raise unsupported(content_type)
    if content_type == "application/json":
        return json_features(data, dim=state.extractor.dim)
    check_image_bytes(data, max_bytes=settings.max_image_bytes)
    return data  # decoded with the rest of its micro-batch, off the event loop


@lru_cache(maxsize=64)
def _answer(share: bool, reason: str, policy: str, alpha: float) -> bytes:
    """The JSON body of an answer; a service has a handful of distinct answers, each encoded once."""
    answer = CheckOut(
        decision="share" if share else "block",
        share=share,
        reason=reason,
        policy=policy,
        alpha=alpha,
    )
    return answer.model_dump_json().encode()


@router.post(
    "/check",
    response_model=CheckOut,
    openapi_extra=CHECK_BODY,
    responses={
        **AUTH_RESPONSES,
        **error_responses(
            400,
            413,
            415,
            422,
            429,
            e400="bad request",
            e422="invalid image / invalid features / json too deeply nested",
        ),
    },
)
async def check(request: Request) -> Response:
    """Would the Guard let the caller share this image? (PNG/JPEG or a feature vector)"""
    # The hot path: the token, then the rate limit, then the body, called inline on the event
    # loop rather than as FastAPI dependencies (same order, same errors, less work per check).
    state = service(request)
    started = time.perf_counter()
    user = await current_user(request)
    limit_checks(state, user)
    payload = await _features(request)
    decision = await state.batcher.submit(payload, user.name)
    state.metrics.count_check(decision.action, time.perf_counter() - started)
    if not decision.share:
        logger.info(
            "blocked an upload",
            extra={
                "uploader": user.name,
                "matched_model": decision.matched_model,
                "distance": decision.distance,
            },
        )
    reason = decision.reason if decision.share else BLOCK_REASON
    body = _answer(decision.share, reason, decision.policy, decision.alpha)
    return Response(body, media_type="application/json")
