"""``imgprivacy reproduce docl-audit``: what MNIST users' guards reveal, with and without DP.

For each model (the paper-exact 784-32-784 and imgprivacy's default 784-256-32-256-784) and each
epsilon (``None`` = non-private training), the ten MNIST users train their guards, then:

- utility: the argmin accuracy and the Guard's operating point (policy ``margin``, alpha 1, the
  Guard's default margin; the service runs at a wider point, docs/service.md): others' private
  images blocked / owners' own shared / Fashion-MNIST shared;
- admission: whether the service (default settings, its probe set) accepts each user's guard;
- privacy: the audit of :mod:`imgprivacy.docl.audit` on each audited user's guard (decoder
  inversion against their training images, membership AUC against their held-out test images).

With ``public_layers`` the DP guards copy the first layer of a guard of the same model trained
without privacy on PUBLIC images (Fashion-MNIST training images, never digits) and keep it frozen
(``PrivacyBudget.public_model``); the Fashion-MNIST uploads of the operating point are test
images, disjoint from those.

Results are written to ``out/results.json`` after every finished (model, epsilon) run, the users'
guards to ``out/guards/<model>-epsilon-<epsilon>/`` (to audit them again with
``imgprivacy audit guard``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.table import Table

from imgprivacy.data import load_fashion_mnist
from imgprivacy.docl.audit import AuditResult, AuditSettings, audit_guard
from imgprivacy.docl.autoencoder import OneClassAutoencoder
from imgprivacy.docl.config import AutoencoderConfig
from imgprivacy.docl.evaluate import GuardPoint, guard_point, nearest_model_accuracy
from imgprivacy.docl.guard import Guard
from imgprivacy.docl.private_budget import PrivacyBudget
from imgprivacy.errors import InvalidInputError
from imgprivacy.features import get_extractor
from imgprivacy.progress import ProgressFactory, resolve
from imgprivacy.reports.results import percent, write_results
from imgprivacy.reproduce.docl_data import DoclData, mnist_experiment
from imgprivacy.reproduce.docl_experiments import bank_of, user_name
from imgprivacy.service.errors import Unprocessable
from imgprivacy.service.probe import ProbeSet, build_probe_set
from imgprivacy.service.settings import ServiceSettings
from imgprivacy.service.validation import validate_upload

logger = logging.getLogger(__name__)

EPSILONS: tuple[float | None, ...] = (None, 8.0, 4.0, 1.0)  # None = non-private
MODELS = {
    "paper-exact": AutoencoderConfig.paper(),
    "default": AutoencoderConfig(feature_extractor="pixels-smooth"),
}
QUICK = dict(train_per_class=1500, test_per_class=200, public_count=2000)
QUICK_AUDITED_USERS = (0, 3, 8)
PUBLIC_IMAGES = 10_000  # Fashion-MNIST training images the public first layer is trained on
PUBLIC_EPOCHS = 10
QUICK_AUDIT = AuditSettings(restarts=4, codes_per_restart=32, steps=200, calibration_images=300)
GUARD = dict(policy="margin", alpha=1.0)  # the audit's fixed point (the Guard's default margin)
# The goal: no near-copy, membership AUC <= 0.55, accuracy >= 95%, operating point within
# 3 points of non-private training.
GOAL_AUC = 0.55
GOAL_ACCURACY = 0.95
GOAL_POINTS = 0.03


@dataclass(frozen=True)
class UserAudit:
    user: str
    mu: float
    sigma: float
    audit: AuditResult


@dataclass(frozen=True)
class PrivacyRun:
    """One model trained by every user at one epsilon."""

    model: str
    epsilon: float | None  # None = non-private
    delta: float | None
    config: AutoencoderConfig
    overall_accuracy: float
    guard: GuardPoint  # GUARD's operating point
    users: list[UserAudit]
    admitted: list[str]  # users whose guard the service (default settings) admits
    refusals: dict[str, str]  # user -> why the service refuses their guard
    max_near_copy_fraction: float
    max_best_ssim: float
    max_membership_auc: float
    mean_membership_auc: float
    train_seconds_per_user: float
    meets_goal: bool | None = None  # against the same model's non-private run


@dataclass(frozen=True)
class DoclAuditResult:
    experiment: str
    quick: bool
    seed: int
    train_images_per_user: int
    guard_policy: dict
    runs: list[PrivacyRun]
    dp_public_first_layer: bool = False  # DP guards' first layer frozen from a public model
    figures: list[str] = field(default_factory=list)
    seconds: float = 0.0


def train_users(
    data: DoclData,
    config: AutoencoderConfig,
    *,
    epsilon: float | None,
    public_model: str | os.PathLike | None = None,
    device: str = "cpu",
    advance=None,
) -> list[OneClassAutoencoder]:
    """One guard per class, non-private (``epsilon`` None) or DP within ``epsilon`` (with the
    first layer of ``public_model`` frozen when given)."""
    models = []
    for cls in data.classes:
        rows = data.train_x[torch.as_tensor(data.train_y == cls)]
        privacy = (
            None if epsilon is None else PrivacyBudget(epsilon=epsilon, public_model=public_model)
        )
        models.append(OneClassAutoencoder(config, device=device).fit(rows, privacy=privacy))
        if advance:
            advance(user_name(cls))
    return models


def evaluate_privacy(
    data: DoclData,
    config: AutoencoderConfig,
    *,
    model: str,
    epsilon: float | None,
    audited: tuple[int, ...],
    settings: AuditSettings,
    probes: ProbeSet,
    public_model: str | os.PathLike | None = None,
    save_to: str | os.PathLike | None = None,
    device: str = "cpu",
    progress: ProgressFactory | None = None,
) -> PrivacyRun:
    """Train, measure utility, check admission with ``probes``, audit ``audited`` users; with
    ``save_to`` the users' guards are written there (``u{digit}.safetensors``)."""
    progress = resolve(progress)
    config = config.replace(input_dim=data.input_dim)
    label = f"{model}, epsilon {'inf' if epsilon is None else f'{epsilon:g}'}"
    start = time.perf_counter()
    models = train_users(
        data,
        config,
        epsilon=epsilon,
        public_model=public_model,
        device=device,
        advance=progress(f"{label}: train", len(data.classes)),
    )
    seconds = (time.perf_counter() - start) / len(data.classes)
    if save_to is not None:
        for cls, guard in zip(data.classes, models):
            guard.save(Path(save_to) / f"{user_name(cls)}.safetensors")
    bank = bank_of(models, data.classes, device=device)
    test_scores = bank.score(data.test_x)
    accuracy = nearest_model_accuracy(test_scores, data.test_y, data.classes)
    owners = [user_name(int(c)) for c in data.test_y]
    point = guard_point(
        Guard(**GUARD), private=test_scores, private_owner=owners, public=bank.score(data.public_x)
    )
    advance = progress(f"{label}: audit", len(audited))
    users = []
    for cls in audited:
        guard = models[data.classes.index(cls)]
        result = audit_guard(
            guard,
            data.train_x[torch.as_tensor(data.train_y == cls)],
            held_out=data.test_x[torch.as_tensor(data.test_y == cls)],
            settings=settings,
        )
        users.append(UserAudit(user_name(cls), guard.error_mean_, guard.error_std_, result))
        advance(user_name(cls))
    admitted, refusals = admission(models, data.classes, probes=probes)
    aucs = [u.audit.membership_auc for u in users]
    delta = None if models[0].privacy_ is None else models[0].privacy_.delta
    logger.info("%s: accuracy %.4f, guard %s", label, accuracy.overall, point)
    return PrivacyRun(
        model=model,
        epsilon=epsilon,
        delta=delta,
        config=config,
        overall_accuracy=accuracy.overall,
        guard=point,
        users=users,
        admitted=admitted,
        refusals=refusals,
        max_near_copy_fraction=max(u.audit.near_copy_fraction for u in users),
        max_best_ssim=max(u.audit.best_ssim for u in users),
        max_membership_auc=max(aucs),
        mean_membership_auc=float(np.mean(aucs)),
        train_seconds_per_user=seconds,
    )


