"""CIFAR-10 from the shared data folder: the exact-pixel subset or the larger JPEG copy.

``lossless`` (``cifar10_lossless_subset.npz``) holds the original training images 0-3999 and test
images 0-999 pixel for pixel. ``jpeg`` (``cifar10_jpeg_subset.npz``) holds 1000 training images
per class and the full test set, but decoded from a JPEG (quality 75) copy: its distribution
differs (the pretrained ResNet-20 falls from 91.5% to 80.8%), so numbers on it are flagged.
"""

from __future__ import annotations

import os

from imgprivacy.data.datasets import ImageSet, load_npz_split
from imgprivacy.errors import UnknownNameError

CIFAR10_FILES = {
    "lossless": "cifar10_lossless_subset.npz",
    "jpeg": "cifar10_jpeg_subset.npz",
}
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def load_cifar10(
    split: str = "train",
    *,
    variant: str = "lossless",
    data_dir: str | os.PathLike | None = None,
) -> ImageSet:
    """CIFAR-10 images, uint8 (N, 32, 32, 3) RGB, labels 0-9.

    Raises
    ------
    UnknownNameError
        When ``variant`` is not ``lossless`` or ``jpeg``.
    DataNotFoundError
        When the file is not in the data folder.
    """
    try:
        filename = CIFAR10_FILES[variant]
    except KeyError:
        raise UnknownNameError(
            f"Unknown CIFAR-10 variant {variant!r}. Valid names: {', '.join(CIFAR10_FILES)}."
        ) from None
    return load_npz_split(filename, split=split, data_dir=data_dir)
