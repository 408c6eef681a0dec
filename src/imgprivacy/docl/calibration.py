"""Held-out calibration: which of a user's images train the autoencoder and which give mu, sigma.

The paper computes mu and sigma (eq. 6) from the distances of the training images, which the
model fits better than new images of the same owner: the interval ``mu + alpha * sigma`` then
misses some of the owner's own new images. With ``AutoencoderConfig.calibration_fraction > 0``,
:meth:`OneClassAutoencoder.fit <imgprivacy.docl.autoencoder.OneClassAutoencoder.fit>` trains on
the rows this module leaves in and computes mu and sigma on the rows it holds out.
"""

from __future__ import annotations

import math

import torch

from imgprivacy.docl.config import AutoencoderConfig
from imgprivacy.errors import InvalidInputError


def calibration_split(n: int, *, config: AutoencoderConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """``(training rows, held-out rows)`` of a user's ``n`` images, each sorted, for ``config``.

    ``ceil(config.calibration_fraction * n)`` rows, at least 2, chosen by a generator seeded
    with ``config.seed`` (the training's own generator is not touched) are held out; with
    ``calibration_fraction`` 0 none are, and every row trains.

    Raises
    ------
    InvalidInputError
        When holding out leaves fewer than 2 images to train on.

    Examples
    --------
    >>> train, held = calibration_split(10, config=AutoencoderConfig(calibration_fraction=0.2))
    >>> len(train), len(held)
    (8, 2)
    """
    everything = torch.arange(n)
    fraction = config.calibration_fraction
    if fraction == 0:
        return everything, everything[:0]
    count = max(2, math.ceil(fraction * n - 1e-9))
    if n - count < 2:
        raise InvalidInputError(
            f"calibration_fraction={fraction:g} holds out {count} of {n} images to compute mu "
            f"and sigma, leaving {n - count} to train on; at least 2 must remain (4 images in "
            "all). Train on more images, or set calibration_fraction=0 to compute mu and sigma "
            "from the training images as the paper does."
        )
    generator = torch.Generator().manual_seed(config.seed)
    held = torch.randperm(n, generator=generator)[:count].sort().values
    return complement(held, n), held


def complement(rows: torch.Tensor, n: int) -> torch.Tensor:
    """The indices in ``range(n)`` that are not in ``rows``, in order."""
    keep = torch.ones(n, dtype=torch.bool)
    keep[rows] = False
    return torch.arange(n)[keep]