def public_guard(
    config: AutoencoderConfig,
    *,
    out: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    device: str = "cpu",
) -> Path:
    """Train ``config``'s model without privacy on Fashion-MNIST training images (public data);
    write it to ``out`` and return the path (the DP guards' frozen first layer)."""
    extractor = get_extractor(config.feature_extractor)
    public = load_fashion_mnist("train", data_dir=data_dir)
    rows = np.random.default_rng(config.seed).permutation(len(public.images))[:PUBLIC_IMAGES]
    features = extractor.transform(public.images[np.sort(rows)])
    model = OneClassAutoencoder(
        config.replace(epochs=PUBLIC_EPOCHS, input_dim=int(features.shape[1])), device=device
    ).fit(features)
    return model.save(out)


def admission(
    models: list[OneClassAutoencoder], classes, *, probes: ProbeSet
) -> tuple[list[str], dict[str, str]]:
    """Which users' guards the service's admission (default settings) accepts, and why not."""
    settings = ServiceSettings(
        database_url="sqlite://",
        probe_count=len(probes) // 2,
        feature_extractor=models[0].config.feature_extractor,
    )
    admitted, refusals = [], {}
    for cls, model in zip(classes, models):
        try:
            validate_upload(
                model.to_bytes(), settings=settings, input_dim=model.config.input_dim, probes=probes
            )
            admitted.append(user_name(cls))
        except Unprocessable as exc:
            refusals[user_name(cls)] = str(exc)
    return admitted, refusals


