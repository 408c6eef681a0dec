"""``imgprivacy reproduce anonymizer-faces``: the paper's FERG experiment (sec. 3, Table 1, Figs 3-4).

FERG cannot be had here, so the faces are the project's FERG-like analogue
(:func:`~imgprivacy.data.generate_ferg_like`: 6 characters x 7 expressions, 50x50 grey), or a user's
doubly-labelled images through a CSV manifest. Identity is the private label (the only label the
anonymizer sees); expression is the utility label, used only to assess what was kept.

Runs, all from one shared autoencoder pre-training (phase 1 does not depend on the target):

* ``standard`` - the eq. (12) method, the discriminator's real samples from every identity; its
  outputs are released as they are (``standard_no_substitution``) and, for every target K, after
  the paper's substitution by the nearest training image of K (``standard``);
* ``intertwined`` - for every target K, the discriminator's real samples restricted to identity K,
  then the same substitution (the paper's Table 1);
* ``code_match`` - the code-match anonymizer (:mod:`~imgprivacy.anonymizer.code_match`), trained
  once: for every target K, K's training image nearest to the input in a contrastive code
  whitened per identity (identity-free, expression-bearing);
* ``swap`` (when ``methods`` names it) - the identity-swap anonymizer (:mod:`~imgprivacy.anonymizer.swap_model`), trained once:
  for every target K, ``decoder(z, K)`` with an identity-free code z (``swap``) and the target's
  training image nearest in z (``swap_code_nearest``).

The data's own ceiling for a method that renders every face as one identity is measured too: an
expression classifier trained on all identities but one, tested on that one
(:mod:`~imgprivacy.reproduce.anonymizer_faces_transfer`).

Each released set is assessed as on pen-digits: fresh attackers (CNN, random forest) trained on the
processed training images for identity and for expression, accuracy on the processed test images;
the headline is the strongest identity attacker and the best expression classifier.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from imgprivacy.anonymizer.config import AnonymizerConfig
from imgprivacy.anonymizer.evaluate import assess_tasks, task_summary
from imgprivacy.anonymizer.model import Anonymizer
from imgprivacy.anonymizer.substitution.target_nearest import substitute_with_identity
from imgprivacy.data.labelled_faces import ferg_like_data, manifest_data
from imgprivacy.errors import InvalidInputError
from imgprivacy.progress import ProgressFactory
from imgprivacy.reports.results import write_results
from imgprivacy.reproduce.anonymizer_faces_output import EvolutionRecorder, write_figures
from imgprivacy.reproduce.anonymizer_faces_settings import (  # re-exported: the runner's API
    GOALS,
    PAPER_CHANCE,
    PAPER_TABLE1,
    PAPER_TARGETS,
    FacesSettings,
    bars_met,
    chance_accuracy,
    goal_for,
)
from imgprivacy.reproduce.anonymizer_faces_swap import run_code_match, run_swap
from imgprivacy.reproduce.anonymizer_faces_transfer import expression_transfer
from imgprivacy.reproduce.anonymizer_pendigits import output_spread, save_processed
from imgprivacy.reproduce.anonymizer_results import FacesAttack, FacesData, FacesResult, FacesRow

__all__ = [
    "GOALS",
    "PAPER_CHANCE",
    "PAPER_TABLE1",
    "PAPER_TARGETS",
    "FacesSettings",
    "chance_accuracy",
    "goal_for",
    "reproduce_anonymizer_faces",
]

logger = logging.getLogger(__name__)


def reproduce_anonymizer_faces(
    *,
    out: str | os.PathLike,
    quick: bool = False,
    seed: int = 0,
    device: str = "cpu",
    settings: FacesSettings | None = None,
    manifest: str | os.PathLike | None = None,
    private_label: str = "identity",
    utility_label: str | None = "expression",
    progress: ProgressFactory | None = None,
) -> FacesResult:
    """Run the standard and the intertwined method, assess them, write figures and results."""
    out = Path(out)
    started = time.perf_counter()
    settings = settings or (FacesSettings.quick(seed) if quick else FacesSettings.full(seed))
    base = settings.anonymizer.replace(seed=seed)
    if manifest is not None:
        data = manifest_data(
            manifest,
            private_label=private_label,
            utility_label=utility_label,
            image_size=base.image_size,
            seed=seed,
        )
    else:
        data = ferg_like_data(per_cell=settings.per_cell, seed=seed, variation=settings.variation)
    n_private = len(data.private_classes)
    bad = [t for t in settings.targets if not 0 <= t < n_private]
    if bad:
        raise InvalidInputError(
            f"Expected target identities among the {n_private} private classes (0..{n_private - 1}"
            f"), got {bad}."
        )
    train = data.train
    labels = {data.private_name: data.private, data.utility_name: data.utility}
    p_key, u_key = f"{data.private_name}_accuracy", f"{data.utility_name}_accuracy"

    def assessed(images: np.ndarray, description: str) -> FacesRow:
        t0 = time.perf_counter()
        result = task_summary(
            assess_tasks(
                images,
                labels=labels,
                split=data.split,
                config=settings.attack,
                device=device,
                progress=progress,
                description=description,
            )
        )
        result["assess_seconds"] = time.perf_counter() - t0
        result["output_spread"] = output_spread(images)
        return result

    def distortion(images: np.ndarray) -> float:
        diff = np.abs(images.astype(np.float32) - data.images.astype(np.float32)) / 255.0
        return float(diff.mean())

    baseline = assessed(data.images, "attackers on originals")

    # phase 1 once; every run branches from it
    pretrained = out / "checkpoints" / "pretrained.ckpt"
    pre = Anonymizer(base.replace(disc_pretrain_epochs=0, adversarial_epochs=0), device=device).fit(
        data.images[train],
        data.private[train],
        checkpoint=pretrained,
        resume=True,
        progress=progress,
    )
    test_rows = np.flatnonzero(data.split == 2)
    rng = np.random.default_rng(seed)
    evolution_picks = np.array(
        [rng.choice(np.flatnonzero(train)), rng.choice(np.flatnonzero(data.split == 1))]
    )
    pair_picks = rng.choice(test_rows, size=min(24, len(test_rows)), replace=False)
    start_frame = pre.transform(data.images[evolution_picks], substitution=False)

    def train_run(
        name: str, config: AnonymizerConfig
    ) -> tuple[Anonymizer, EvolutionRecorder, float]:
        """(model, its Fig. 3 frames, training seconds) of one run branched from phase 1."""
        checkpoint = out / "checkpoints" / f"{name}.ckpt"
        if not checkpoint.exists():
            shutil.copyfile(pretrained, checkpoint)
        recorder = EvolutionRecorder(data.images[evolution_picks], config.image_size)
        t0 = time.perf_counter()
        model = Anonymizer(config, device=device).fit(
            data.images[train],
            data.private[train],
            checkpoint=checkpoint,
            resume=True,
            progress=progress,
            on_epoch=recorder.on_epoch,
        )
        seconds = time.perf_counter() - t0
        model.save(out / "models" / f"{name}.safetensors")
        return model, recorder, seconds

    runs: dict[str, dict] = {}  # name -> figures' inputs

    def release(name: str, images: np.ndarray, raw: np.ndarray, recorder, entry: dict) -> FacesRow:
        save_processed(out / "anonymized" / f"{name}.npz", images, labels=labels, split=data.split)
        row = {
            **entry,
            **assessed(images, f"attackers on {name}"),
            "distortion": distortion(images),
        }
        runs[name] = {"released": images, "raw": raw, "recorder": recorder}
        logger.info("%s: %s", name, row)
        return row

    # the standard method
    standard_model, standard_recorder, standard_seconds = train_run("standard", base)
    standard_raw = standard_model.transform(data.images, substitution=False)
    standard_no_sub = release(
        "standard",
        standard_raw,
        standard_raw,
        standard_recorder,
        {"target_identity": None, "train_seconds": standard_seconds},
    )
    standard, intertwined = [], []
    for target in settings.targets:
        substituted = substitute_with_identity(
            standard_raw,
            train_images=data.images[train],
            train_identity=data.private[train],
            target_identity=target,
        ).images
        standard.append(
            release(
                f"standard_target_{target}",
                substituted,
                standard_raw,
                standard_recorder,
                {"target_identity": target},
            )
        )
    # the intertwined method: target-identity discriminator, then substitution
    for target in settings.targets:
        name = f"intertwined_target_{target}"
        config = base.replace(target_identity=target, substitution="target")
        model, recorder, seconds = train_run(name, config)
        raw = model.transform(data.images, substitution=False)
        row = release(
            name,
            model.transform(data.images),
            raw,
            recorder,
            {"target_identity": target, "train_seconds": seconds},
        )
        row["paper"] = PAPER_TABLE1.get(target) if manifest is None else None
        intertwined.append(row)

    # the methods trained once for every target
    code_match, swap, swap_code_nearest = [], [], []
    if "code_match" in settings.methods:
        code_match = run_code_match(
            data=data,
            config=settings.code_match.replace(seed=seed),
            targets=settings.targets,
            release=release,
            out=out,
            device=device,
        )
    if "swap" in settings.methods:
        swap, swap_code_nearest = run_swap(
            data=data,
            config=settings.swap.replace(seed=seed),
            targets=settings.targets,
            evolution_picks=evolution_picks,
            release=release,
            out=out,
            device=device,
        )
    for row in [*code_match, *swap, *swap_code_nearest]:
        row["paper"] = PAPER_TABLE1.get(row["target_identity"]) if manifest is None else None
    transfer = expression_transfer(
        data.images,
        utility=data.utility,
        private=data.private,
        split=data.split,
        attack=settings.attack,
        held_out=settings.transfer_held_out,
        device=device,
    )
    chance = chance_accuracy(data.private, data.split)
    goal = goal_for(baseline[u_key], chance)

    methods = {
        "standard": standard,
        "intertwined": intertwined,
        "code_match": code_match,
        "swap": swap,
        "swap_code_nearest": swap_code_nearest,
    }
    goal_met_by, paper_bar_met_by = bars_met(
        methods, goal=goal, key=(p_key, u_key), paper=manifest is None
    )
    meets = goal_met_by["intertwined"]
    results = FacesResult(
        experiment="anonymizer-faces",
        quick=quick,
        seed=seed,
        data=FacesData(
            source=data.source,
            images=len(data.images),
            train_images=int(train.sum()),
            validation_images=int((data.split == 1).sum()),
            test_images=int((data.split == 2).sum()),
            private_label=data.private_name,
            utility_label=data.utility_name,
            private_classes=list(data.private_classes),
            utility_classes=list(data.utility_classes),
            image_size=base.image_size,
        ),
        baseline={**baseline, "spread": output_spread(data.images)},
        chance={p_key: chance, u_key: chance_accuracy(data.utility, data.split)},
        standard_no_substitution=standard_no_sub,
        standard=standard,
        intertwined=intertwined,
        code_match=code_match,
        swap=swap,
        swap_code_nearest=swap_code_nearest,
        expression_transfer=transfer,
        code_match_config=settings.code_match.replace(seed=seed),
        swap_config=settings.swap.replace(seed=seed),
        paper_table1={str(k): dict(v) for k, v in PAPER_TABLE1.items()},
        paper_chance=dict(PAPER_CHANCE) if manifest is None else None,
        goal=goal,
        targets_meeting_goal=meets,
        goal_met_by=goal_met_by,
        paper_bar_met_by=paper_bar_met_by,
        config=base,
        attack=FacesAttack(
            families=list(settings.attack.families),
            cnn_epochs=settings.attack.cnn_epochs,
            trees=settings.attack.trees,
        ),
    )
    figures = write_figures(results, data, runs, start_frame, evolution_picks, pair_picks, out)
    results = dataclasses.replace(
        results, figures=[str(p) for p in figures], seconds=time.perf_counter() - started
    )
    write_results(results, out)
    return results
