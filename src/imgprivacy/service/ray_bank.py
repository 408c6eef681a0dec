"""The service's bank on Ray (``--bank ray``): shards that load their models from the database.

:func:`sharded_service_bank` connects to Ray (``IMGPRIVACY_RAY_ADDRESS``, or a local cluster of
two CPUs) and starts the shard actors of :class:`~imgprivacy.cluster.ShardedBank`. Each shard
reads its own models from the service's database through :class:`StorageSource` when it starts,
so a shard that Ray restarts after a crash reloads them by itself (and, with the Guard's breadth
gate, their stored breadths). The bank follows the same
revision counter as the in-process bank (:mod:`.sync`): it is the service's ``sync`` object too.

A check that cannot hear from every shard is not decided: :func:`sharded_scorer` answers it
with 503 and ``Retry-After`` (:class:`BankUnavailable`), never with a "share" computed from the
shards that did answer.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch

from imgprivacy.cluster import ShardedBank, ShardedBankConfig, ShardUnavailableError
from imgprivacy.docl import Decision, Guard, OneClassAutoencoder, autoencoder_from_bytes
from imgprivacy.errors import ImgPrivacyError, InvalidInputError
from imgprivacy.features import FeatureExtractor
from imgprivacy.service.breadth import stored_breadths
from imgprivacy.service.errors import ServiceError
from imgprivacy.service.scorer import ScoreFn, unclaimed
from imgprivacy.service.settings import ServiceSettings
from imgprivacy.service.storage import Storage

logger = logging.getLogger(__name__)


class BankUnavailable(ServiceError):
    """503 with ``Retry-After``: a shard of the bank is missing, so no decision is made."""

    status_code = 503
    detail = "bank unavailable"

    def __init__(self, problems: str | list[str] | None = None, *, retry_after: float):
        super().__init__(problems)
        self.retry_after = max(1, math.ceil(retry_after))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class StorageSource:
    """The service's database as a :class:`~imgprivacy.cluster.ModelSource` (only its URL is
    pickled; each process opens its own engine)."""

    def __init__(self, database_url: str, *, storage: Storage | None = None):
        self.database_url = database_url
        self._storage = storage

    def __getstate__(self) -> dict:
        return {"database_url": self.database_url, "_storage": None}

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            self._storage = Storage(self.database_url)
        return self._storage

    def revision(self) -> int:
        return self.storage.revision()

    def listing(self) -> tuple[int, dict[str, int]]:
        return self.storage.model_revisions()

    def breadths(self, *, alpha: float) -> dict[str, float]:
        """The stored models' breadths at ``alpha`` (see imgprivacy.service.breadth)."""
        return stored_breadths(self.storage, alpha=alpha)

    def load(self, model_ids: list[str]) -> dict[str, tuple[int, str, OneClassAutoencoder]]:
        out = {}
        for key, (revision, blob) in self.storage.blobs(model_ids).items():
            try:
                model = autoencoder_from_bytes(blob, source=key)
            except ImgPrivacyError as exc:  # stored before a settings change, say
                logger.error("skipping stored model %s: %s", key, exc)
                continue
            out[key] = (revision, key.split("/", 1)[0], model)
        return out


def check_workers(*, workers: int, bank: str, ray_address: str | None) -> None:
    """Refuse several workers on a Ray bank that has no cluster address.

    Without an address every worker would start a local Ray of its own, with its own shard
    actors holding every model again, on the same CPUs.

    Raises
    ------
    InvalidInputError
        With the fix: one cluster started beforehand, its address passed to every worker.
    """
    if bank == "ray" and workers > 1 and not (ray_address or "").strip():
        raise InvalidInputError(
            f"--bank ray with --workers {workers} needs --ray-address (IMGPRIVACY_RAY_ADDRESS): "
            "without it every worker starts its own local Ray with its own copy of the bank. "
            "Start one cluster with `ray start --head` and pass the address it prints, e.g. "
            "--ray-address 127.0.0.1:6379, or serve with --workers 1."
        )


def connect_ray(address: str | None) -> None:
    """Join the Ray cluster at ``address``, or start a local one (2 CPUs) when None."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)


def sharded_service_bank(
    settings: ServiceSettings, *, storage: Storage, extractor: FeatureExtractor, guard: Guard
) -> ShardedBank:
    """The shard actors of this service process, following ``storage``."""
    connect_ray(settings.ray_address)
    config = ShardedBankConfig(
        shards=settings.ray_shards,
        num_cpus=settings.ray_shard_cpus,
        # one torch thread per CPU Ray reserves for the shard (the service's own torch_threads
        # default to every core of this host, which S shards would oversubscribe)
        torch_threads=max(1, int(settings.ray_shard_cpus)),
        check_timeout=settings.ray_check_timeout_seconds,
    )
    return ShardedBank(
        guard=guard,
        input_dim=extractor.dim,
        feature_extractor=extractor.name,
        precision=settings.bank_precision,
        source=StorageSource(settings.database_url, storage=storage),
        config=config,
    )


def sharded_scorer(bank: ShardedBank, guard: Guard) -> ScoreFn:
    """Decide a batch on the shards; a missing shard fails the batch with 503."""

    def score(features: torch.Tensor, uploaders: Sequence[str]) -> list[Decision]:
        if len(bank) == 0:
            return unclaimed(guard, uploaders)
        try:
            return bank.decide(features, list(uploaders))
        except ShardUnavailableError as exc:
            raise BankUnavailable(str(exc), retry_after=exc.retry_after) from exc

    return score
