"""The anonymizer in a few minutes: train on pen-digits, release the test images, show before / after.

The warp game in the configuration the full reproduction selected on the validation split
(:data:`DEMO_CONFIG`: lambda 1, 20 clusters, each image released as a member of its cluster's
central pool; the writer is the private label), without the sweep. Then a fresh random forest,
trained on the released training images, tries to read the writer and the digit from the
released test images, as it does from the originals; the cluster vote (the bound on every
attacker) is shown beside it. The picture shows one test image of each digit and what is
released in its place.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgprivacy.anonymizer.evaluate import AttackConfig, assess, cluster_majority
from imgprivacy.anonymizer.warp_game import WarpGameConfig
from imgprivacy.anonymizer.warp_model import WarpAnonymizer
from imgprivacy.data.pendigits import N_WRITERS, load_pendigits
from imgprivacy.progress import ProgressFactory
from imgprivacy.reports import anonymizer_figures
from imgprivacy.reproduce.anonymizer_pendigits import sample_indices

# the selected configuration of ``reproduce anonymizer-pendigits`` (docs/anonymizer.md)
DEMO_CONFIG = WarpGameConfig(lam=1.0, n_prototypes=20)  # the default release pool


@dataclass(frozen=True)
class AnonymizerDemoResult:
    """Forest accuracies on the original and the released test images."""

    writer_original: float
    writer_released: float
    digit_original: float
    digit_released: float
    writer_chance: float
    writer_cluster_vote: float  # the per-cluster writer majority: what any attacker can reach
    configuration: str  # the warp game's configuration
    figure: str  # the before / after picture (PNG)
    model: str  # the trained anonymizer (.safetensors)
    seconds: float


def run_anonymizer_demo(
    *,
    out: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: ProgressFactory | None = None,
) -> AnonymizerDemoResult:
    """Train the warp game (:data:`DEMO_CONFIG`) on the pen-digits training split, release every
    image and assess the release with a random forest (a few minutes on two cores)."""
    started = time.perf_counter()
    out = Path(out)
    data = load_pendigits(data_dir=data_dir, seed=seed)
    train = data.split == 0
    config = DEMO_CONFIG.replace(seed=seed)
    model = WarpAnonymizer(config, device=device).fit(data.images[train], data.writer[train])
    model_path = model.save(out / "anonymizer.safetensors")
    released = model.transform(data.images)
    ids = model.cluster_ids(data.images)
    test = data.split == 2
    vote = cluster_majority(ids[train], data.writer[train], ids[test]) == data.writer[test]
    attack = AttackConfig(families=("random_forest",), trees=100, seed=seed)
    labels = dict(writer=data.writer, digit=data.digit, split=data.split)
    before = assess(
        data.images,
        **labels,
        config=attack,
        progress=progress,
        description="forest on the originals",
    )
    after = assess(
        released,
        **labels,
        config=attack,
        progress=progress,
        description="forest on the released images",
    )
    picks = sample_indices(data, seed=seed)
    figure = anonymizer_figures.sample_grid(
        data.images[picks],
        {"released": released[picks]},
        out / "before_after.png",
        title="pen-digits test images: original and released (writer hidden, digit kept)",
    )
    return AnonymizerDemoResult(
        writer_original=before.writer.best,
        writer_released=after.writer.best,
        digit_original=before.digit.best,
        digit_released=after.digit.best,
        writer_chance=1.0 / N_WRITERS,
        writer_cluster_vote=float(np.mean(vote)),
        configuration=(
            f"warp game lambda={config.lam:g}, {config.n_prototypes} clusters, "
            f"pool of {config.pool_size}"
        ),
        figure=str(figure),
        model=str(model_path),
        seconds=time.perf_counter() - started,
    )
