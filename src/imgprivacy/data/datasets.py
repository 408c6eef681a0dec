"""Readers for the labelled image data sets in the shared data folder."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass

import numpy as np

from imgprivacy.data.paths import data_file
from imgprivacy.errors import CorruptFileError, InvalidInputError


@dataclass(frozen=True)
class ImageSet:
    """Images with one integer label each.

    ``images`` is uint8 of shape (N, H, W) for grey or (N, H, W, 3) for colour; ``labels`` is (N,).
    """

    images: np.ndarray
    labels: np.ndarray
    name: str

    def __len__(self) -> int:
        return len(self.labels)

    def where(self, mask: np.ndarray) -> ImageSet:
        """The subset selected by a boolean mask or index array."""
        return ImageSet(self.images[mask], self.labels[mask], self.name)


SPLITS = ("train", "test")


def load_npz_split(
    filename: str, *, split: str, data_dir: str | os.PathLike | None = None
) -> ImageSet:
    """Read ``x_<split>``/``y_<split>`` from an ``.npz`` in the data folder, without pickle."""
    if split not in SPLITS:
        raise InvalidInputError(f"Expected split to be one of {SPLITS}, got {split!r}.")
    path = data_file(filename, data_dir)
    try:
        with np.load(path, allow_pickle=False) as archive:
            images = archive[f"x_{split}"]
            labels = archive[f"y_{split}"]
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise CorruptFileError(
            f"Could not read arrays x_{split}/y_{split} from {path}: {exc}. "
            "Replace the file with an intact copy (see the data README for its sha256)."
        ) from exc
    return ImageSet(images=images, labels=labels.astype(np.int64), name=filename)


def load_mnist(split: str = "train", *, data_dir: str | os.PathLike | None = None) -> ImageSet:
    """MNIST digits, uint8 (N, 28, 28), labels 0-9, from ``mnist.npz``."""
    return load_npz_split("mnist.npz", split=split, data_dir=data_dir)


def load_fashion_mnist(
    split: str = "train", *, data_dir: str | os.PathLike | None = None
) -> ImageSet:
    """Fashion-MNIST, uint8 (N, 28, 28), labels 0-9, from ``fashion_mnist.npz``."""
    return load_npz_split("fashion_mnist.npz", split=split, data_dir=data_dir)
