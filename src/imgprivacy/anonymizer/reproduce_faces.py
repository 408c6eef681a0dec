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

Each released set is assessed as on pen-digits: fresh attackers (CNN, random forest) trained on the
processed training images for identity and for expression, accuracy on the processed test images;
the headline is the strongest identity attacker and the best expression classifier.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from imgprivacy.anonymizer.config import AnonymizerConfig
from imgprivacy.anonymizer.evaluate import AttackConfig, assess_tasks, task_summary
from imgprivacy.anonymizer.model import Anonymizer, as_pixels
from imgprivacy.anonymizer.reproduce import output_spread, save_processed
from imgprivacy.anonymizer_tools.substitution import substitute_with_identity
from imgprivacy.data.ferg_like import FERG_VARIATIONS, generate_ferg_like
from imgprivacy.data.manifest import read_manifest
from imgprivacy.data.splits import random_split_codes
from imgprivacy.errors import InvalidInputError, UnknownNameError
from imgprivacy.progress import ProgressFactory
from imgprivacy.reports import anonymizer_figures
from imgprivacy.reports.results import write_results

logger = logging.getLogger(__name__)

PAPER_TARGETS = (0, 2, 3, 4, 5)
# Table 1 of the paper (FERG, intertwined method with substitution), in [0, 1]
PAPER_TABLE1 = {
    0: {"identity_accuracy": 0.4247, "expression_accuracy": 0.7245},
    2: {"identity_accuracy": 0.3825, "expression_accuracy": 0.7746},
    3: {"identity_accuracy": 0.3621, "expression_accuracy": 0.7232},
    4: {"identity_accuracy": 0.3277, "expression_accuracy": 0.6679},
    5: {"identity_accuracy": 0.3162, "expression_accuracy": 0.7295},
}
GOALS = {  # the goal for the intertwined method
    "identity_accuracy_above_chance_at_most": 0.10,
    "expression_accuracy_relative_to_original_at_least": 0.85,
}


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


def manifest_data(
    manifest: str | os.PathLike,
    *,
    private_label: str,
    utility_label: str | None,
    image_size: int,
    seed: int,
) -> FacesData:
    """A user's manifest, split 70 / 15 / 15 at random (seeded)."""
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
    split = random_split_codes(
        len(data), fractions=(0.7, 0.15, 0.15), rng=np.random.default_rng(seed)
    )
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


def faces_anonymizer_config(seed: int = 0, **overrides) -> AnonymizerConfig:
    """The anonymizer used on 50x50 faces.

    Chosen on FERG-like "studio" faces (per_cell=100, target 0, random forest on the released
    images; identity / expression, originals 100% / 97%, chance 17% / 14%):

    * a conv autoencoder: the MLP one reconstructed only a blurred average face;
    * 30 pre-training epochs and a 128-d code: with 10 epochs and 64 dims the autoencoder's own
      outputs kept the expression at 24% (lambda 0), with 30 / 128 at 85%;
    * lambda 0.1: at lambda 1 (anchor weight 1, 5 or 20) phase 3 collapsed every output to one
      blank image within two epochs (the private gap cannot close on six very distinct
      characters, so the autoencoder escapes to images the classifier cannot read); lambda 0
      keeps the identity (99% before, 76% after substitution); lambda 0.1 / 0.3: 30% / 27%
      identity and 22% / 21% expression after substitution.
    """
    values = dict(
        image_size=50,
        ae_arch="conv",
        ae_channels=16,
        code_dim=128,
        recon_weight=1.0,
        lam=0.1,
        substitution="none",
        pretrain_epochs=30,
        disc_pretrain_epochs=6,
        adversarial_epochs=6,
        seed=seed,
    )
    values.update(overrides)
    return AnonymizerConfig(**values)


@dataclass(frozen=True)
class FacesSettings:
    """What a faces reproduction trains and how hard it attacks."""

    per_cell: int = 200  # FERG-like images per (identity, expression): 8400 images
    variation: str = "studio"  # FERG_VARIATIONS preset: "studio" renders like FERG, "wild" harder
    targets: tuple[int, ...] = PAPER_TARGETS
    anonymizer: AnonymizerConfig = field(default_factory=faces_anonymizer_config)
    attack: AttackConfig = AttackConfig()

    @classmethod
    def quick(cls, seed: int = 0) -> FacesSettings:
        """A few-minute demo: 1260 faces, one target, short training, lighter attackers."""
        return cls(
            per_cell=30,
            targets=(0,),
            anonymizer=faces_anonymizer_config(
                seed, pretrain_epochs=15, disc_pretrain_epochs=3, adversarial_epochs=3
            ),
            attack=AttackConfig(cnn_epochs=4, trees=100, seed=seed),
        )

    @classmethod
    def full(cls, seed: int = 0) -> FacesSettings:
        return cls(anonymizer=faces_anonymizer_config(seed), attack=AttackConfig(seed=seed))


class EvolutionRecorder:
    """Fig. 3: the autoencoder's output for a few fixed images after every epoch of a run."""

    def __init__(self, images: np.ndarray, image_size: int):
        self.x = as_pixels(images, image_size=image_size)
        self.frames: list[np.ndarray] = []  # (K, S, S) uint8 per recorded epoch
        self.epochs: list[int] = []

    def record(self, autoencoder: torch.nn.Module, epoch: int) -> None:
        training = autoencoder.training
        autoencoder.eval()
        device = next(autoencoder.parameters()).device
        with torch.inference_mode():
            out = torch.sigmoid(autoencoder(self.x.to(device))).cpu().numpy()
        autoencoder.train(training)
        side = int(round(self.x.shape[1] ** 0.5))
        self.frames.append(np.rint(out * 255).astype(np.uint8).reshape(-1, side, side))
        self.epochs.append(epoch)

    def on_epoch(self, trainer, record: dict) -> None:
        self.record(trainer.nets.autoencoder, record["epoch"])


