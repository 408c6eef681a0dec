"""The warp-game part of ``imgprivacy reproduce anonymizer-pendigits``: train, select, release.

For every lambda the warp game trains once (writer labels only) and its outputs are clustered for
every number of clusters (:func:`~imgprivacy.reproduce.anonymizer_pendigits_frontier.cluster_series`,
beside the hand-made deskew and, in the full run, the UMAP baseline). One (lambda, k) is chosen
on the validation split alone (:func:`~imgprivacy.reproduce.anonymizer_pendigits_frontier.select`);
only then are the five attacker families, realism and the transfer utility measured on the test
split, for that release and beside its lambda = 0 ablation at the same k.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from imgprivacy.anonymizer.evaluate import AttackConfig, assess
from imgprivacy.anonymizer.release_quality import realism, transfer_accuracy
from imgprivacy.anonymizer.substitution.spectral_clusters import SpectralClusterSubstitution
from imgprivacy.anonymizer.warp_model import WarpAnonymizer
from imgprivacy.reproduce.anonymizer_pendigits_frontier import (
    FrontierSettings,
    cluster_series,
    moment_deskew,
    select,
    umap_series,
)

logger = logging.getLogger(__name__)


@dataclass
class FrontierRun:
    """What :func:`run_frontier` measured, and the released images to save."""

    frontier: list[dict]
    selected: dict
    released: dict[str, np.ndarray]  # file stem -> uint8 (N, S, S)
    models: dict[str, WarpAnonymizer]  # file stem -> model (selected and its ablation)


def _light(attack: AttackConfig) -> AttackConfig:
    """The CNN and the forest among ``attack``'s families (realism and transfer need no more)."""
    families = tuple(f for f in attack.families if f in ("cnn", "random_forest"))
    return dataclasses.replace(attack, families=families or attack.families[:1])


def _warp_rows(data, *, settings: FrontierSettings, seed: int, device: str):
    """Train the game per lambda and cluster its outputs for every count."""
    train = data.split == 0
    rows: list[dict] = []
    models: dict[float, WarpAnonymizer] = {}
    fitted: dict[tuple[float, int], SpectralClusterSubstitution] = {}
    for lam in settings.lambdas:
        started = time.perf_counter()
        config = settings.warp.replace(lam=lam, seed=seed)
        model = WarpAnonymizer(config, device=device).fit(data.images[train], data.writer[train])
        models[lam] = model
        label = "warp-game lambda=0" if lam == 0 else f"warp-game (lambda={lam:g})"
        series, methods = cluster_series(
            model._warp,
            data,
            label=label,
            counts=settings.prototype_counts,
            seed=seed,
            pool_size=config.pool_size,
            extra={"method": "warp-game", "lambda": lam},
        )
        for row in series:
            row["train_seconds"] = time.perf_counter() - started
        rows += series
        fitted.update({(lam, k): m for k, m in methods.items()})
    return rows, models, fitted


def _measure(images: np.ndarray, data, *, chosen: dict, attack: AttackConfig, seed: int, device):
    """Test figures of the selected release: five families, the vote, realism and transfer."""
    assessment = assess(
        images,
        writer=data.writer,
        digit=data.digit,
        split=data.split,
        config=attack,
        device=device,
    )
    test = {
        **assessment.to_dict(),
        "cluster_majority_writer": chosen["test_writer"],
        "cluster_majority_digit": chosen["test_digit"],
    }
    # the headline: the strongest of the five families and the cluster-majority vote
    test["writer"] = max(assessment.writer.best, chosen["test_writer"])
    test["digit"] = assessment.digit.best
    return {
        "validation": {"writer": chosen["val_writer"], "digit": chosen["val_digit"]},
        "test": test,
        "distortion": chosen["distortion"],
        "realism": realism(
            data.images, images, split=data.split, config=_light(attack), seed=seed
        ).per_family,
        "transfer_digit_accuracy": transfer_accuracy(
            data.images, images, labels=data.digit, split=data.split, config=_light(attack)
        ).per_family,
    }


def run_frontier(
    data, *, settings: FrontierSettings, goal_writer: float, seed: int, device: str = "cpu"
) -> FrontierRun:
    """Train the warp game per lambda, cluster per count, select on validation, then measure."""
    rows, models, fitted = _warp_rows(data, settings=settings, seed=seed, device=device)
    pool_size = settings.warp.pool_size
    deskew_rows, _ = cluster_series(
        lambda x: torch.as_tensor(moment_deskew(x.view(-1, 20, 20).numpy()).reshape(len(x), -1)),
        data,
        label="moment deskew (hand-made)",
        counts=settings.prototype_counts,
        seed=seed,
        pool_size=pool_size,
        extra={"method": "deskew"},
    )
    rows += deskew_rows
    if settings.umap_baseline:
        rows += umap_series(data, counts=settings.prototype_counts, seed=seed)

    chosen = select(
        [r for r in rows if r.get("method") == "warp-game"],
        writer_at_most=goal_writer,
        n_validation=int((data.split == 1).sum()),
    )
    lam, k = chosen["lambda"], chosen["n_prototypes"]
    ablation = next(
        (
            r
            for r in rows
            if r.get("method") == "warp-game" and r["lambda"] == 0 and r["n_prototypes"] == k
        ),
        None,
    )
    released, saved_models = {}, {}
    # the pool size is the models' (config.pool_size in the saved files)
    selected = {"lambda": lam, "n_prototypes": k, "validation": {}, "test": {}}
    for name, row_lam in (("selected", lam), ("ablation", 0.0)):
        if (row_lam, k) not in fitted:
            continue
        model = models[row_lam]
        model.substitution_ = fitted[(row_lam, k)]
        model.config = model.config.replace(n_prototypes=k)
        stem = f"warp_lambda_{row_lam:g}_k{k}"
        images = model.transform(data.images)
        released[stem] = images
        saved_models[stem] = model
        if name == "selected":
            selected["release"] = stem
            selected.update(
                _measure(
                    images, data, chosen=chosen, attack=settings.attack, seed=seed, device=device
                )
            )
    selected["ablation_lambda_0"] = ablation
    return FrontierRun(frontier=rows, selected=selected, released=released, models=saved_models)


def release_warp_game(
    data,
    *,
    settings: FrontierSettings,
    goals: Mapping[str, float],
    out: Path,
    save_processed,
    seed: int,
    device: str = "cpu",
) -> FrontierRun:
    """:func:`run_frontier`, then save every release (``anonymized/<stem>.npz``, via
    ``save_processed``) and its model (``models/<stem>.safetensors``), and mark whether the
    selected release meets ``goals`` on the test split."""
    run = run_frontier(
        data,
        settings=settings,
        goal_writer=goals["writer_accuracy_at_most"],
        seed=seed,
        device=device,
    )
    for stem, images in run.released.items():
        save_processed(
            out / "anonymized" / f"{stem}.npz",
            images,
            labels={"writer": data.writer, "digit": data.digit},
            split=data.split,
        )
        run.models[stem].save(out / "models" / f"{stem}.safetensors")
    test = run.selected["test"]
    run.selected["meets_goal"] = bool(
        test["writer"] <= goals["writer_accuracy_at_most"]
        and test["digit"] >= goals["digit_accuracy_at_least"]
    )
    return run