def meets_goal(run: PrivacyRun, baseline: PrivacyRun) -> bool:
    """No near-copy, AUC <= 0.55, accuracy >= 95%, Guard within 3 points of ``baseline``."""
    gap = max(
        abs(getattr(run.guard, f) - getattr(baseline.guard, f))
        for f in ("accuracy", "acceptance_rate", "owner_share_rate")
    )
    return bool(
        len(run.refusals) == 0
        and run.max_near_copy_fraction == 0
        and run.max_membership_auc <= GOAL_AUC
        and run.overall_accuracy >= GOAL_ACCURACY
        and gap <= GOAL_POINTS
    )


def reproduce_docl_audit(
    *,
    out: str | os.PathLike,
    quick: bool = False,
    models: tuple[str, ...] = tuple(MODELS),
    epsilons: tuple[float | None, ...] = EPSILONS,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    public_layers: bool = True,
    train_per_class: int | None = None,
    device: str = "cpu",
    progress: ProgressFactory | None = None,
) -> DoclAuditResult:
    """Run every (model, epsilon); write ``out/results.json`` after each; return the results.

    With ``public_layers`` the DP guards keep a frozen first layer trained on Fashion-MNIST
    training images (:func:`public_guard`, written to ``out/public-<model>.safetensors``).
    ``train_per_class`` overrides the training images per user (``quick``: 1,500; else all)."""
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise InvalidInputError(f"Unknown models {unknown}; valid: {', '.join(MODELS)}.")
    started = time.perf_counter()
    settings = QUICK_AUDIT if quick else AuditSettings()
    sizes = dict(QUICK) if quick else {}
    if train_per_class is not None:
        sizes["train_per_class"] = train_per_class
    datasets: dict[str, DoclData] = {}
    runs: list[PrivacyRun] = []
    result = None
    for name in models:
        config = MODELS[name].replace(seed=seed)
        if config.feature_extractor not in datasets:
            datasets[config.feature_extractor] = mnist_experiment(
                data_dir=data_dir,
                seed=seed,
                feature_extractor=config.feature_extractor,
                **sizes,
            )
        data = datasets[config.feature_extractor]
        probes = build_probe_set(
            feature_extractor=config.feature_extractor,
            count=ServiceSettings.model_fields["probe_count"].default,
            data_dir=data_dir,
        )
        public_model = None
        if public_layers and any(e is not None for e in epsilons):
            public_model = public_guard(
                config.replace(input_dim=data.input_dim),
                out=Path(out) / f"public-{name}.safetensors",
                data_dir=data_dir,
                device=device,
            )
        baseline = None
        for epsilon in epsilons:
            run = evaluate_privacy(
                data,
                config,
                model=name,
                epsilon=epsilon,
                audited=QUICK_AUDITED_USERS if quick else data.classes,
                settings=settings,
                probes=probes,
                public_model=public_model,
                save_to=Path(out) / "guards" / f"{name}-epsilon-{epsilon or 'inf'}",
                device=device,
                progress=progress,
            )
            if epsilon is None:
                baseline = run
            elif baseline is not None:
                run = dataclasses.replace(run, meets_goal=meets_goal(run, baseline))
            runs.append(run)
            result = DoclAuditResult(
                experiment="docl-audit",
                quick=quick,
                seed=seed,
                train_images_per_user=int(np.bincount(data.train_y).min()),
                guard_policy=dict(GUARD),
                runs=list(runs),
                dp_public_first_layer=public_model is not None,
                seconds=time.perf_counter() - started,
            )
            write_results(result, out)
    return result


def summary_tables(results: DoclAuditResult) -> list[Table]:
    """The trade-off: utility and audit figures per model and epsilon."""
    table = Table(
        title="Privacy audit of MNIST guards"
        + (" (--quick)" if results.quick else "")
        + (" (DP: public first layer)" if results.dp_public_first_layer else "")
        + f" (Guard {results.guard_policy['policy']}, alpha {results.guard_policy['alpha']:g})"
    )
    for column in (
        "model",
        "epsilon",
        "accuracy",
        "others blocked / owners shared / Fashion shared",
        "near-copies (max)",
        "best SSIM (max)",
        "membership AUC (mean / max)",
        "admitted",
        "goal",
    ):
        table.add_column(column)
    for run in results.runs:
        table.add_row(
            run.model,
            "inf" if run.epsilon is None else f"{run.epsilon:g}",
            percent(run.overall_accuracy),
            f"{percent(run.guard.accuracy)} / {percent(run.guard.owner_share_rate)} / "
            f"{percent(run.guard.acceptance_rate)}",
            percent(run.max_near_copy_fraction),
            f"{run.max_best_ssim:.3f}",
            f"{run.mean_membership_auc:.3f} / {run.max_membership_auc:.3f}",
            f"{len(run.admitted)}/{len(run.admitted) + len(run.refusals)}",
            "-" if run.meets_goal is None else ("yes" if run.meets_goal else "no"),
        )
    return [table]
