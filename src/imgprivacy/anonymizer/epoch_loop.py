"""One shuffled epoch of minibatch updates, shared by the anonymizer's trainers (the paper's
three-phase trainer, code match and identity swap).

:func:`run_shuffled_epoch` owns what the loops have in common: the seeded order of the epoch,
the batches, dropout seeded per epoch without touching the global RNG, the mean of every loss
the step returns, the epoch's record in the history and its log line. What an update does is the
trainer's ``step``, which returns a ``dict[str, float]`` of losses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

logger = logging.getLogger(__name__)

DROPOUT_SEED_STRIDE = 1_000_003  # dropout seed of epoch e: seed * stride + e


@dataclass
class AdversarialHistory:
    """The log of a training run: one record per finished epoch.

    Each record holds ``epoch`` (1-based), the trainer's fields (the paper trainer's ``phase``,
    one of :data:`~imgprivacy.anonymizer.trainer.PHASES`), ``seconds`` and the mean of every loss
    the epoch's named updates returned (the keys differ between phases).
    """

    epochs: list[dict] = field(default_factory=list)


class EpochTrainer(Protocol):
    """What :func:`run_shuffled_epoch` reads and advances on a trainer."""

    config: object  # with seed, batch_size and epochs
    device: str
    nets: nn.Module
    generator: torch.Generator  # draws every epoch's order (and whatever the step draws)
    epoch: int  # finished epochs; incremented here
    history: AdversarialHistory


def run_shuffled_epoch(
    trainer: EpochTrainer,
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    step: Callable[[torch.Tensor, torch.Tensor], dict[str, float]],
    name: str,
    fields: dict | None = None,
    drop_last: int = 0,
    min_batch: int = 1,
    before: Callable[[], dict[str, float]] | None = None,
    epochs: int | None = None,
) -> dict:
    """Run ``step(x_batch, labels_batch)`` over one shuffled epoch; returns (and logs) its record.

    Parameters
    ----------
    trainer
        Supplies the config (``seed``, ``batch_size``, ``epochs``), networks (set to train mode),
        generator and history; its ``epoch`` is incremented.
    x, labels
        (N, D) inputs and (N,) labels on the trainer's device.
    step
        One update on a batch; returns its losses.
    name
        The model's name in the log line ("swap", "code-match").
    fields
        Written into the record after ``epoch`` (e.g. the epoch's ``lam``).
    drop_last
        Batches start below ``N - drop_last`` only, so a last batch shorter than that is dropped.
    min_batch
        Batches with fewer rows are skipped.
    before
        Runs before the epoch's order is drawn (under the epoch's dropout seed, with the same
        generator); its losses enter the record as they are, before the batches' means.
    epochs
        The run's length in the log line (default: ``config.epochs``).

    Returns
    -------
    dict
        ``epoch``, the ``fields``, ``seconds`` and the mean of every loss over the batches.
    """
    cfg = trainer.config
    started = time.perf_counter()
    sums: dict[str, float] = {}
    batches = 0
    trainer.nets.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed * DROPOUT_SEED_STRIDE + trainer.epoch)  # dropout
        first = {} if before is None else before()
        order = torch.randperm(len(x), generator=trainer.generator).to(trainer.device)
        stop = max(len(x) - drop_last, 1)
        for start in range(0, stop, cfg.batch_size):
            index = order[start : start + cfg.batch_size]
            if len(index) < min_batch:
                continue
            for key, value in step(x[index], labels[index]).items():
                sums[key] = sums.get(key, 0.0) + value
            batches += 1
    trainer.epoch += 1
    record = {"epoch": trainer.epoch, **(fields or {}), "seconds": time.perf_counter() - started}
    record.update(first)
    record.update({k: v / max(batches, 1) for k, v in sums.items()})
    trainer.history.epochs.append(record)
    total = cfg.epochs if epochs is None else epochs
    logger.info("%s epoch %d/%d %s", name, trainer.epoch, total, record)
    return record


def train_remaining_epochs(
    trainer,
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    on_epoch: Callable[[object, dict], None] | None = None,
):
    """``trainer.run_epoch(x, labels)`` until ``config.epochs`` are done; returns ``trainer``.

    ``x`` and ``labels`` are moved to the trainer's device first; ``on_epoch(trainer, record)``
    runs after every epoch.
    """
    x, labels = x.to(trainer.device), labels.to(trainer.device)
    while trainer.epoch < trainer.config.epochs:
        record = trainer.run_epoch(x, labels)
        if on_epoch is not None:
            on_epoch(trainer, record)
    return trainer