def goal_for(original_expression: float, chance: float) -> dict:
    """The issue's goal in absolute terms for this data: identity and expression bounds."""
    return {
        "identity_accuracy_at_most": chance + GOALS["identity_accuracy_above_chance_at_most"],
        "expression_accuracy_at_least": GOALS["expression_accuracy_relative_to_original_at_least"]
        * original_expression,
    }


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
) -> dict:
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

    def assessed(images: np.ndarray, description: str) -> dict:
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

    def release(name: str, images: np.ndarray, raw: np.ndarray, recorder, entry: dict) -> dict:
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

    chance = 1.0 / n_private
    goal = goal_for(baseline[u_key], chance)
    meets = [
        row["target_identity"]
        for row in intertwined
        if row[p_key] <= goal["identity_accuracy_at_most"]
        and row[u_key] >= goal["expression_accuracy_at_least"]
    ]
    results = {
        "experiment": "anonymizer-faces",
        "quick": quick,
        "seed": seed,
        "data": {
            "source": data.source,
            "images": len(data.images),
            "train_images": int(train.sum()),
            "validation_images": int((data.split == 1).sum()),
            "test_images": int((data.split == 2).sum()),
            "private_label": data.private_name,
            "utility_label": data.utility_name,
            "private_classes": list(data.private_classes),
            "utility_classes": list(data.utility_classes),
            "image_size": base.image_size,
        },
        "baseline": {**baseline, "spread": output_spread(data.images)},
        "chance": {
            p_key: chance,
            u_key: 1.0 / len(data.utility_classes),
        },
        "standard_no_substitution": standard_no_sub,
        "standard": standard,
        "intertwined": intertwined,
        "paper_table1": {str(k): v for k, v in PAPER_TABLE1.items()},
        "goal": goal,
        "targets_meeting_goal": meets,
        "config": base.to_dict(),
        "attack": {
            "families": list(settings.attack.families),
            "cnn_epochs": settings.attack.cnn_epochs,
            "trees": settings.attack.trees,
        },
    }
    results["figures"] = [
        str(p)
        for p in write_figures(results, data, runs, start_frame, evolution_picks, pair_picks, out)
    ]
    results["seconds"] = time.perf_counter() - started
    write_results(results, out)
    return results


def write_figures(results, data, runs, start_frame, evolution_picks, pair_picks, out: Path):
    p_key = f"{data.private_name}_accuracy"
    u_key = f"{data.utility_name}_accuracy"
    paths = [
        anonymizer_figures.table1_bars(
            results, out / "table1_accuracy.png", private_key=p_key, utility_key=u_key
        )
    ]
    for name, run in runs.items():
        if name.startswith("standard_target"):
            continue  # same autoencoder as "standard": its figures would repeat
        recorder = run["recorder"]
        frames = [data.images[evolution_picks], start_frame, *recorder.frames]
        epochs = ["input", "pre-training", *[f"epoch {e}" for e in recorder.epochs]]
        paths.append(
            anonymizer_figures.evolution(
                frames,
                epochs,
                out / f"fig3_evolution_{name}.png",
                row_labels=("training sample", "validation sample"),
                title=f"{name}: autoencoder output after each epoch",
            )
        )
        picks = pair_picks  # indices into the whole data set, like the processed arrays
        paths.append(
            anonymizer_figures.pairs(
                data.images[picks],
                run["raw"][picks],
                out / f"fig4_pairs_{name}.png",
                title=f"{name}: 24 test inputs and the autoencoder's outputs",
            )
        )
        if run["released"] is not run["raw"]:
            paths.append(
                anonymizer_figures.pairs(
                    data.images[picks],
                    run["released"][picks],
                    out / f"fig4_pairs_{name}_released.png",
                    title=f"{name}: 24 test inputs and the released (substituted) images",
                )
            )
    return paths


def summary_rows(results: dict) -> list[tuple[str, ...]]:
    """Rows of the printed Table 1: run, identity, expression (ours; per family; paper)."""
    p_key = f"{results['data']['private_label']}_accuracy"
    u_key = f"{results['data']['utility_label']}_accuracy"

    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}%"

    def families(row, key):
        return " / ".join(pct(v) for v in row[f"{key}_by_family"].values())

    def line(name, row, paper=None):
        return (
            name,
            pct(row[p_key]),
            families(row, p_key),
            pct(row[u_key]),
            families(row, u_key),
            pct(paper["identity_accuracy"]) if paper else "-",
            pct(paper["expression_accuracy"]) if paper else "-",
        )

    rows = [line("originals", results["baseline"])]
    rows.append(line("standard, no substitution", results["standard_no_substitution"]))
    for row in results["standard"]:
        rows.append(line(f"standard + substitution, target {row['target_identity']}", row))
    for row in results["intertwined"]:
        rows.append(line(f"intertwined, target {row['target_identity']}", row, row.get("paper")))
    chance = results["chance"]
    rows.append(("chance", pct(chance[p_key]), "", pct(chance[u_key]), "", "16.7%", "14.3%"))
    goal = results["goal"]
    rows.append(
        (
            "goal (issue)",
            f"<= {pct(goal['identity_accuracy_at_most'])}",
            "",
            f">= {pct(goal['expression_accuracy_at_least'])}",
            "",
            "",
            "",
        )
    )
    return rows
