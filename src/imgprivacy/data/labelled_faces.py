"""Doubly-labelled face sets with a split: FERG-like faces or a user's CSV manifest.

The private label (identity) is what an anonymizer hides; the utility label (expression) is only
used to assess what was kept.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from imgprivacy.data.manifest import read_manifest
from imgprivacy.data.splits import random_split_codes
from imgprivacy.data.synthetic.ferg_like import FERG_VARIATIONS, generate_ferg_like
from imgprivacy.errors import InvalidInputError, UnknownNameError


@dataclass(frozen=True)
class FacesData:
    """Doubly-labelled images with a split: what the experiment runs on."""

    images: np.ndarray  # uint8 (N, S, S)
    private: np.ndarray  # (N,) int64 codes 0..K-1 (identity)
    utility: np.ndarray  # (N,) int64 codes (expression)
    split: np.ndarray  # (N,) 0 / 1 / 2 = train / validation / test
    private_name: str
    utility_name: str
    private_classes: tuple[str, ...]
    utility_classes: tuple[str, ...]
    source: str

    @property
    def train(self) -> np.ndarray:
        return self.split == 0


def ferg_like_data(*, per_cell: int, seed: int, variation: str = "studio") -> FacesData:
    """FERG-like faces under a named variation preset (:data:`FERG_VARIATIONS`)."""
    if variation not in FERG_VARIATIONS:
        raise UnknownNameError(
            f"Unknown FERG-like variation {variation!r}; valid names: {sorted(FERG_VARIATIONS)}."
        )
    faces = generate_ferg_like(per_cell=per_cell, seed=seed, config=FERG_VARIATIONS[variation])
    return FacesData(
        images=faces.images,
        private=faces.identity.astype(np.int64),
        utility=faces.expression.astype(np.int64),
        split=faces.split,
        private_name="identity",
        utility_name="expression",
        private_classes=tuple(faces.identity_names),
        utility_classes=tuple(faces.expression_names),
        source=f"FERG-like generator (variation={variation}, per_cell={per_cell}, seed={seed})",
    )


def manifest_data(
    manifest: str | os.PathLike,
    *,
    private_label: str,
    utility_label: str | None,
    image_size: int,
    seed: int,
) -> FacesData:
    """A user's manifest, split 70 / 15 / 15 at random (seeded)."""
    if utility_label is None:
        raise InvalidInputError(
            "The reproduction assesses what the anonymizer keeps, so it needs a utility label: "
            "pass --utility-label COLUMN (e.g. expression). To train on single-label data use "
            "`imgprivacy anonymize train --manifest ... --private-label ...`."
        )
    data = read_manifest(
        manifest,
        private_label=private_label,
        utility_label=utility_label,
        size=(image_size, image_size),
    )
    split = random_split_codes(
        len(data), fractions=(0.7, 0.15, 0.15), rng=np.random.default_rng(seed)
    )
    return FacesData(
        images=data.images,
        private=data.private,
        utility=data.utility,
        split=split,
        private_name=data.private_name,
        utility_name=data.utility_name,
        private_classes=data.private_classes,
        utility_classes=data.utility_classes,
        source=data.source,
    )
