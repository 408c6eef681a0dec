"""Bundled training sets by name: images with one private label, ready for an anonymizer.

``DATASETS[name].load(data_dir=..., image_size=..., seed=...)`` returns a
:class:`PrivateLabelled`; an unknown name raises :class:`~imgprivacy.errors.UnknownNameError`
listing the valid ones (:func:`get_dataset`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from imgprivacy.errors import UnknownNameError


@dataclass(frozen=True)
class PrivateLabelled:
    """Training images and the label an anonymizer must hide."""

    images: np.ndarray  # uint8 (N, S, S)
    private: np.ndarray  # (N,) int64 codes 0..K-1
    description: str  # where the images come from and what the private label is


@dataclass(frozen=True)
class DatasetSpec:
    """One bundled training set."""

    help: str  # one line for the CLI
    image_size: int  # the size its images are shown at by default
    load: Callable[..., PrivateLabelled]  # (*, data_dir, image_size, seed) -> PrivateLabelled


def _pendigits(*, data_dir: str | os.PathLike | None, image_size: int, seed: int):
    from imgprivacy.data.pendigits import load_pendigits

    train = load_pendigits(data_dir=data_dir, seed=seed).part("train")
    return PrivateLabelled(
        train.images, train.writer, "pen-digits training split (writer = private label)"
    )


def _ferg_like(*, data_dir: str | os.PathLike | None, image_size: int, seed: int):
    from imgprivacy.data.labelled_faces import ferg_like_data

    faces = ferg_like_data(per_cell=200, seed=seed)
    train = faces.train
    return PrivateLabelled(
        faces.images[train], faces.private[train], "FERG-like faces (identity = private)"
    )


def _att_faces(*, data_dir: str | os.PathLike | None, image_size: int, seed: int):
    from imgprivacy.data.manifest import load_att_labelled

    faces = load_att_labelled(data_dir=data_dir, size=(image_size, image_size))
    return PrivateLabelled(
        faces.images, faces.private, "AT&T faces (40 subjects, identity = private)"
    )


DATASETS: dict[str, DatasetSpec] = {
    "pendigits": DatasetSpec("20x20 pen digits, the writer is private", 20, _pendigits),
    "ferg-like": DatasetSpec("50x50 FERG-like faces, the identity is private", 50, _ferg_like),
    "att-faces": DatasetSpec("AT&T faces, the identity is private (one label)", 50, _att_faces),
}


def get_dataset(name: str) -> DatasetSpec:
    """The bundled training set called ``name``.

    >>> get_dataset("pendigits").image_size
    20
    >>> get_dataset("mnist")
    Traceback (most recent call last):
    ...
    imgprivacy.errors.UnknownNameError: Unknown dataset 'mnist'; valid names: ['pendigits', 'ferg-like', 'att-faces'].
    """
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownNameError(
            f"Unknown dataset {name!r}; valid names: {list(DATASETS)}."
        ) from None
