"""Prototype substitution: each output is replaced by the nearest of a few label-free prototypes.

The prototypes come from k-means on the autoencoded *training* images after a Gaussian blur of
``prototype_blur`` pixels (so that nearby strokes count as close); no label of any kind is used.
Each cluster is shown as the mean of its *original* training images. A new output is blurred the
same way and replaced by the prototype of its nearest centre, so the released images take at
most ``n_prototypes`` distinct values: no attacker can recover more about the private label than
the cluster index tells. ``n_prototypes`` is the privacy / utility knob (fewer = more private,
less of the content). What was measured on the way to this design: ``docs/anonymizer.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.nn import functional as F

from imgprivacy.anonymizer.substitution.base import SubstitutionMethod, to_uint8
from imgprivacy.errors import InvalidInputError
from imgprivacy.safetensors_io import tensor_problems

if TYPE_CHECKING:
    from imgprivacy.anonymizer.config import AnonymizerConfig

PROTOTYPES_KEY = "prototypes"  # (n_prototypes, D) images the substitution outputs
CENTRES_KEY = "prototype_centres"  # (n_prototypes, D) blurred k-means centres they are matched by


def gaussian_blur(pixels: torch.Tensor, *, sigma: float, image_size: int) -> torch.Tensor:
    """Blur flattened (N, S*S) images with a Gaussian of ``sigma`` pixels (reflect padding).

    Examples
    --------
    >>> x = torch.zeros(1, 81); x[0, 40] = 1.0  # a dot in the middle of a 9x9 image
    >>> y = gaussian_blur(x, sigma=1.0, image_size=9)  # the kernel stays inside: mass is kept
    >>> round(float(y.sum()), 3), bool(y[0, 40] == y.max())
    (1.0, True)
    """
    if sigma <= 0:
        return pixels
    radius = min(int(math.ceil(3 * sigma)), image_size - 1)
    offsets = torch.arange(-radius, radius + 1, dtype=pixels.dtype, device=pixels.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    images = pixels.reshape(-1, 1, image_size, image_size)
    images = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    images = F.conv2d(images, kernel.view(1, 1, 1, -1))
    images = F.conv2d(images, kernel.view(1, 1, -1, 1))
    return images.reshape(len(pixels), -1)


def fit_prototypes(
    pixels: torch.Tensor,
    *,
    n_prototypes: int,
    sigma: float,
    image_size: int,
    seed: int = 0,
    shown: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means on the blurred ``pixels``; returns ``(centres, prototypes)``.

    ``pixels`` is (N, S*S) float in [0, 1] (the autoencoded training images). ``centres``
    (n_prototypes, S*S) are the k-means centres in the blurred space (what new images are matched
    against); ``prototypes`` are the means of each cluster's rows of ``shown`` (default
    ``pixels``; the model passes the original training images). Which image stands for a cluster
    does not change what an attacker can read (the cluster index), only what a person sees.
    """
    from sklearn.cluster import KMeans

    if len(pixels) < n_prototypes:
        raise InvalidInputError(
            f"Expected at least n_prototypes={n_prototypes} training images to cluster, got "
            f"{len(pixels)}. Lower n_prototypes or set it to 0 to turn substitution off."
        )
    pixels = pixels.detach().float().cpu()
    shown = pixels if shown is None else shown.detach().float().cpu()
    if shown.shape != pixels.shape:
        raise InvalidInputError(
            f"Expected shown images of the clustered images' shape {tuple(pixels.shape)}, got "
            f"{tuple(shown.shape)}."
        )
    features = gaussian_blur(pixels, sigma=sigma, image_size=image_size).numpy()
    kmeans = KMeans(n_prototypes, n_init=3, random_state=seed).fit(features)
    labels = torch.as_tensor(kmeans.labels_, dtype=torch.long)
    sums = torch.zeros(n_prototypes, shown.shape[1]).index_add_(0, labels, shown)
    counts = torch.bincount(labels, minlength=n_prototypes).float()
    centres = torch.as_tensor(np.asarray(kmeans.cluster_centers_), dtype=torch.float32)
    prototypes = sums / counts.clamp(min=1)[:, None]  # an empty cluster (rare) shows black
    return centres.contiguous(), prototypes.clamp(0.0, 1.0).contiguous()


