"""Cross-identity expression transfer: is the expression readable on an identity never seen?

An expression classifier (the assessment CNN) is trained on the images of every identity but
one (their train / validation parts) and tested on *all* images of the held-out identity. High
accuracy means the expressions carry across characters, so an anonymizer that renders every face
as one target identity can keep them; it is the data's ceiling for that kind of method.
"""

from __future__ import annotations

import numpy as np

from imgprivacy.anonymizer.evaluate import ATTACKERS, AttackConfig, Split, make_split


def held_out_split(
    images: np.ndarray, *, utility: np.ndarray, private: np.ndarray, split: np.ndarray, held: int
) -> Split:
    """Train / validation: the other identities' parts; test: every image of ``held``."""
    others = private != held
    codes = np.where(others, split, 3)  # 3: not used
    codes[~others] = 2
    codes[others & (split == 2)] = 3
    keep = codes < 3
    return make_split(images[keep], utility[keep], codes[keep])


def expression_transfer(
    images: np.ndarray,
    *,
    utility: np.ndarray,
    private: np.ndarray,
    split: np.ndarray,
    attack: AttackConfig,
    held_out: tuple[int, ...] | None = None,
    family: str = "cnn",
    device: str = "cpu",
) -> dict:
    """Accuracy on each held-out identity of a ``family`` classifier trained on the others.

    Returns ``{"family": ..., "per_identity": {str(identity): accuracy}, "mean": ...}``.
    """
    identities = sorted(np.unique(private).tolist()) if held_out is None else list(held_out)
    per_identity = {}
    for held in identities:
        data = held_out_split(images, utility=utility, private=private, split=split, held=held)
        predicted = ATTACKERS[family](data, config=attack, device=device)
        per_identity[str(held)] = float((predicted == data.test_y).mean())
    return {
        "family": family,
        "per_identity": per_identity,
        "mean": float(np.mean(list(per_identity.values()))),
    }
