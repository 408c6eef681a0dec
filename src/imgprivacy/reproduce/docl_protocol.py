"""The DOCL evaluation protocol of the paper's sec. 3, for any data set and configuration."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

import numpy as np

from imgprivacy.docl.claims import POLICIES
from imgprivacy.docl.config import AutoencoderConfig
from imgprivacy.docl.evaluate import GuardPoint, guard_point, nearest_model_accuracy, one_class_auc
from imgprivacy.docl.guard import DEFAULT_MARGIN, Guard
from imgprivacy.errors import InvalidInputError
from imgprivacy.progress import ProgressFactory, resolve
from imgprivacy.reproduce.docl_data import DoclData
from imgprivacy.reproduce.docl_experiments import (
    adversary_matrix,
    bank_of,
    breadths,
    scalability,
    train_class_models,
    user_name,
)
from imgprivacy.reproduce.docl_results import DoclRun, ErrorStatistics

logger = logging.getLogger(__name__)

DEFAULT_ALPHAS = tuple(round(1.0 + 0.1 * i, 1) for i in range(11))  # [1, 2] as in the paper


@dataclass(frozen=True)
class ProtocolSettings:
    """What to measure besides accuracy (each step can be switched off to save time)."""

    alphas: tuple[float, ...] = DEFAULT_ALPHAS  # Guard sweep (paper Fig. 3)
    policies: tuple[str, ...] = tuple(POLICIES)  # Guard policies compared everywhere
    adversary: bool = True  # train N*(N-1) adversary models (paper Fig. 4)
    adversary_alpha: float = 1.0  # alpha of the Guard in the adversary matrix
    # Epochs of the adversaries' models (None = the users' epochs). Each adversary trains on two
    # classes, twice a user's data, so 10 epochs give it as many updates as 20 on one class;
    # it keeps the N*(N-1) models of the full run within the time budget.
    adversary_epochs: int | None = 10
    scalability_sizes: tuple[int, ...] = (1, 3, 5, 7, 9, 10)  # paper Fig. 5
    # The Guard's breadth gate (None = off): an own model vouches only when it claims at most this
    # many times the share of the test images that the narrowest claimant claims.
    breadth_ratio: float | None = None
    margin: float = DEFAULT_MARGIN  # the margin policy's factor (see imgprivacy.docl.guard)
    seed: int = 0  # seeds the choice of user subsets
    device: str = "cpu"  # torch device for training and scoring


def evaluate_configuration(
    data: DoclData,
    config: AutoencoderConfig,
    *,
    settings: ProtocolSettings,
    label: str,
    progress: ProgressFactory | None = None,
) -> DoclRun:
    """Train one model per class with ``config`` and measure everything the paper reports."""
    progress = resolve(progress)
    if config.feature_extractor != data.feature_extractor:
        raise InvalidInputError(
            f"The configuration {label!r} expects {config.feature_extractor!r} features but the "
            f"data were extracted with {data.feature_extractor!r}."
        )
    config = config.replace(input_dim=data.input_dim)
    classes = list(data.classes)
    owners = [user_name(c) for c in classes]

    step = progress(f"{label}: train users", len(classes))
    start = time.perf_counter()
    models = train_class_models(
        data.train_x,
        data.train_y,
        classes,
        config=config,
        negatives=data.negatives_x,
        device=settings.device,
        progress=step,
    )
    train_seconds = time.perf_counter() - start

    bank = bank_of(models, classes, device=settings.device)
    test_scores = bank.score(data.test_x)
    public_scores = bank.score(data.public_x)
    accuracy = nearest_model_accuracy(test_scores, data.test_y, classes)
    aucs = one_class_auc(test_scores, data.test_y, classes)
    owner_of_row = [owners[classes.index(int(c))] for c in data.test_y]

    step = progress(f"{label}: guard sweep", len(settings.policies) * len(settings.alphas))
    guard: dict[str, list[GuardPoint]] = {}
    for policy in settings.policies:
        guard[policy] = []
        for alpha in settings.alphas:
            point = guard_point(
                Guard(
                    policy=policy,
                    alpha=alpha,
                    margin=settings.margin,
                    breadth_ratio=settings.breadth_ratio,
                    breadth=breadths(test_scores, alpha=alpha),
                ),
                private=test_scores,
                private_owner=owner_of_row,
                public=public_scores,
            )
            guard[policy].append(point)
            step(f"{policy} alpha={alpha:g}")

    run = DoclRun(
        config=config,
        overall_accuracy=accuracy.overall,
        per_class_accuracy=accuracy.per_class,
        per_class_auc=aucs,
        mean_auc=float(np.mean(aucs)),
        guard=guard,
        scalability=scalability(
            test_scores, data.test_y, classes, sizes=settings.scalability_sizes, seed=settings.seed
        ),
        error_statistics=[
            ErrorStatistics(user=o, mu=m.error_mean_, sigma=m.error_std_)
            for o, m in zip(owners, models)
        ],
        train_seconds_total=train_seconds,
        train_seconds_per_user=train_seconds / len(classes),
    )
    if settings.adversary:
        step = progress(f"{label}: adversaries", len(classes) ** 2)
        guards = {
            p: Guard(
                policy=p,
                alpha=settings.adversary_alpha,
                margin=settings.margin,
                breadth_ratio=settings.breadth_ratio,
            )
            for p in settings.policies
        }
        attack_config = config.replace(
            epochs=min(config.epochs, settings.adversary_epochs or config.epochs)
        )
        attacks = adversary_matrix(
            train_features=data.train_x,
            train_labels=data.train_y,
            test_scores=test_scores,
            test_features=data.test_x,
            test_labels=data.test_y,
            classes=classes,
            config=attack_config,
            guards=guards,
            negatives=data.negatives_x,
            device=settings.device,
            progress=step,
        )
        off_diagonal = ~np.eye(len(classes), dtype=bool)
        run = dataclasses.replace(
            run,
            adversary_alpha=settings.adversary_alpha,
            adversary_epochs=attack_config.epochs,
            adversary={p: m.tolist() for p, m in attacks.blocked.items()},
            adversary_min_blocked_off_diagonal={
                p: float(np.min(m[off_diagonal])) for p, m in attacks.blocked.items()
            },
            adversary_victim_shared={p: m.tolist() for p, m in attacks.victim_shared.items()},
            adversary_victim_min_shared_off_diagonal={
                p: float(np.min(m[off_diagonal])) for p, m in attacks.victim_shared.items()
            },
        )
    logger.info("%s: overall accuracy %.4f, mean AUC %.4f", label, accuracy.overall, run.mean_auc)
    return run
