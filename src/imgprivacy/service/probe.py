"""The public probe set every uploaded model is tested on (the paper's threat model, sec. 3).

A hostile but well-formed upload can try to claim images that are not its owner's: statistics
whose privacy interval covers every distance, or an autoencoder that reconstructs almost
anything (near-identity). Either way the model "claims" public images that no honest one-class
model of a private class should. The probe set is public, non-sensitive images in the service's
feature space:

* ``P`` Fashion-MNIST test images (a seeded sample), resized/converted to the extractor's input;
* the same images binarised at 0.5 (a model that only copies ink reconstructs these perfectly);
* an all-black, an all-white and two uniform-noise images.

A model claims a probe when its distance is at most ``mu + a*sigma`` with
``a = max(probe_alpha, guard alpha)``: inside the privacy interval or closer still (a distance
below the interval is an even better reconstruction, which is what a near-identity model gives).
Uploads claiming more than ``probe_max_claim`` of the probes are refused with 422
``model claims public probe images``.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from PIL import Image

from imgprivacy.data import load_fashion_mnist
from imgprivacy.docl import OneClassAutoencoder
from imgprivacy.features import get_extractor

logger = logging.getLogger(__name__)


def _convert(images: np.ndarray, *, size: tuple[int, int], mode: str) -> np.ndarray:
    height, width = size
    out = []
    for image in images:
        pil = Image.fromarray(image).convert(mode)
        if pil.size != (width, height):
            pil = pil.resize((width, height), Image.Resampling.BILINEAR)
        out.append(np.asarray(pil, dtype=np.uint8))
    return np.stack(out)


def build_probe_set(
    *, feature_extractor: str, count: int, seed: int = 0, data_dir=None
) -> torch.Tensor:
    """(P', D) probe features; empty when ``count`` is 0."""
    extractor = get_extractor(feature_extractor)
    if count == 0:
        return torch.empty(0, extractor.dim)
    public = load_fashion_mnist("test", data_dir=data_dir)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.permutation(len(public))[:count])
    images = _convert(public.images[pick], size=extractor.input_size, mode=extractor.mode)
    binary = np.where(images >= 128, 255, 0).astype(np.uint8)
    shape = images.shape[1:]
    extra = np.stack(
        [
            np.zeros(shape, np.uint8),
            np.full(shape, 255, np.uint8),
            rng.integers(0, 256, size=shape, dtype=np.uint8),
            rng.integers(0, 256, size=shape, dtype=np.uint8),
        ]
    )
    features = extractor.transform(np.concatenate([images, binary, extra]))
    logger.info("probe set: %d public images as %s features", len(features), feature_extractor)
    return features


def probe_claim(model: OneClassAutoencoder, probes: torch.Tensor, *, alpha: float) -> float:
    """Fraction of probes the model claims (distance <= mu + alpha*sigma); 0 without probes."""
    if len(probes) == 0:
        return 0.0
    distances = model.distances(probes).to(torch.float64)
    bound = model.error_mean_ + alpha * model.error_std_
    return float((distances <= bound).to(torch.float64).mean())
