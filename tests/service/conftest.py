"""Fixtures of the service tests: real uvicorn servers, SQLite always, PostgreSQL too, and an
in-process app (:func:`in_process_service`) for what needs a look inside a request.

PostgreSQL tests use the cluster named by ``IMGPRIVACY_TEST_POSTGRES_URL`` (``make test`` starts a
throwaway one, see scripts/with-postgres.sh); without it they are skipped, unless
``IMGPRIVACY_REQUIRE_POSTGRES=1`` (CI) turns the skip into a failure. Every server gets a fresh
database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import anyio.from_thread
import httpx
import numpy as np
import pytest
import torch

from imgprivacy.client import GuardClient
from imgprivacy.data import load_fashion_mnist, load_mnist
from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder, autoencoder_to_bytes
from imgprivacy.features import get_extractor
from imgprivacy.service import ServiceSettings, create_app
from imgprivacy.service.launcher import start_server

ADMIN = "test-admin-token"
# The services under test extract raw pixels (not the library's default, pixels-smooth): the test
# models are trained on pixel features that feature_png writes back exactly as images.
FEATURES = "pixels"
BACKENDS = ["sqlite", "postgresql"]


def _postgres_admin_url() -> str | None:
    url = os.environ.get("IMGPRIVACY_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("IMGPRIVACY_REQUIRE_POSTGRES") == "1":
            pytest.fail("IMGPRIVACY_REQUIRE_POSTGRES=1 but IMGPRIVACY_TEST_POSTGRES_URL is unset")
        pytest.skip("no PostgreSQL: run through `make test` (scripts/with-postgres.sh)")
    return url


def fresh_database(backend: str, tmp_path) -> str:
    """The URL of a new, empty database of ``backend``."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / f'service-{uuid.uuid4().hex[:8]}.db'}"
    from sqlalchemy import create_engine, text

    admin_url = _postgres_admin_url()
    name = f"test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def server_env(database_url: str, **extra) -> dict[str, str]:
    env = {
        "IMGPRIVACY_DATABASE_URL": database_url,
        "IMGPRIVACY_ADMIN_TOKEN": ADMIN,
        "IMGPRIVACY_FEATURE_EXTRACTOR": FEATURES,
        "IMGPRIVACY_PROBE_COUNT": "200",
        # A fixed probe draw: the per-database secret draw (tested in test_uploads.py) made the
        # test guards' claim vary run to run around the cap. Same cap, same checks, one draw.
        "IMGPRIVACY_PROBE_SEED": "0",
        "IMGPRIVACY_SYNC_INTERVAL_SECONDS": "0.3",
        # The tests register many users from 127.0.0.1 and check in tight loops; the limits
        # themselves are tested in-process (test_abuse.py).
        "IMGPRIVACY_RATE_LIMIT_REGISTER_PER_MINUTE": "0",
        "IMGPRIVACY_RATE_LIMIT_CHECK_PER_SECOND": "0",
    }
    env.update({f"IMGPRIVACY_{k.upper()}": str(v) for k, v in extra.items()})
    return env


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(scope="module")
def server(backend, tmp_path_factory, data_dir):
    """One real server per backend and test module (tests register their own users)."""
    tmp = tmp_path_factory.mktemp(f"server-{backend}")
    url = fresh_database(backend, tmp)
    with start_server(log_path=tmp / "service.log", env=server_env(url)) as process:
        process.database_url = url
        yield process


class InProcessService:
    """An app from ``create_app`` with its lifespan running on a background event loop.

    Requests go through httpx's ASGI transport, which hands the body to the app one chunk per
    ``receive()``: a test can count how much of a streamed body the app read.
    """

    def __init__(self, app, portal, client):
        self.app = app
        self.portal = portal
        self.client = client

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        return self.portal.call(partial(self.client.request, method, path, **kwargs))

    def register(self, name: str | None = None, **kwargs) -> httpx.Response:
        return self.request("POST", "/v1/users", json={"name": name or unique("user")}, **kwargs)

    def token(self, prefix: str = "user") -> dict[str, str]:
        """Register a fresh user; their Authorization header."""
        response = self.register(unique(prefix))
        assert response.status_code == 201, response.text
        return {"Authorization": f"Bearer {response.json()['token']}"}


