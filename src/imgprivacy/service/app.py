"""The app factory: ``create_app()`` reads the settings and wires storage, bank, Guard, routes.

Run it with ``imgprivacy serve`` or ``uvicorn --factory imgprivacy.service:create_app``.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager, suppress
from functools import partial

import torch
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from imgprivacy import __version__
from imgprivacy.docl import POLICIES, FilterBank, Guard
from imgprivacy.errors import InvalidInputError, SchemaError
from imgprivacy.features import get_extractor
from imgprivacy.service.auth import UserCache
from imgprivacy.service.breadth import BreadthFeed, backfill_breadths, can_measure
from imgprivacy.service.errors import install_error_handler, route_methods
from imgprivacy.service.images import prepare_batch
from imgprivacy.service.limits import BodyGuardMiddleware
from imgprivacy.service.logs import AccessLogMiddleware
from imgprivacy.service.metrics import Metrics
from imgprivacy.service.probe import build_probe_set, deployment_probe_seed
from imgprivacy.service.ratelimit import build_limiters
from imgprivacy.service.routes import admin, check, health, models, users
from imgprivacy.service.routes.common import APP_RESPONSES
from imgprivacy.service.scorer import MicroBatcher, bank_scorer
from imgprivacy.service.settings import ServiceSettings, load_settings
from imgprivacy.service.state import ServiceState
from imgprivacy.service.storage import Storage
from imgprivacy.service.sync import BankSync

logger = logging.getLogger(__name__)

DESCRIPTION = """\
The DOCL privacy filter as a service. Users register (`POST /v1/users`, the token is shown once),
upload one-class autoencoders trained on their own devices (`PUT /v1/models/{name}`), and ask
whether an image may be shared (`POST /v1/check`). Nobody can read another user's weights or
statistics, and a blocked answer never says whose image it is. Errors are
`{"detail": <stable string>, "problems": [...]}`. Request bodies are capped per endpoint while
they stream (413), JSON nesting is bounded (422), registrations and checks are rate-limited per
client (429 with `Retry-After`), and every time is UTC with its offset.
"""


async def _poll(state: ServiceState) -> None:
    """Pick up changes made by other workers/replicas (see imgprivacy.service.sync)."""
    while True:
        await asyncio.sleep(state.settings.sync_interval_seconds)
        try:
            await run_in_threadpool(state.sync.sync)
        except Exception:  # a database hiccup: keep serving the bank we have, retry later
            logger.exception(
                "bank sync failed; retrying in %.1fs", state.settings.sync_interval_seconds
            )


def _measure_breadths(state: ServiceState) -> None:
    """Breadths of stored models that lack one at the Guard's alpha (see .breadth)."""
    if not can_measure(state.probes):
        logger.warning(
            "the breadth gate is on but the service has no probe digits (probe_count 0): no "
            "model's breadth is known, so no uploader's model can vouch for an image claimed by "
            "another user's; set probe_count > 0, or breadth_ratio none to turn the gate off"
        )
        return
    backfill_breadths(state.storage, state.probes, alpha=state.guard.alpha)


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """Build the FastAPI app; ``settings`` default to the ``IMGPRIVACY_*`` environment."""
    if settings is None:
        try:
            settings = load_settings()
        except InvalidInputError as exc:  # one clear line before the server gives up
            logger.error("refusing to start: %s", exc)
            raise
    margin = {} if settings.margin is None else {"margin": settings.margin}
    guard = Guard(  # lists POLICIES if unknown
        policy=settings.policy,
        alpha=settings.alpha,
        breadth_ratio=settings.breadth_ratio,
        # under a policy whose own models never vouch there is nothing for seniority to do
        seniority=settings.seniority and POLICIES[settings.policy].vouch != "never",
        **margin,
    )
    extractor = get_extractor(settings.feature_extractor)
    storage = Storage(settings.database_url)
    if settings.bank == "ray":  # shard actors that follow the database (imgprivacy.cluster)
        from imgprivacy.service.ray_bank import sharded_scorer, sharded_service_bank

        bank = sharded_service_bank(settings, storage=storage, extractor=extractor, guard=guard)
        sync, scorer = bank, sharded_scorer(bank, guard)
    else:
        bank = FilterBank(
            input_dim=extractor.dim,
            feature_extractor=extractor.name,
            precision=settings.bank_precision,  # lists the valid precisions if unknown
        )
        sync, scorer = BankSync(storage, bank), bank_scorer(bank, guard)
    if guard.breadth_ratio is not None:  # the Guard reads every model's stored breadth
        sync = BreadthFeed(sync, storage=storage, guard=guard)
    metrics = Metrics()
    state = ServiceState(
        settings=settings,
        storage=storage,
        extractor=extractor,
        bank=bank,
        guard=guard,
        sync=sync,
        batcher=MicroBatcher(
            scorer,
            prepare=partial(
                prepare_batch, extractor=extractor, max_pixels=settings.max_image_pixels
            ),
            max_batch=settings.batch_max_size,
            max_wait=settings.batch_max_wait_ms / 1000,
            overlap=settings.batch_overlap,
            observe=metrics.observe_batch,
        ),
        metrics=metrics,
        users=UserCache(storage, ttl=settings.sync_interval_seconds),
        probes=None,
        probe_alpha=max(settings.probe_alpha, settings.alpha),
        limiters=build_limiters(settings),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        torch.set_num_threads(settings.torch_threads)
        try:  # schema migrations up to this version's (see imgprivacy.service.migrations)
            await run_in_threadpool(storage.create_schema)
        except SchemaError as exc:  # a newer release's database, say: one clear line first
            logger.error("refusing to start: %s", exc)
            raise
        probe_seed = await run_in_threadpool(
            deployment_probe_seed, storage.engine, configured=settings.probe_seed
        )
        state.probes = await run_in_threadpool(
            build_probe_set,
            feature_extractor=extractor.name,
            count=settings.probe_count,
            seed=probe_seed,
            data_dir=settings.data_dir,
        )
        if guard.breadth_ratio is not None:
            await run_in_threadpool(_measure_breadths, state)
        await run_in_threadpool(state.sync.sync)
        await state.batcher.start()
        poller = asyncio.create_task(_poll(state), name="bank-sync")
        state.ready = True
        logger.info(
            "service ready",
            extra={
                "models": len(bank),
                "policy": guard.policy,
                "alpha": guard.alpha,
                "breadth_ratio": guard.breadth_ratio,
                "seniority": guard.seniority,
            },
        )
        try:
            yield
        finally:
            state.ready = False
            poller.cancel()
            with suppress(asyncio.CancelledError):
                await poller
            await state.batcher.stop()
            if settings.bank == "ray":
                bank.shutdown()
            storage.dispose()

    app = FastAPI(
        title="imgprivacy DOCL service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        responses=APP_RESPONSES,
    )
    app.state.service = state
    install_error_handler(app)
    routers = [module.router for module in (health, users, models, check, admin)]
    for router in routers:
        app.include_router(router)
    app.state.route_methods = route_methods([app.router, *routers])  # the Allow header of a 405
    # Outermost last: the access log also sees the requests the body guard refuses.
    app.add_middleware(BodyGuardMiddleware, settings=settings)
    app.add_middleware(AccessLogMiddleware, metrics=metrics, log=settings.access_log)
    return app
