"""The runs of the faces reproduction that train once and release every target.

* the code-match anonymizer (:mod:`~imgprivacy.anonymizer.code_match`): the target's training
  image nearest in an identity-free contrastive code (``code_match``);
* the identity-swap anonymizer (:mod:`~imgprivacy.anonymizer.swap_model`): ``decoder(z, K)``
  (``swap``) and the target's training image nearest in z (``swap_code_nearest``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from imgprivacy.anonymizer.code_match import CodeMatchAnonymizer
from imgprivacy.anonymizer.code_match_trainer import CodeMatchConfig
from imgprivacy.anonymizer.model import as_pixels
from imgprivacy.anonymizer.swap_config import SwapConfig
from imgprivacy.anonymizer.swap_model import SwapAnonymizer


class SwapEvolutionRecorder:
    """Fig. 3 for the swap model: a few fixed images rendered as one target after every epoch."""

    def __init__(self, images: np.ndarray, image_size: int, target: int):
        self.x = as_pixels(images, image_size=image_size)
        self.target = target
        self.frames: list[np.ndarray] = []
        self.epochs: list[int] = []

    def on_epoch(self, trainer, record: dict) -> None:
        nets = trainer.nets
        training = nets.training
        nets.eval()
        device = next(nets.parameters()).device
        with torch.inference_mode():
            x = self.x.to(device)
            ids = torch.full((len(x),), self.target, dtype=torch.long, device=device)
            out = torch.sigmoid(nets.decoder(nets.encoder(x), ids)).cpu().numpy()
        nets.train(training)
        side = int(round(self.x.shape[1] ** 0.5))
        self.frames.append(np.rint(out * 255).astype(np.uint8).reshape(-1, side, side))
        self.epochs.append(record["epoch"])


def run_swap(
    *,
    data,
    config: SwapConfig,
    targets: tuple[int, ...],
    evolution_picks: np.ndarray,
    release: Callable[..., dict],
    out: Path,
    device: str = "cpu",
) -> tuple[list[dict], list[dict]]:
    """Train once, release per target: (raw rows, code-nearest rows), each one per target.

    ``release(name, images, raw, recorder, entry)`` assesses and records a released set (the
    reproduction's own function).
    """
    train = data.train
    recorder = SwapEvolutionRecorder(data.images[evolution_picks], config.image_size, targets[0])
    t0 = time.perf_counter()
    model = SwapAnonymizer(config.replace(target_identity=targets[0]), device=device).fit(
        data.images[train], data.private[train], on_epoch=recorder.on_epoch
    )
    seconds = time.perf_counter() - t0
    model.save(out / "models" / "swap.safetensors")
    raw_rows, nearest_rows = [], []
    for target in targets:
        raw_model = model.retarget(target)
        raw = raw_model.transform(data.images, substitution=False)
        entry = {"target_identity": target, "train_seconds": seconds}
        raw_rows.append(release(f"swap_target_{target}", raw, raw, recorder, dict(entry)))
        nearest_model = SwapAnonymizer.__new__(SwapAnonymizer)
        nearest_model.__dict__.update(raw_model.__dict__)
        nearest_model.config = raw_model.config.replace(substitution="code-nearest")
        nearest_model.substitution_ = nearest_model._fit_substitution(nearest_model.config)
        released = nearest_model.transform(data.images)
        nearest_rows.append(
            release(f"swap_code_nearest_target_{target}", released, raw, recorder, dict(entry))
        )
    return raw_rows, nearest_rows


def run_code_match(
    *,
    data,
    config: CodeMatchConfig,
    targets: tuple[int, ...],
    release: Callable[..., dict],
    out: Path,
    device: str = "cpu",
) -> list[dict]:
    """Train the code-match encoder once; one released set (row) per target.

    Every image is released with its own identity given (the data set's curator knows it);
    the model would otherwise read it from the code.
    """
    train = data.train
    t0 = time.perf_counter()
    model = CodeMatchAnonymizer(config.replace(target_identity=targets[0]), device=device).fit(
        data.images[train], data.private[train]
    )
    seconds = time.perf_counter() - t0
    model.save(out / "models" / "code_match.safetensors")
    identities = np.searchsorted(model.classes_, data.private)
    rows = []
    for target in targets:
        released = model.retarget(target).transform(data.images, identities=identities)
        entry = {"target_identity": target, "train_seconds": seconds}
        rows.append(release(f"code_match_target_{target}", released, released, None, entry))
    return rows
