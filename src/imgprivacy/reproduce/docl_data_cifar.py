"""The DOCL CIFAR-10 experiment's data: 10 users = 10 classes, as ResNet-20 features."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from imgprivacy.data import load_fashion_mnist
from imgprivacy.data.cifar10 import load_cifar10
from imgprivacy.features import get_extractor
from imgprivacy.reproduce.docl_data import DoclData, _subsample


def grey_to_rgb(images: np.ndarray, *, size: tuple[int, int]) -> np.ndarray:
    """uint8 grey (N, h, w) -> uint8 RGB (N, H, W, 3), resized bilinearly like uploads are."""
    height, width = size
    return np.stack(
        [
            np.asarray(
                Image.fromarray(image)
                .convert("RGB")
                .resize((width, height), Image.Resampling.BILINEAR)
            )
            for image in images
        ]
    )


def cifar10_experiment(
    *,
    data_dir: str | os.PathLike | None = None,
    variant: str = "lossless",
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    public_count: int | None = 2000,
    feature_extractor: str = "resnet20-cifar",
    seed: int = 0,
) -> DoclData:
    """User i protects CIFAR-10 class i; non-sensitive uploads are Fashion-MNIST test images
    (as 32x32 RGB: the "substantially different" scenario of the paper's MNIST experiment).

    ``variant="lossless"`` uses the exact-pixel subset (about 400 training and 100 test images per
    class); ``"jpeg"`` the larger JPEG-degraded copy (1000 and 1000 per class). ``None`` keeps
    every image.
    """
    rng = np.random.default_rng(seed)
    extractor = get_extractor(feature_extractor)
    train = load_cifar10("train", variant=variant, data_dir=data_dir)
    test = load_cifar10("test", variant=variant, data_dir=data_dir)
    train = train.where(_subsample(train.labels, train_per_class, rng))
    test = test.where(_subsample(test.labels, test_per_class, rng))
    public = load_fashion_mnist("test", data_dir=data_dir)
    if public_count is not None:
        public = public.where(np.sort(rng.permutation(len(public))[:public_count]))
    return DoclData(
        name=f"cifar10-{variant}",
        classes=tuple(range(10)),
        train_x=extractor.transform(train.images),
        train_y=train.labels,
        test_x=extractor.transform(test.images),
        test_y=test.labels,
        public_x=extractor.transform(grey_to_rgb(public.images, size=extractor.input_size)),
        public_name="Fashion-MNIST test images (32x32 RGB)",
        feature_extractor=extractor.name,
    )
