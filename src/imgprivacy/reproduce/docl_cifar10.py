"""``imgprivacy reproduce docl-cifar10``: the paper's CIFAR-10 experiment on pretrained ResNets.

10 users = the 10 classes. Features are ``resnet-pair-cifar`` by default: the pretrained
ResNet-20's 64-d pooled vector averaged over the image and its mirror image, beside the
pretrained ResNet-56's (128-d; the paper's Keras ResNet gave 256). It was chosen on a validation
split against the paper's adversary (docs/results.md, "CIFAR-10: the paper's adversary"); the
ResNet-20 alone (``features="resnet20-cifar"``, 64-d) was the default before. Non-sensitive
uploads are Fashion-MNIST images as 32x32 RGB (the paper reports no acceptance rate for
CIFAR-10). The lossless subset has about 400 training and
100 test images per class (the paper: 5000 and 1000); ``--jpeg`` uses the larger JPEG-degraded
copy, whose numbers are flagged as not comparable.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from rich.table import Table

from imgprivacy.docl.config import AutoencoderConfig
from imgprivacy.progress import ProgressFactory
from imgprivacy.reproduce.docl_data_cifar import cifar10_experiment
from imgprivacy.reproduce.docl_features import (
    WIDE_ALPHAS,
    feature_data,
    finish,
    run_configurations,
)
from imgprivacy.reproduce.docl_features import summary_tables as feature_tables
from imgprivacy.reproduce.docl_protocol import ProtocolSettings
from imgprivacy.reproduce.docl_results import DoclCifar10Result, run_fields

FEATURES = "resnet-pair-cifar"  # the default extractor (``features=`` picks another)
# What the paper reports for CIFAR-10 (sec. 3, Fig. 2); our goal is >= 85%.
PAPER_CIFAR10 = {"overall_accuracy": 0.80}
QUICK = dict(train_per_class=150, test_per_class=40, public_count=400)


def configurations(features: str = FEATURES) -> dict[str, AutoencoderConfig]:
    """The default model of ``features`` and the paper's exact one.

    Chosen by measurement on the lossless subset (overall accuracy, default Guard sweep):
    the deep 64-256-32-256-64 model with 15 epochs reached 91.7%; 30 epochs 90.8%, 50 epochs
    87.5% (the autoencoders overfit ~400 images whose ResNet features the network memorised);
    the paper's 64-32-64 with Adadelta 83.9%, with Adam and M = 8/16 84-86%. The same shape
    (D-256-32-256-D, 15 epochs) is used on the 128-d ``resnet-pair-cifar`` features.
    """
    return {
        "default": AutoencoderConfig.for_edge(features),
        "paper_faithful": AutoencoderConfig.paper(feature_extractor=features),
    }


def reproduce_docl_cifar10(
    *,
    out: str | os.PathLike,
    quick: bool = False,
    jpeg: bool = False,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    device: str = "cpu",
    breadth_ratio: float | None = None,
    features: str = FEATURES,
    progress: ProgressFactory | None = None,
) -> DoclCifar10Result:
    """Run the experiment, write ``out/results.json`` and the PNG figures, return the results.

    ``features`` names the extractor (``resnet20-cifar``: the ResNet-20 alone, 64-d, cheaper).

    ``breadth_ratio`` turns on the Guard's breadth gate in every policy (see
    :class:`~imgprivacy.reproduce.docl_protocol.ProtocolSettings`).
    """
    started = time.perf_counter()
    variant = "jpeg" if jpeg else "lossless"
    data = cifar10_experiment(
        data_dir=data_dir,
        variant=variant,
        seed=seed,
        feature_extractor=features,
        **(QUICK if quick else {}),
    )
    settings = ProtocolSettings(
        alphas=(1.0, 2.0, 3.0) if quick else WIDE_ALPHAS,
        adversary_epochs=5 if quick else ProtocolSettings().adversary_epochs,
        breadth_ratio=breadth_ratio,
        seed=seed,
        device=device,
    )
    runs = run_configurations(data, configurations(features), settings=settings, progress=progress)
    main = next(iter(runs))
    results = DoclCifar10Result(
        experiment="docl-cifar10",
        quick=quick,
        seed=seed,
        variant=variant,
        comparable_with_paper=not jpeg,
        note=(
            "JPEG-degraded CIFAR-10 copy (quality 75): the ResNet-20 itself drops from 91.5% to "
            "80.8% on it; do not compare absolute numbers with the paper."
            if jpeg
            else "exact CIFAR-10 pixels (train 0-3999, test 0-999)"
        ),
        data=feature_data(data),
        main_run=main,
        **run_fields(runs[main]),
        runs=runs,
        paper=dict(PAPER_CIFAR10),
    )
    return finish(
        results,
        out=Path(out),
        started=started,
        titles={
            "fig2": f"CIFAR-10 ({variant}) per-class accuracy (paper Fig. 2)",
            "fig3": "CIFAR-10, Fashion-MNIST (RGB) uploads (cf. paper Fig. 3)",
            "fig5": "CIFAR-10 per-class accuracy vs users (paper Fig. 5)",
        },
    )


def summary_tables(results: DoclCifar10Result) -> list[Table]:
    flags = (" (--quick)" if results.quick else "") + (
        " [JPEG copy: not comparable]" if not results.comparable_with_paper else ""
    )
    return feature_tables(
        results,
        title=(
            f"DOCL on CIFAR-10 ({results.variant}, {results.data.feature_extractor} features): "
            f"ours beside the paper{flags}"
        ),
        paper_accuracy={"default": "80% (goal >= 85%)", "paper_faithful": "80%"},
    )
