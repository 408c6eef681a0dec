"""One lambda of ``imgprivacy reproduce anonymizer-pendigits``: train, release, attack.

:func:`run_lambda` trains the anonymizer at one lambda (branching from the shared pre-trained
checkpoint when there is one), saves its model and released images, and measures the attackers on
them and, with substitution, on the autoencoder's own outputs: one row of the sweep.
"""

from __future__ import annotations

import io
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgprivacy.anonymizer.config import AnonymizerConfig
from imgprivacy.anonymizer.evaluate import AttackConfig, assess
from imgprivacy.anonymizer.model import Anonymizer
from imgprivacy.fileio import write_atomic
from imgprivacy.progress import ProgressFactory
from imgprivacy.reproduce.anonymizer_results import SweepRow

logger = logging.getLogger(__name__)


@dataclass
class LambdaRun:
    """What one lambda of the sweep measured and released."""

    row: SweepRow
    processed: np.ndarray  # the released images, uint8 like the input
    history: list[dict]  # the anonymizer's per-epoch losses (``Anonymizer.history_.epochs``)


def lambda_tag(lam: float) -> str:
    """``0.5`` -> ``"0.5"``, ``2.0`` -> ``"2"`` (used in file names)."""
    return f"{lam:g}"


def save_processed(
    path: Path, images: np.ndarray, *, labels: dict[str, np.ndarray], split: np.ndarray
) -> Path:
    """Write ``images`` (uint8), each label array under its name and the split (0/1/2) as an
    .npz, atomically (no pickle), so any other attacker can be run on them."""
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        images=images.astype(np.uint8),
        **{name: np.asarray(values).astype(np.int64) for name, values in labels.items()},
        split=np.asarray(split).astype(np.uint8),
    )
    return write_atomic(path, buffer.getvalue())


def output_spread(images: np.ndarray) -> float:
    """Mean over pixels of the standard deviation across images (uint8 input, result in [0, 1])."""
    return float(images.reshape(len(images), -1).astype(np.float64).std(axis=0).mean() / 255.0)


def run_lambda(
    data,
    *,
    lam: float,
    config: AnonymizerConfig,
    attack: AttackConfig,
    raw_attack: AttackConfig,
    out: Path,
    pretrained: Path | None,
    device: str = "cpu",
    progress: ProgressFactory | None = None,
) -> LambdaRun:
    """Train at ``lam`` (``config`` gives everything else), write ``out/models/lambda_<v>`` and
    ``out/anonymized/lambda_<v>.npz``, and assess the release with ``attack`` and, when the
    anonymizer substitutes prototypes, the autoencoder's outputs with ``raw_attack``.

    With ``pretrained`` (the shared phases 1-2) a missing checkpoint of this lambda starts as a
    copy of it; an existing one is resumed.
    """
    tag = lambda_tag(lam)
    train = data.split == 0
    labels = dict(writer=data.writer, digit=data.digit, split=data.split)
    t0 = time.perf_counter()
    checkpoint = out / "checkpoints" / f"lambda_{tag}.ckpt"
    if pretrained is not None and not checkpoint.exists():
        shutil.copyfile(pretrained, checkpoint)
    anonymizer = Anonymizer(config.replace(lam=lam), device=device).fit(
        data.images[train],
        data.writer[train],
        checkpoint=checkpoint,
        resume=True,
        progress=progress,
    )
    train_seconds = time.perf_counter() - t0
    anonymizer.save(out / "models" / f"lambda_{tag}.safetensors")
    processed = anonymizer.transform(data.images)
    save_processed(
        out / "anonymized" / f"lambda_{tag}.npz",
        processed,
        labels={"writer": data.writer, "digit": data.digit},
        split=data.split,
    )
    t0 = time.perf_counter()
    assessment = assess(
        processed,
        **labels,
        config=attack,
        device=device,
        progress=progress,
        description=f"attackers at lambda={tag}",
    )
    if anonymizer.config.n_prototypes > 0:
        # what the autoencoder alone leaves, per attacker family: the paper's assessment
        # network (the CNN) beside the strong families
        before = assess(
            anonymizer.transform(data.images, substitution=False),
            **labels,
            config=raw_attack,
            device=device,
            description=f"attackers before substitution at lambda={tag}",
        )
        autoencoder_only = before.to_dict()
    else:
        autoencoder_only = None
    distortion = np.abs(processed.astype(np.float32) - data.images.astype(np.float32)) / 255.0
    row: SweepRow = {
        "lambda": lam,
        **assessment.to_dict(),
        "distortion": float(distortion.mean()),
        "rmse": float(np.sqrt((distortion**2).mean())),
        # mean over pixels of the std across images, in [0, 1]: 0 = one image for every
        # input (collapse); the originals' is the result's original_spread
        "output_spread": output_spread(processed),
        "autoencoder_only": autoencoder_only,
        "train_seconds": train_seconds,
        "assess_seconds": time.perf_counter() - t0,
    }
    logger.info("lambda %s: %s", tag, row)
    return LambdaRun(row=row, processed=processed, history=anonymizer.history_.epochs)
