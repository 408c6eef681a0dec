"""Building blocks of the DOCL experiments: train users, attack with adversaries, subsample users.

These are shared by every ``imgprivacy reproduce docl-*`` command: the data set and the feature
extractor differ, the protocol does not.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from imgprivacy.docl.autoencoder import OneClassAutoencoder
from imgprivacy.docl.bank import BankScores, FilterBank
from imgprivacy.docl.config import AutoencoderConfig
from imgprivacy.docl.evaluate import nearest_model_accuracy
from imgprivacy.docl.guard import Guard
from imgprivacy.progress import Advance

logger = logging.getLogger(__name__)


def user_name(cls: int) -> str:
    return f"u{cls}"


def train_class_models(
    features: torch.Tensor,
    labels: np.ndarray,
    classes: Sequence[int],
    *,
    config: AutoencoderConfig,
    negatives: torch.Tensor | None = None,
    device: str = "cpu",
    progress: Advance | None = None,
) -> list[OneClassAutoencoder]:
    """One autoencoder per class, trained on that class's rows only (user i owns class i);
    against ``negatives`` when ``config.negative_weight > 0``."""
    models = []
    negatives = negatives if config.negative_weight > 0 else None
    for cls in classes:
        rows = features[torch.as_tensor(np.asarray(labels) == cls)]
        models.append(OneClassAutoencoder(config, device=device).fit(rows, negatives=negatives))
        logger.info(
            "trained %s on %d images: mu=%.3f sigma=%.3f",
            user_name(cls),
            len(rows),
            models[-1].error_mean_,
            models[-1].error_std_,
        )
        if progress:
            progress(user_name(cls))
    return models


def bank_of(
    models: Sequence[OneClassAutoencoder], classes: Sequence[int], *, device: str = "cpu"
) -> FilterBank:
    cfg = models[0].config
    bank = FilterBank(
        input_dim=cfg.input_dim, feature_extractor=cfg.feature_extractor, device=device
    )
    bank.add_many(
        [(user_name(c), m) for c, m in zip(classes, models)],
        model_ids=[f"{user_name(c)}/0" for c in classes],
    )
    return bank


ADVERSARY_MODEL = "adversary"  # the model id suffix of an adversary's replacement model


def with_replaced_model(
    scores: BankScores, column: int, model: OneClassAutoencoder, features: torch.Tensor
) -> BankScores:
    """``scores`` as if model ``column`` were ``model`` (only that column is recomputed; it is
    named ``<owner>/adversary`` and admitted after every other model)."""
    distances = scores.distances.clone()
    distances[:, column] = model.distances(features)
    mean = scores.error_mean.clone()
    std = scores.error_std.clone()
    mean[column] = model.error_mean_
    std[column] = model.error_std_
    ids = list(scores.model_ids)
    ids[column] = f"{scores.owners[column]}/{ADVERSARY_MODEL}"
    admitted = None
    if scores.admitted is not None:  # the replacement joins after every model of the bank
        admitted = scores.admitted.clone()
        admitted[column] = int(scores.admitted.max()) + 1
    return BankScores(distances, mean, std, tuple(ids), scores.owners, admitted)


def breadths(scores: BankScores, *, alpha: float) -> dict[str, float]:
    """{model id: fraction of the scored reference inputs it claims (d <= mu + alpha*sigma)}."""
    bound = scores.error_mean.to(torch.float64) + alpha * scores.error_std.to(torch.float64)
    claimed = scores.distances.to(torch.float64) <= bound[None, :]
    return dict(zip(scores.model_ids, claimed.to(torch.float64).mean(dim=0).tolist()))


@dataclass(frozen=True)
class AdversaryMatrices:
    """Per Guard name, (adversary, victim) matrices of the adversary experiment (paper Fig. 4).

    ``blocked[name][a, v]``: the fraction of victim v's test images the Guard blocks when
    adversary a, whose model was trained on their own class plus v's, uploads them (the diagonal:
    an owner uploading their own images with an honest model, blocked).
    ``victim_shared[name][a, v]``: the fraction of v's test images the Guard shares when v
    uploads them while a's model is in the bank: what the attack leaves the victim of their own
    service (the diagonal: the owner's share rate with honest models only).
    """

    blocked: dict[str, np.ndarray]
    victim_shared: dict[str, np.ndarray]


def adversary_matrix(
    *,
    train_features: torch.Tensor,
    train_labels: np.ndarray,
    test_scores: BankScores,
    test_features: torch.Tensor,
    test_labels: np.ndarray,
    classes: Sequence[int],
    config: AutoencoderConfig,
    guards: dict[str, Guard],
    negatives: torch.Tensor | None = None,
    device: str = "cpu",
    progress: Advance | None = None,
) -> AdversaryMatrices:
    """Paper Fig. 4, and what each attack costs its victim (:class:`AdversaryMatrices`).

    The adversary a replaces their autoencoder by one trained on their own class plus v's, then
    uploads v's test images; v then uploads the same images themselves. Guards with the breadth
    gate get every model's breadth on all test images (the public reference, as the service's
    probe digits), the adversary's model included. Adversaries train as users do (against
    ``negatives`` when ``config.negative_weight > 0``).
    """
    negatives = negatives if config.negative_weight > 0 else None
    n = len(classes)
    blocked_by = {name: np.zeros((n, n)) for name in guards}
    shared_by = {name: np.zeros((n, n)) for name in guards}
    train_labels = np.asarray(train_labels)
    for a, adversary in enumerate(classes):
        for v, victim in enumerate(classes):
            attack = None
            if a != v:
                mask = torch.as_tensor(np.isin(train_labels, [adversary, victim]))
                attack = OneClassAutoencoder(config, device=device).fit(
                    train_features[mask], negatives=negatives
                )
            decided = decide_attack(
                test_scores, test_features, test_labels, a, adversary, victim, attack, guards
            )
            for name, (blocked, shared) in decided.items():
                blocked_by[name][a, v] = blocked
                shared_by[name][a, v] = shared
            if progress:
                progress(f"{user_name(adversary)} vs {user_name(victim)}")
    return AdversaryMatrices(blocked=blocked_by, victim_shared=shared_by)


def decide_attack(
    test_scores: BankScores,
    test_features: torch.Tensor,
    test_labels: np.ndarray,
    column: int,
    adversary: int,
    victim: int,
    attack: OneClassAutoencoder | None,
    guards: dict[str, Guard],
) -> dict[str, tuple[float, float]]:
    """{guard name: (adversary's uploads of the victim's test images blocked, the victim's own
    uploads of them shared)} while ``attack`` replaces model ``column`` (the adversary's); with
    ``attack=None`` the bank is honest. Guards with the breadth gate get every model's breadth on
    all test images (the public reference, as the service's probe digits)."""
    rows = torch.as_tensor(np.asarray(test_labels) == victim)
    victim_scores = test_scores.select(rows=rows)
    reference = test_scores
    if attack is not None:
        victim_scores = with_replaced_model(victim_scores, column, attack, test_features[rows])
        if any(guard.breadth_ratio is not None for guard in guards.values()):
            reference = with_replaced_model(test_scores, column, attack, test_features)
    count = int(rows.sum())
    result = {}
    for name, guard in guards.items():
        if guard.breadth_ratio is not None:
            guard.set_breadth(breadths(reference, alpha=guard.alpha))
        blocked, _ = guard.block_mask(victim_scores, [user_name(adversary)] * count)
        own, _ = guard.block_mask(victim_scores, [user_name(victim)] * count)
        result[name] = (float(blocked.double().mean()), 1.0 - float(own.double().mean()))
    return result


def scalability(
    scores: BankScores,
    labels: np.ndarray,
    classes: Sequence[int],
    *,
    sizes: Sequence[int] = (1, 3, 5, 7, 9, 10),
    max_subsets: int = 20,
    seed: int = 0,
) -> dict[str, list[float | None]]:
    """Paper Fig. 5: per-class accuracy when only k of the users are registered.

    For each k, up to ``max_subsets`` random k-subsets of users (all of them when fewer exist)
    are scored on their own classes' test images; a class's accuracy is averaged over the subsets
    that contain it (``None`` when no subset does).
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    n = len(classes)
    result = {}
    for k in sizes:
        k = min(k, n)
        every = list(itertools.combinations(range(n), k))
        if len(every) > max_subsets:
            picks = rng.choice(len(every), size=max_subsets, replace=False)
            every = [every[i] for i in sorted(picks)]
        sums, counts = np.zeros(n), np.zeros(n)
        for subset in every:
            subset_classes = [classes[i] for i in subset]
            rows = torch.as_tensor(np.isin(labels, subset_classes))
            acc = nearest_model_accuracy(
                scores.select(models=list(subset), rows=rows), labels[rows.numpy()], subset_classes
            )
            for i, value in zip(subset, acc.per_class):
                sums[i] += value
                counts[i] += 1
        result[str(k)] = [float(s / c) if c else None for s, c in zip(sums, counts)]
    return result
