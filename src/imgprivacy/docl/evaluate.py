"""Metrics of the DOCL paper (sec. 3) computed from bank scores, all vectorised.

Conventions: ``labels`` give each test input's true class; ``model_class`` gives the class each
model protects (in the reproductions, user i protects class i). Fractions are in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from imgprivacy.docl.bank import BankScores
from imgprivacy.docl.guard import Guard


@dataclass(frozen=True)
class Accuracy:
    """Eq. (8) classification: the nearest model's class against the true class."""

    overall: float
    per_class: list[float]


def nearest_model_accuracy(
    scores: BankScores, labels: np.ndarray, model_class: Sequence[int]
) -> Accuracy:
    """Overall and per-class accuracy of the argmin (paper Fig. 2)."""
    predicted = np.asarray(model_class)[scores.nearest.numpy()]
    labels = np.asarray(labels)
    correct = predicted == labels
    classes = sorted(set(model_class))
    per_class = [float(correct[labels == c].mean()) for c in classes]
    return Accuracy(overall=float(correct.mean()), per_class=per_class)


def one_class_auc(
    scores: BankScores, labels: np.ndarray, model_class: Sequence[int]
) -> list[float]:
    """ROC-AUC of each model as a detector of its own class against all others (Deep SVDD)."""
    labels = np.asarray(labels)
    aucs = []
    for column, cls in enumerate(model_class):
        is_anomaly = (labels != cls).astype(int)
        aucs.append(float(roc_auc_score(is_anomaly, scores.distances[:, column].numpy())))
    return aucs


@dataclass(frozen=True)
class GuardPoint:
    """One operating point of a Guard policy (paper Fig. 3 plus the owners' view)."""

    alpha: float
    accuracy: float  # private images uploaded by someone else: fraction blocked
    acceptance_rate: float  # non-sensitive images: fraction shared
    owner_share_rate: float  # private images uploaded by their owner: fraction shared

    def to_dict(self) -> dict:
        return asdict(self)


def blocked_fraction(guard: Guard, scores: BankScores, uploaders: Sequence[str]) -> float:
    blocked, _ = guard.block_mask(scores, list(uploaders))
    return float(blocked.to(torch.float64).mean())


def guard_point(
    guard: Guard,
    *,
    private: BankScores,
    private_owner: Sequence[str],
    public: BankScores,
) -> GuardPoint:
    """Measure one Guard on private and non-sensitive uploads.

    Each private image is uploaded in turn by every user other than its owner (accuracy) and by
    its owner (owner share rate); each non-sensitive image by every user (acceptance rate).
    """
    users = list(dict.fromkeys(private.owners))
    owner = np.asarray(private_owner)
    blocked_counts, uploads = 0.0, 0
    for uploader in users:  # one vectorised pass per uploader, not per image
        foreign = owner != uploader
        if foreign.any():
            rows = private.select(rows=torch.as_tensor(foreign))
            count = int(foreign.sum())
            blocked_counts += blocked_fraction(guard, rows, [uploader] * count) * count
            uploads += count
    accuracy = blocked_counts / uploads if uploads else float("nan")
    owner_blocked = blocked_fraction(guard, private, list(owner))
    public_blocked = np.mean(
        [blocked_fraction(guard, public, [u] * public.distances.shape[0]) for u in users]
    )
    return GuardPoint(
        alpha=guard.alpha,
        accuracy=accuracy,
        acceptance_rate=float(1.0 - public_blocked),
        owner_share_rate=float(1.0 - owner_blocked),
    )
