"""Doubly-labelled face sets with a split: FERG-like faces or a user's CSV manifest.

The private label (identity) is what an anonymizer hides; the utility label (expression) is only
used to assess what was kept.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from imgprivacy.data.manifest import read_manifest
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


MIN_PER_CELL = 3  # a (private, utility) cell needs one image for each of train / validation / test


def stratified_split_codes(cells: np.ndarray, *, seed: int) -> np.ndarray:
    """Codes 0 / 1 / 2 drawn 70 / 15 / 15 *within* every cell (e.g. identity x expression).

    Each cell of at least three images gets at least one validation and one test image, so the
    attackers see every class in every part even with ~6 images per cell (a plain random split
    of 252 images leaves some cells out of the test part).

    Examples
    --------
    >>> codes = stratified_split_codes(np.repeat([0, 1], 6), seed=0)
    >>> [np.bincount(codes[:6]).tolist(), np.bincount(codes[6:]).tolist()]
    [[4, 1, 1], [4, 1, 1]]
    """
    rng = np.random.default_rng(seed)
    codes = np.zeros(len(cells), dtype=np.uint8)
    for cell in np.unique(cells):
        rows = rng.permutation(np.flatnonzero(cells == cell))
        n = len(rows)
        n_val = max(1, round(0.15 * n)) if n >= MIN_PER_CELL else 0
        n_test = max(1, round(0.15 * n)) if n >= MIN_PER_CELL else 0
        codes[rows[n - n_val - n_test : n - n_test]] = 1
        codes[rows[n - n_test :]] = 2
    return codes


def manifest_data(
    manifest: str | os.PathLike,
    *,
    private_label: str,
    utility_label: str | None,
    image_size: int,
    seed: int,
) -> FacesData:
    """A user's manifest, split 70 / 15 / 15 within every (private, utility) cell (seeded).

    Images of any size are resized to ``image_size``; a cell needs at least three images.

    Raises
    ------
    InvalidInputError
        Without a utility label, or when some (private, utility) cells have fewer than three
        images (the first few are listed with their counts).
    """
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
    n_utility = len(data.utility_classes)
    cells = data.private.astype(np.int64) * n_utility + data.utility
    counts = np.bincount(cells, minlength=len(data.private_classes) * n_utility)
    thin = np.flatnonzero(counts < MIN_PER_CELL)
    if len(thin):
        shown = ", ".join(
            f"({data.private_classes[c // n_utility]}, {data.utility_classes[c % n_utility]}): "
            f"{counts[c]}"
            for c in thin[:5]
        )
        more = f" and {len(thin) - 5} more" if len(thin) > 5 else ""
        raise InvalidInputError(
            f"Expected at least {MIN_PER_CELL} images in every ({private_label}, {utility_label}) "
            f"cell of {manifest} (one each for training, validation and test; ~6 or more is "
            f"better), got fewer in {len(thin)}: {shown}{more}. Add images to those cells or "
            "remove their rows."
        )
    split = stratified_split_codes(cells, seed=seed)
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
