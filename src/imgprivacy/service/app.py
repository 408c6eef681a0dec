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
from imgprivacy.docl import FilterBank, Guard
from imgprivacy.features import get_extractor
from imgprivacy.service.errors import install_error_handler
from imgprivacy.service.images import prepare_batch
from imgprivacy.service.logs import AccessLogMiddleware
from imgprivacy.service.metrics import Metrics
from imgprivacy.service.probe import build_probe_set, deployment_probe_seed
from imgprivacy.service.routes import admin, check, health, models, users
from imgprivacy.service.scorer import MicroBatcher, bank_scorer
from imgprivacy.service.settings import ServiceSettings
from imgprivacy.service.state import ServiceState, UserCache
from imgprivacy.service.storage import Storage
from imgprivacy.service.sync import BankSync

logger = logging.getLogger(__name__)

DESCRIPTION = """\
The DOCL privacy filter as a service. Users register (`POST /v1/users`, the token is shown once),
upload one-class autoencoders trained on their own devices (`PUT /v1/models/{name}`), and ask
whether an image may be shared (`POST /v1/check`). Nobody can read another user's weights or
statistics, and a blocked answer never says whose image it is. Errors are
`{"detail": <stable string>, "problems": [...]}`.
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


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """Build the FastAPI app; ``settings`` default to the ``IMGPRIVACY_*`` environment."""
    settings = settings if settings is not None else ServiceSettings()
    margin = {} if settings.margin is None else {"margin": settings.margin}
    guard = Guard(
        policy=settings.policy, alpha=settings.alpha, **margin
    )  # lists POLICIES if unknown
    extractor = get_extractor(settings.feature_extractor)
    storage = Storage(settings.database_url)
    bank = FilterBank(input_dim=extractor.dim, feature_extractor=extractor.name)
    metrics = Metrics()
    state = ServiceState(
        settings=settings,
        storage=storage,
        extractor=extractor,
        bank=bank,
        guard=guard,
        sync=BankSync(storage, bank),
        batcher=MicroBatcher(
            bank_scorer(bank, guard),
            prepare=partial(
                prepare_batch, extractor=extractor, max_pixels=settings.max_image_pixels
            ),
            max_batch=settings.batch_max_size,
            max_wait=settings.batch_max_wait_ms / 1000,
            observe=metrics.observe_batch,
        ),
        metrics=metrics,
        users=UserCache(storage, ttl=settings.sync_interval_seconds),
        probes=None,
        probe_alpha=max(settings.probe_alpha, settings.alpha),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        torch.set_num_threads(settings.torch_threads)
        await run_in_threadpool(storage.create_schema)
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
        await run_in_threadpool(state.sync.sync)
        await state.batcher.start()
        poller = asyncio.create_task(_poll(state), name="bank-sync")
        state.ready = True
        logger.info(
            "service ready",
            extra={"models": len(bank), "policy": guard.policy, "alpha": guard.alpha},
        )
        try:
            yield
        finally:
            state.ready = False
            poller.cancel()
            with suppress(asyncio.CancelledError):
                await poller
            await state.batcher.stop()
            storage.dispose()

    app = FastAPI(
        title="imgprivacy DOCL service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.service = state
    install_error_handler(app)
    for module in (health, users, models, check, admin):
        app.include_router(module.router)
    app.add_middleware(AccessLogMiddleware, metrics=metrics, log=settings.access_log)
    return app