def substitute(
    pixels: torch.Tensor,
    *,
    centres: torch.Tensor,
    prototypes: torch.Tensor,
    sigma: float,
    image_size: int,
) -> torch.Tensor:
    """Replace each image (row) by the prototype of the centre nearest to its blurred pixels."""
    blurred = gaussian_blur(pixels, sigma=sigma, image_size=image_size)
    centres = centres.to(pixels)
    # the direct formula, not the matrix-product shortcut cdist takes for > 25 rows: the result
    # must not depend on the batch size (near-ties flipped between batch sizes with it)
    distances = torch.cdist(blurred, centres, compute_mode="donot_use_mm_for_euclid_dist")
    nearest = distances.argmin(dim=1)
    return prototypes.to(pixels)[nearest]


class PrototypeSubstitution(SubstitutionMethod):
    """The nearest of ``n_prototypes`` label-free prototypes (config value ``"prototypes"``).

    Parameters
    ----------
    n_prototypes
        Number of k-means clusters (and of distinct released images).
    sigma
        Gaussian blur (pixels) before clustering and matching.
    image_size
        Side S of the (S, S) images.
    seed
        Seeds k-means.

    Attributes
    ----------
    centres_ : torch.Tensor
        (n_prototypes, S*S) k-means centres in the blurred space.
    prototypes_ : torch.Tensor
        (n_prototypes, S*S) the image released for each centre, float in [0, 1].
    """

    name = "prototypes"
    tensor_names = (PROTOTYPES_KEY, CENTRES_KEY)

    def __init__(self, *, n_prototypes: int, sigma: float, image_size: int, seed: int = 0):
        self.n_prototypes = n_prototypes
        self.sigma = sigma
        self.image_size = image_size
        self.seed = seed

    @classmethod
    def config_problems(cls, config: AnonymizerConfig) -> list[str]:
        if isinstance(config.n_prototypes, int) and config.n_prototypes < 2:
            return [
                f"n_prototypes must be >= 2 with substitution='prototypes', got "
                f"{config.n_prototypes}; say substitution='none' for the autoencoder's outputs alone"
            ]
        return []

    @classmethod
    def from_config(cls, config: AnonymizerConfig) -> PrototypeSubstitution:
        return cls(
            n_prototypes=config.n_prototypes,
            sigma=config.prototype_blur,
            image_size=config.image_size,
            seed=config.seed,
        )

    def fit(
        self,
        images: torch.Tensor,
        private_labels: np.ndarray,
        *,
        autoencode: Callable[[torch.Tensor], torch.Tensor],
    ) -> PrototypeSubstitution:
        """Cluster the autoencoded ``images``; show each cluster as the mean of its originals."""
        del private_labels  # label-free by design
        self.centres_, self.prototypes_ = fit_prototypes(
            autoencode(images),
            shown=images,
            n_prototypes=self.n_prototypes,
            sigma=self.sigma,
            image_size=self.image_size,
            seed=self.seed,
        )
        return self

    def transform(self, outputs: torch.Tensor, *, batch_size: int = 2048) -> torch.Tensor:
        self._check_fitted("centres_", "prototypes_")
        with torch.inference_mode():
            chosen = torch.cat(
                [
                    substitute(
                        outputs[start : start + batch_size],
                        centres=self.centres_,
                        prototypes=self.prototypes_,
                        sigma=self.sigma,
                        image_size=self.image_size,
                    )
                    for start in range(0, len(outputs), batch_size)
                ]
            )
        return to_uint8(chosen)

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        self._check_fitted("centres_", "prototypes_")
        return {PROTOTYPES_KEY: self.prototypes_, CENTRES_KEY: self.centres_}, {}

    @classmethod
    def state_problems(
        cls, tensors: dict[str, torch.Tensor], metadata: dict, *, config: AnonymizerConfig
    ) -> list[str]:
        shape = (config.n_prototypes, config.input_dim)
        return tensor_problems(tensors, {PROTOTYPES_KEY: shape, CENTRES_KEY: shape})

    @classmethod
    def _restore(
        cls, tensors: dict[str, torch.Tensor], metadata: dict, *, config: AnonymizerConfig
    ) -> PrototypeSubstitution:
        method = cls.from_config(config)
        method.prototypes_ = tensors[PROTOTYPES_KEY].cpu()
        method.centres_ = tensors[CENTRES_KEY].cpu()
        return method
