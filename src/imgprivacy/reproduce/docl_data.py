"""The data of a DOCL experiment: per-class private images and non-sensitive uploads, as features."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from imgprivacy.data import load_fashion_mnist, load_mnist, public_negative_images
from imgprivacy.features import get_extractor


@dataclass(frozen=True)
class DoclData:
    """Features of one experiment; user i protects class ``classes[i]``."""

    name: str
    classes: tuple[int, ...]
    train_x: torch.Tensor  # (K, D) private training features of all users
    train_y: np.ndarray  # (K,) class of each training row
    test_x: torch.Tensor  # (T, D) private test features
    test_y: np.ndarray  # (T,)
    public_x: torch.Tensor  # (P, D) non-sensitive uploads (acceptance rate)
    public_name: str  # what the non-sensitive images are
    feature_extractor: str
    # (Q, D) the provider's public negative set, for configs with negative_weight > 0
    negatives_x: torch.Tensor | None = None

    @property
    def input_dim(self) -> int:
        return int(self.train_x.shape[1])


def _subsample(labels: np.ndarray, per_class: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices keeping at most ``per_class`` rows of each class (all when None), sorted."""
    if per_class is None:
        return np.arange(len(labels))
    keep = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def mnist_experiment(
    *,
    data_dir: str | os.PathLike | None = None,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    public_count: int | None = None,
    feature_extractor: str = "pixels",
    seed: int = 0,
    negative_count: int | None = None,
) -> DoclData:
    """The paper's MNIST setting: 10 users, one digit each, raw pixels (or another extractor);
    Fashion-MNIST test images as the non-sensitive uploads. ``None`` keeps every image.
    ``negative_count`` adds that many images of the provider's public negative set
    (:func:`~imgprivacy.data.public_negative_images`: Fashion-MNIST training images and noise)."""
    rng = np.random.default_rng(seed)
    extractor = get_extractor(feature_extractor)
    train = load_mnist("train", data_dir=data_dir)
    test = load_mnist("test", data_dir=data_dir)
    public = load_fashion_mnist("test", data_dir=data_dir)
    train = train.where(_subsample(train.labels, train_per_class, rng))
    test = test.where(_subsample(test.labels, test_per_class, rng))
    if public_count is not None:
        public = public.where(np.sort(rng.permutation(len(public))[:public_count]))
    return DoclData(
        name="mnist",
        classes=tuple(range(10)),
        train_x=extractor.transform(train.images),
        train_y=train.labels,
        test_x=extractor.transform(test.images),
        test_y=test.labels,
        public_x=extractor.transform(public.images),
        public_name="Fashion-MNIST test images",
        feature_extractor=extractor.name,
        negatives_x=None
        if negative_count is None
        else extractor.transform(
            public_negative_images(count=negative_count, seed=seed, data_dir=data_dir)
        ),
    )
