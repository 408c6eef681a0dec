"""The probe set every uploaded model is tested on (the paper's threat model, sec. 3).

A hostile but well-formed upload can try to claim images that are not its owner's: statistics
whose privacy interval covers every distance, an autoencoder that reconstructs almost anything
(near-identity), or one trained on a whole public data set (every digit). Either way the model
"claims" images that no honest one-class model of a private class should. The probe set holds
non-sensitive images in the service's feature space, from three *sources*:

``digits``
    ``count`` MNIST test images;
``clothes``
    ``count`` Fashion-MNIST test images, and the same images binarised at 0.5 (a model that only
    copies ink reconstructs these perfectly);
``noise``
    black, white, grey, uniform-noise and sparse-noise images (``max(8, count // 20)`` of them).

Which images are drawn is decided by a per-deployment secret seed: ``probe_seed`` when the
operator sets one, otherwise a random secret created once per database and stored in it
(:func:`deployment_probe_seed`), so an attacker cannot tune a model against the exact probes.
The set also holds uniform random feature vectors, used only to check that a model's distances
are finite (see :mod:`imgprivacy.service.validation`).

A model claims a probe when its distance is at most ``mu + a*sigma`` with
``a = max(probe_alpha, guard alpha)``: inside the privacy interval or closer still (a distance
below the interval is an even better reconstruction, which is what a near-identity model gives).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from sqlalchemy import insert, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from imgprivacy.data import load_fashion_mnist, load_mnist
from imgprivacy.docl import OneClassAutoencoder
from imgprivacy.errors import SchemaError
from imgprivacy.features import get_extractor
from imgprivacy.service.tables import ServiceSecret

logger = logging.getLogger(__name__)

PROBE_SOURCES = ("digits", "clothes", "noise")
RANDOM_INPUTS = 32  # uniform random feature vectors for the finiteness check


@dataclass(frozen=True, kw_only=True)
class ProbeSet:
    """Probe features tagged by source, and random inputs for the finiteness check."""

    features: torch.Tensor  # (P, D) probe features in [0, 1]
    source: torch.Tensor  # (P,) index into ``sources`` of each probe
    sources: tuple[str, ...]  # source names, e.g. PROBE_SOURCES
    random_inputs: torch.Tensor  # (R, D) uniform in [0, 1], plus all-0 and all-1

    def __len__(self) -> int:
        return len(self.features)

    def of(self, name: str) -> torch.Tensor:
        """(P_s,) bool mask of the probes from source ``name``."""
        return self.source == self.sources.index(name)

    @property
    def from_images(self) -> torch.Tensor:
        """(P,) bool mask of the probes drawn from real images (every source but ``noise``)."""
        mask = torch.ones(len(self), dtype=torch.bool)
        if "noise" in self.sources:
            mask &= ~self.of("noise")
        return mask


def _convert(images: np.ndarray, *, size: tuple[int, int], mode: str) -> np.ndarray:
    height, width = size
    out = []
    for image in images:
        pil = Image.fromarray(image).convert(mode)
        if pil.size != (width, height):
            pil = pil.resize((width, height), Image.Resampling.BILINEAR)
        out.append(np.asarray(pil, dtype=np.uint8))
    return np.stack(out)


def _noise_images(rng: np.random.Generator, *, count: int, shape: tuple[int, ...]) -> np.ndarray:
    constants = [np.full(shape, level, np.uint8) for level in (0, 255, 128)]
    noise = []
    for k in range(count - len(constants)):
        if k % 2 == 0:
            noise.append(rng.integers(0, 256, size=shape, dtype=np.uint8))
        else:
            sparse = rng.random(shape) < rng.uniform(0.02, 0.2)
            noise.append(np.where(sparse, 255, 0).astype(np.uint8))
    return np.stack([*constants, *noise])


def build_probe_set(
    *, feature_extractor: str, count: int, seed: int = 0, data_dir=None
) -> ProbeSet:
    """The probe set of ``count`` digits and ``count`` clothes drawn with ``seed`` (see above).

    ``count`` 0 gives no probe images (the probe checks are off) but still random inputs.
    """
    extractor = get_extractor(feature_extractor)
    rng = np.random.default_rng(seed)
    random_inputs = torch.cat(
        [
            torch.rand(RANDOM_INPUTS, extractor.dim, generator=torch.Generator().manual_seed(seed)),
            torch.zeros(1, extractor.dim),
            torch.ones(1, extractor.dim),
        ]
    )
    if count == 0:
        return ProbeSet(
            features=torch.empty(0, extractor.dim),
            source=torch.empty(0, dtype=torch.long),
            sources=PROBE_SOURCES,
            random_inputs=random_inputs,
        )
    parts = []
    for name, loader in (("digits", load_mnist), ("clothes", load_fashion_mnist)):
        public = loader("test", data_dir=data_dir)
        pick = np.sort(rng.permutation(len(public))[:count])
        images = _convert(public.images[pick], size=extractor.input_size, mode=extractor.mode)
        if name == "clothes":
            images = np.concatenate([images, np.where(images >= 128, 255, 0).astype(np.uint8)])
        parts.append((name, images))
    shape = parts[0][1].shape[1:]
    parts.append(("noise", _noise_images(rng, count=max(8, count // 20), shape=shape)))
    features = torch.cat([extractor.transform(images) for _, images in parts])
    source = torch.cat(
        [
            torch.full((len(images),), PROBE_SOURCES.index(name), dtype=torch.long)
            for name, images in parts
        ]
    )
    logger.info(
        "probe set: %s as %s features",
        ", ".join(f"{len(images)} {name}" for name, images in parts),
        feature_extractor,
    )
    return ProbeSet(
        features=features, source=source, sources=PROBE_SOURCES, random_inputs=random_inputs
    )


def probe_claims(
    model: OneClassAutoencoder,
    probes: ProbeSet,
    *,
    alpha: float,
    distances: torch.Tensor | None = None,
) -> dict[str, float]:
    """Fraction of each source's probes the model claims (distance <= mu + alpha*sigma).

    ``distances`` are the model's distances to ``probes.features`` when already computed.
    Sources without probes are left out (an empty dict when the probe set is empty). A probe
    with a non-finite distance counts as claimed: such a model is refused anyway.
    """
    if len(probes) == 0:
        return {}
    if distances is None:
        distances = model.distances(probes.features)
    distances = distances.to(torch.float64)
    bound = model.error_mean_ + alpha * model.error_std_
    claimed = (distances <= bound) | ~torch.isfinite(distances)
    return {
        name: float(claimed[probes.of(name)].to(torch.float64).mean())
        for name in probes.sources
        if bool(probes.of(name).any())
    }


def probe_claim(model: OneClassAutoencoder, probes: ProbeSet, *, alpha: float) -> float:
    """The largest fraction the model claims of any one source; 0 without probes."""
    return max(probe_claims(model, probes, alpha=alpha).values(), default=0.0)


# -- the per-deployment secret --------------------------------------------------------------
_PROBE_SEED = "probe_seed"


def deployment_probe_seed(engine: Engine, *, configured: int | None) -> int:
    """``configured`` when the operator set ``probe_seed``, else the database's stored secret.

    The secret is created on first use (a random 63-bit integer) in the ``service_secrets``
    table, which the schema migrations create (run them first: ``Storage.create_schema``);
    workers racing to create it all end up with the one that was committed first.

    Raises
    ------
    SchemaError
        The database has no ``service_secrets`` table: its schema was not brought up to date.
    """
    if configured is not None:
        return configured
    if not inspect(engine).has_table(ServiceSecret.__tablename__):
        raise SchemaError(
            f"The database {engine.url.render_as_string(hide_password=True)} has no "
            f"{ServiceSecret.__tablename__} table. Bring its schema up to date first with "
            "imgprivacy.service.migrations.upgrade_schema(url) (the service does at start)."
        )
    query = select(ServiceSecret.value).where(ServiceSecret.name == _PROBE_SEED)
    with engine.begin() as connection:
        stored = connection.scalar(query)
    if stored is None:
        try:
            with engine.begin() as connection:
                connection.execute(
                    insert(ServiceSecret).values(name=_PROBE_SEED, value=str(secrets.randbits(63)))
                )
        except IntegrityError:
            pass  # another worker stored one first: use theirs
        with engine.begin() as connection:
            stored = connection.scalar(query)
    return int(stored)
