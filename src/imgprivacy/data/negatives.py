"""The provider's public negative set: images that are nobody's private data.

A device that trains with outlier exposure (``AutoencoderConfig.negative_weight > 0``) pushes
these out of its owner's interval. They must be public and must not be any user's images: here,
Fashion-MNIST *training* images (clothes, not digits or faces; the reproductions measure shared
non-sensitive uploads on Fashion-MNIST *test* images) and uniform noise. The selection is seeded,
so every device of a deployment gets the same set.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from imgprivacy.data.datasets import load_fashion_mnist
from imgprivacy.errors import InvalidInputError


def public_negative_images(
    *,
    count: int = 10_000,
    noise_share: float = 0.1,
    exclude: Sequence[int] = (),
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """``count`` uint8 images of shape (count, 28, 28): Fashion-MNIST training images, then
    ``round(noise_share * count)`` images of uniform noise.

    Parameters
    ----------
    count
        How many images in all (>= 1).
    noise_share
        The share of noise images, in [0, 1].
    exclude
        Fashion-MNIST training rows never to use (e.g. those of a validation split, which must
        stay unseen by the models it evaluates).
    seed
        Seeds which images are taken and the noise.
    data_dir
        The shared data folder (default: ``IMGPRIVACY_DATA``).

    Raises
    ------
    InvalidInputError
        For a count below 1, a noise share outside [0, 1], or more images than are left after
        ``exclude``.

    Turn them into features with the extractor of the models that train on them
    (``get_extractor(name).transform(images)``; a colour extractor needs them as RGB images of
    its input size first).
    """
    problems = []
    if not isinstance(count, int) or count < 1:
        problems.append(f"count must be a positive integer, got {count!r}")
    if not isinstance(noise_share, (int, float)) or not 0.0 <= noise_share <= 1.0:
        problems.append(f"noise_share must be a number in [0, 1], got {noise_share!r}")
    if problems:
        raise InvalidInputError([f"public_negative_images: {p}" for p in problems])
    rng = np.random.default_rng(seed)
    n_noise = int(round(noise_share * count))
    fashion = load_fashion_mnist("train", data_dir=data_dir)
    available = np.setdiff1d(np.arange(len(fashion)), np.asarray(exclude, dtype=np.int64))
    if count - n_noise > len(available):
        raise InvalidInputError(
            f"public_negative_images: asked for {count - n_noise} Fashion-MNIST training images "
            f"but only {len(available)} are left after excluding {len(fashion) - len(available)}; "
            "ask for fewer (count) or more noise (noise_share)."
        )
    rows = np.sort(rng.permutation(available)[: count - n_noise])
    noise = rng.integers(0, 256, size=(n_noise, *fashion.images.shape[1:]), dtype=np.uint8)
    return np.concatenate([fashion.images[rows], noise])