@contextmanager
def in_process_service(tmp_path, **settings) -> Iterator[InProcessService]:
    """A fresh SQLite service in this process (no probe set: uploads skip the probe check)."""
    values = dict(
        database_url=f"sqlite:///{tmp_path / f'service-{uuid.uuid4().hex[:8]}.db'}",
        admin_token=ADMIN,
        feature_extractor=FEATURES,
        probe_count=0,
        access_log=False,
        rate_limit_register_per_minute=0,
        rate_limit_check_per_second=0,
    )
    values.update(settings)
    app = create_app(ServiceSettings(**values))
    threads = torch.get_num_threads()  # the lifespan sets the service's own
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    try:
        with (
            anyio.from_thread.start_blocking_portal() as portal,
            portal.wrap_async_context_manager(app.router.lifespan_context(app)),
            portal.wrap_async_context_manager(
                httpx.AsyncClient(transport=transport, base_url="http://service")
            ) as client,
        ):
            yield InProcessService(app, portal, client)
    finally:
        torch.set_num_threads(threads)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def new_user(server):
    """register() -> a GuardClient logged in as a fresh user."""
    clients = []

    def make(prefix: str = "user") -> GuardClient:
        client = GuardClient(server.url, retries=1, backoff=0.05)
        client.register(unique(prefix))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


# -- tiny honest models on real digits ----------------------------------------------------------
# A small D-128-M-128-D trained with Adam: fitted well enough to pass the probe check, whose
# digits source an under-trained model fails (a blurry mean digit claims 35-70% of all digits;
# these claim 20-26% of them).
TEST_CONFIG = dict(
    hidden_dim=16,
    layer_widths=(128,),
    epochs=20,
    optimizer="adam",
    learning_rate=3e-3,
    batch_size=32,
    feature_extractor=FEATURES,
)


@pytest.fixture(scope="session")
def digits(data_dir):
    """(train features by digit, test features, test labels, fashion features) — small subsets."""
    extractor = get_extractor(FEATURES)
    train = load_mnist("train", data_dir=data_dir)
    test = load_mnist("test", data_dir=data_dir)
    fashion = load_fashion_mnist("train", data_dir=data_dir)  # the service probes the test split
    by_digit = {d: extractor.transform(train.images[train.labels == d][:300]) for d in range(10)}
    return {
        "train": by_digit,
        "test_x": extractor.transform(test.images[:300]),
        "test_y": test.labels[:300],
        "fashion": extractor.transform(fashion.images[:300]),
    }


@pytest.fixture(scope="session")
def honest_models(digits):
    """digit -> a fitted model trained on 300 images of that digit."""
    config = AutoencoderConfig(**TEST_CONFIG)
    return {d: OneClassAutoencoder(config).fit(digits["train"][d]) for d in (0, 1, 3, 7)}


@pytest.fixture(scope="session")
def honest_bytes(honest_models):
    return {d: autoencoder_to_bytes(m) for d, m in honest_models.items()}


def feature_png(features: torch.Tensor) -> bytes:
    from imgprivacy.reproduce.service_demo import png_bytes

    return png_bytes(features)


def as_numpy(x) -> np.ndarray:
    return x.numpy() if torch.is_tensor(x) else np.asarray(x)


def local_decisions(
    state: dict, models: dict, x: torch.Tensor, uploaders, *, probes=None, admitted=None
):
    """The decisions of a service whose ``/readyz`` answered ``state`` and whose bank holds
    ``models`` ({model id: (owner, model)}, in the order they were stored: each one admitted
    after the one before, or as ``admitted`` {model id: storage revision} says), computed in this
    process: the same Guard settings, and each model's breadth measured on ``probes`` as
    admission measures it."""
    from imgprivacy.docl import FilterBank, Guard
    from imgprivacy.service.breadth import breadth_of

    first = next(iter(models.values()))[1]
    bank = FilterBank(
        input_dim=first.config.input_dim, feature_extractor=state["feature_extractor"]
    )
    bank.add_many(
        [owner_model for owner_model in models.values()],
        model_ids=list(models),
        admitted=list(range(1, len(models) + 1))
        if admitted is None
        else [admitted[key] for key in models],
    )
    breadth = {}
    for key, (_, model) in models.items():
        value = breadth_of(model, probes, alpha=state["alpha"])
        if value is not None:
            breadth[key] = value
    guard = Guard(
        policy=state["policy"],
        alpha=state["alpha"],
        margin=state["margin"],
        breadth_ratio=state["breadth_ratio"],
        breadth=breadth,
        seniority=state["seniority"],
    )
    return guard.decide(bank.score(x), uploaders)


@pytest.fixture(scope="session")
def server_probes(data_dir):
    """The probe set of the test servers (server_env: 200 per source, seed 0)."""
    from imgprivacy.service.probe import build_probe_set

    return build_probe_set(feature_extractor=FEATURES, count=200, seed=0, data_dir=data_dir)
