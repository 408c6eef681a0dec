"""How usable and how real released images are, beyond what attackers trained on them read.

* :func:`realism` - a fresh classifier learns to tell original test images from their released
  versions on half of the test images and is scored on the other half (both versions of an
  image stay in the same half): 50% means indistinguishable.
* :func:`transfer_accuracy` - a classifier trained on the *original* training images (as a
  downstream user would) is applied to the released test images.

Both take the experiment's split codes (0 / 1 / 2 = train / validation / test) and use the
attacker families of :mod:`~imgprivacy.anonymizer.evaluate`.
"""

from __future__ import annotations

import numpy as np

from imgprivacy.anonymizer.evaluate import (
    ATTACKERS,
    AttackConfig,
    Split,
    TaskResult,
    assess_tasks,
    make_split,
)
from imgprivacy.errors import InvalidInputError


def _check(originals: np.ndarray, released: np.ndarray, split: np.ndarray) -> None:
    if originals.shape != released.shape or len(split) != len(originals):
        raise InvalidInputError(
            f"Expected originals and released images of one shape with one split code each, "
            f"got {originals.shape}, {released.shape} and {len(split)} codes."
        )


def realism(
    originals: np.ndarray,
    released: np.ndarray,
    *,
    split: np.ndarray,
    config: AttackConfig | None = None,
    seed: int = 0,
) -> TaskResult:
    """Accuracy of fresh classifiers at telling original test images from released ones.

    The test images are cut at random into halves (training, then a quarter each for the
    CNN's selection and the score); each image contributes its original (label 0) and its
    released version (label 1) to the same part.
    """
    originals, released, split = np.asarray(originals), np.asarray(released), np.asarray(split)
    _check(originals, released, split)
    test = np.flatnonzero(split == 2)
    if len(test) < 8:
        raise InvalidInputError(f"Expected at least 8 test images, got {len(test)}.")
    order = np.random.default_rng(seed).permutation(test)
    codes = np.zeros(len(order), dtype=np.int64)
    codes[len(order) // 2 :] = 1
    codes[3 * len(order) // 4 :] = 2
    images = np.concatenate([originals[order], released[order]])
    labels = np.repeat([0, 1], len(order))
    result = assess_tasks(
        images,
        labels={"released": labels},
        split=np.concatenate([codes, codes]),
        config=config or AttackConfig(),
    )
    return result["released"]


def transfer_accuracy(
    originals: np.ndarray,
    released: np.ndarray,
    *,
    labels: np.ndarray,
    split: np.ndarray,
    config: AttackConfig | None = None,
) -> TaskResult:
    """Accuracy on the released test images of classifiers trained on the original images."""
    originals, released, split = np.asarray(originals), np.asarray(released), np.asarray(split)
    _check(originals, released, split)
    config = config or AttackConfig()
    source = make_split(originals, labels, split)
    target = make_split(released, labels, split)
    data = Split(
        source.train_x, source.train_y, source.val_x, source.val_y, target.test_x, target.test_y
    )
    per_family = {
        family: float((ATTACKERS[family](data, config=config) == data.test_y).mean())
        for family in config.families
    }
    return TaskResult(per_family)
