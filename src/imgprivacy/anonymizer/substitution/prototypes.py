"""Prototype substitution: the paper's substitution step, with label-free prototypes.

After the autoencoder, each output is replaced by the nearest of ``n_prototypes`` prototype
images. The prototypes are the means of the k-means clusters of the autoencoded *training* images
(no label of any kind is used: neither the writer nor the digit), clustered after a Gaussian blur
of ``prototype_blur`` pixels so that nearby strokes count as close. The paper (sec. 3, FERG)
substitutes each output by the closest training image of one chosen identity; measured here that
kept too little of the digit (forest: writer 12.5% / digit 68% with one writer's 174 images,
5-8% / 45-53% with 10-20 of its medoids), while means of clusters of all writers keep it.

Why a substitution at all: the writer is in the *shape* of the strokes, and any output that
varies continuously with its input lets a random forest read it. Measured with a 100-tree
forest on the pen-digits split (writer / digit accuracy on test, chance 3.3% / 10%):

* originals 44% / 98%; binarised originals 45% / 98%; blurred (sigma 2) 48% / 99%;
* the eq. (12) autoencoder of the previous release, lambda = 1: 33% / 90%; binarised 23% / 84%;
* a narrow bottleneck alone (code 8 / code 4): 36% / 94% and 20% / 83%;
* a nearest-neighbour private branch (no weights to fool) drove its own loss to the prior's, and
  the autoencoder collapsed to faint grey blobs (spread 1/255 between images) that the forest
  still read at 27% / 83%; binarised inside the game, 21-28% / 74-84%;
* substitution by k-means prototypes of the blurred originals: k = 15: 5.3% / 83%;
  k = 30: 7.6% / 89%; k = 40 (sigma 1.5): 8.7% / 91%; k = 60: 11% / 93%.

Only the prototype substitution reached the region near chance with the digit near 90%, and it
bounds every attacker at once: the outputs take ``n_prototypes`` distinct values, so no
attacker family can recover more than the cluster index tells about the writer.
``n_prototypes`` is the privacy / utility knob (fewer = more private, less of the digit).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from imgprivacy.errors import InvalidInputError


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
    ``pixels``): the model passes the *original* training images, whose cluster means are clean
    average digits drawn by many writers, where the means of the autoencoded images were noisy
    blobs at lambda >= 1. Which image stands for a cluster does not change what an attacker can
    read (the cluster index), only what a person sees.
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
