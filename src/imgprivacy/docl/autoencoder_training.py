"""The one training loop of a one-class autoencoder (paper eq. 4): epochs of shuffled mini-batches.

:func:`train_autoencoder` is what :meth:`OneClassAutoencoder.fit
<imgprivacy.docl.autoencoder.OneClassAutoencoder.fit>` runs on already validated features: it seeds
the network, optimizer and generator from the config, resumes from and writes a checkpoint
(:mod:`imgprivacy.docl.checkpoint`), and adds the outlier-exposure hinge
(:mod:`imgprivacy.docl.outlier_exposure`) when there are negatives. Differentially private
training is :mod:`imgprivacy.docl.private_training`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from imgprivacy.docl.autoencoder_net import seeded_net
from imgprivacy.docl.checkpoint import TrainingState, restore_checkpoint, save_checkpoint
from imgprivacy.docl.config import AutoencoderConfig
from imgprivacy.docl.outlier_exposure import negative_hinge
from imgprivacy.progress import ProgressFactory, resolve

logger = logging.getLogger(__name__)

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adadelta": torch.optim.Adadelta,
    "adam": torch.optim.Adam,
}


@dataclass
class TrainHistory:
    """Mean BCE per sample (eq. 4) after each epoch."""

    epoch_loss: list[float] = field(default_factory=list)


def train_autoencoder(
    x: torch.Tensor,
    *,
    config: AutoencoderConfig,
    device: str = "cpu",
    negatives: torch.Tensor | None = None,
    checkpoint: str | os.PathLike | None = None,
    run: str = "",
    resume: bool = False,
    progress: ProgressFactory | None = None,
) -> TrainingState:
    """Train a freshly seeded network on validated features ``x`` (K, D) for ``config.epochs``.

    With ``checkpoint`` the whole state is written after every epoch, tagged with ``run`` (the
    :func:`~imgprivacy.docl.checkpoint.fingerprint` of the run); with ``resume`` an existing
    checkpoint of the same run is continued. Returns the final state, its network in eval mode.
    """
    net = seeded_net(config).to(device)
    state = TrainingState(
        net=net,
        optimizer=OPTIMIZERS[config.optimizer](
            net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        ),
        generator=torch.Generator().manual_seed(config.seed),
    )
    if resume and Path(checkpoint).is_file():
        restore_checkpoint(checkpoint, state, run=run, epochs=config.epochs)
        logger.info("resuming from %s after epoch %d/%d", checkpoint, state.epoch, config.epochs)
    advance = resolve(progress)("training autoencoder", config.epochs)
    for _ in range(state.epoch):
        advance("resumed")
    data = x.to(device)
    if negatives is not None:
        negatives = negatives.to(device)
    net.train()
    for epoch in range(state.epoch, config.epochs):
        state.epoch_loss.append(train_epoch(state, data, config=config, negatives=negatives))
        state.epoch = epoch + 1
        logger.debug("epoch %d/%d loss %.4f", state.epoch, config.epochs, state.epoch_loss[-1])
        if checkpoint is not None:
            save_checkpoint(checkpoint, state, run=run)
        advance(f"loss {state.epoch_loss[-1]:.3f}")
    net.eval()
    return state


def train_epoch(
    state: TrainingState,
    data: torch.Tensor,
    *,
    config: AutoencoderConfig,
    negatives: torch.Tensor | None = None,
) -> float:
    """One pass over ``data`` in a shuffled order; the mean BCE per sample (eq. 4), without the
    hinge on ``negatives`` (outlier exposure) when there are any."""
    device = data.device
    order = torch.randperm(len(data), generator=state.generator).to(device)
    total = 0.0
    for start in range(0, len(data), config.batch_size):
        batch = data[order[start : start + config.batch_size]]
        inputs = batch
        if config.input_noise > 0:
            noise = torch.randn(batch.shape, generator=state.generator).to(device)
            inputs = (batch + config.input_noise * noise).clamp(0.0, 1.0)
        logits = state.net(inputs)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, batch, reduction="sum")
        objective = loss / len(batch)
        if negatives is not None:
            objective = objective + negative_hinge(
                state.net, batch, logits, negatives, config=config, generator=state.generator
            )
        state.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        state.optimizer.step()
        total += loss.item()
    return total / len(data)
