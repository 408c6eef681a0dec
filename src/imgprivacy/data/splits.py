"""Seeded train / validation / test split codes (0 / 1 / 2), shared by every data set here.

Examples
--------
>>> import numpy as np
>>> codes = random_split_codes(20, fractions=(0.7, 0.15, 0.15), rng=np.random.default_rng(0))
>>> np.bincount(codes).tolist()
[14, 3, 3]
"""

from __future__ import annotations

import numpy as np

SPLIT_NAMES = ("train", "validation", "test")  # the meaning of the codes 0 / 1 / 2


def random_split_codes(
    n: int, *, fractions: tuple[float, float, float], rng: np.random.Generator
) -> np.ndarray:
    """Codes 0 / 1 / 2 at random in the given proportions (rounded), uint8 of shape (n,)."""
    n_val, n_test = round(n * fractions[1]), round(n * fractions[2])
    codes = np.zeros(n, dtype=np.uint8)
    order = rng.permutation(n)
    codes[order[n - n_val - n_test : n - n_test]] = 1
    codes[order[n - n_test :]] = 2
    return codes
