"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from imgprivacy.service.errors import NotReady
from imgprivacy.service.routes.common import error_responses, service

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    models: int  # in this process's bank
    revision: int  # storage revision the bank reflects
    policy: str
    alpha: float
    margin: float  # how many times better an uploader's own model must explain an image
    breadth_ratio: float | None  # the breadth gate (None: off)
    seniority: bool  # older own models vouch against newer claimants
    feature_extractor: str
    feature_dim: int


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, responses=error_responses(503))
async def readyz(request: Request) -> Ready:
    """The bank is loaded and the database answers."""
    state = service(request)
    if not state.ready:
        raise NotReady("The bank is still loading from storage.")
    try:
        await run_in_threadpool(state.storage.revision)
    except Exception as exc:
        raise NotReady(f"The database does not answer: {type(exc).__name__}.") from exc
    return Ready(
        status="ready",
        models=len(state.bank),
        revision=state.sync.revision,
        policy=state.guard.policy,
        alpha=state.guard.alpha,
        margin=state.guard.margin,
        breadth_ratio=state.guard.breadth_ratio,
        seniority=state.guard.seniority,
        feature_extractor=state.extractor.name,
        feature_dim=state.extractor.dim,
    )


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    state = service(request)
    state.metrics.models.set(len(state.bank))
    state.metrics.revision.set(state.sync.revision)
    return Response(state.metrics.render(), media_type=state.metrics.content_type)
