"""The anonymizer in a minute: train on pen-digits, release the test images, show before / after.

A short training of the default anonymizer (writer = the private label), then a fresh random
forest, trained on the released training images, tries to read the writer and the digit from the
released test images, as it does from the originals. The picture shows one test image of each
digit and what is released in its place.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from imgprivacy.anonymizer.config import AnonymizerConfig
from imgprivacy.anonymizer.evaluate import AttackConfig, assess
from imgprivacy.anonymizer.model import Anonymizer
from imgprivacy.data.pendigits import N_WRITERS, load_pendigits
from imgprivacy.progress import ProgressFactory
from imgprivacy.reports import anonymizer_figures
from imgprivacy.reproduce.anonymizer_pendigits import sample_indices


@dataclass(frozen=True)
class AnonymizerDemoResult:
    """Forest accuracies on the original and the released test images."""

    writer_original: float
    writer_released: float
    digit_original: float
    digit_released: float
    writer_chance: float
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
    """Train a short anonymizer on the pen-digits training split and assess it (a minute or two)."""
    started = time.perf_counter()
    out = Path(out)
    data = load_pendigits(data_dir=data_dir, seed=seed)
    train = data.split == 0
    config = AnonymizerConfig(
        seed=seed, pretrain_epochs=8, disc_pretrain_epochs=2, adversarial_epochs=3
    )
    model = Anonymizer(config, device=device).fit(
        data.images[train], data.writer[train], progress=progress
    )
    model_path = model.save(out / "anonymizer.safetensors")
    released = model.transform(data.images)
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
        figure=str(figure),
        model=str(model_path),
        seconds=time.perf_counter() - started,
    )
