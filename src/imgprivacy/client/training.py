"""Train a guard on the user's own machine: images -> features -> one-class autoencoder.

The loop is :meth:`OneClassAutoencoder.fit`'s, step for step (same seeded initialisation,
shuffling, noise and optimizer), plus a checkpoint after every epoch: the network, the optimizer
state, the shuffling generator's state and the loss history, as safetensors + JSON (never
pickle), written atomically. A run that is interrupted and started again with the same images and
config continues from the last finished epoch and ends with exactly the weights an uninterrupted
run gives. The test suite checks both equalities.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from imgprivacy.data import load_image_folder
from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder, save_autoencoder
from imgprivacy.docl.autoencoder import OPTIMIZERS, TrainHistory, _seeded_net
from imgprivacy.docl.validation import as_feature_matrix
from imgprivacy.errors import InvalidInputError
from imgprivacy.features import get_extractor
from imgprivacy.fileio import write_atomic

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "imgprivacy.edge.checkpoint"
EpochCallback = Callable[[int, int, float], None]  # (epoch, epochs, loss)


def folder_features(
    folder: str | os.PathLike, *, feature_extractor: str = "pixels"
) -> torch.Tensor:
    """(K, D) features of every image in ``folder`` (sorted by file name)."""
    extractor = get_extractor(feature_extractor)
    images = load_image_folder(folder, size=extractor.input_size, mode=extractor.mode)
    return extractor.transform(images)


def _fingerprint(x: torch.Tensor, config: AutoencoderConfig) -> str:
    digest = hashlib.sha256(x.numpy().tobytes())
    # Every field but ``epochs``: a finished run can be continued to more epochs.
    fields = {k: v for k, v in config.to_dict().items() if k != "epochs"}
    digest.update(json.dumps(fields, sort_keys=True).encode())
    return digest.hexdigest()


def _save_checkpoint(
    path: Path, *, net, optimizer, generator, epoch: int, history, fingerprint: str
) -> None:
    tensors = {f"net.{k}": v.detach().contiguous() for k, v in net.state_dict().items()}
    scalars = {}
    for index, values in optimizer.state_dict()["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"opt.{index}.{key}"] = value.detach().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    tensors["rng_state"] = generator.get_state()
    meta = {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch,
        "epoch_loss": history.epoch_loss,
        "fingerprint": fingerprint,
        "optimizer_scalars": scalars,
    }
    write_atomic(path, save(tensors, metadata={"imgprivacy": json.dumps(meta)}))


def _load_checkpoint(
    path: Path, *, net, optimizer, generator, fingerprint: str
) -> tuple[int, TrainHistory]:
    """Restore a checkpoint into the objects; (0, empty history) when there is none or it is stale."""
    if not path.is_file():
        return 0, TrainHistory()
    try:
        tensors = load_file(path)
        with open(path, "rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            meta = json.loads(json.loads(handle.read(header_len))["__metadata__"]["imgprivacy"])
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        logger.warning("ignoring unreadable checkpoint %s (%s); starting over", path, exc)
        return 0, TrainHistory()
    if meta.get("format") != CHECKPOINT_FORMAT or meta.get("fingerprint") != fingerprint:
        logger.warning("checkpoint %s is for other images or another config; starting over", path)
        return 0, TrainHistory()
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    state = optimizer.state_dict()
    restored: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            restored.setdefault(int(index), {})[name] = value
    for key, value in meta["optimizer_scalars"].items():
        index, name = key.split(".", 1)
        restored.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": restored, "param_groups": state["param_groups"]})
    generator.set_state(tensors["rng_state"])
    return int(meta["epoch"]), TrainHistory(list(meta["epoch_loss"]))


def train_autoencoder(
    x: np.ndarray | torch.Tensor,
    *,
    config: AutoencoderConfig,
    checkpoint: str | os.PathLike | None = None,
    on_epoch: EpochCallback | None = None,
    device: str = "cpu",
) -> OneClassAutoencoder:
    """Fit a one-class autoencoder on features ``x`` (K, D), resumable through ``checkpoint``.

    Raises
    ------
    InvalidInputError
        For a wrong feature shape or range, or fewer than 2 images.
    """
    x = as_feature_matrix(x, input_dim=config.input_dim, what="training features")
    if len(x) < 2:
        raise InvalidInputError(
            f"Expected at least 2 training images to estimate the error statistics, got {len(x)}."
        )
    generator = torch.Generator().manual_seed(config.seed)
    net = _seeded_net(config).to(device)
    optimizer = OPTIMIZERS[config.optimizer](
        net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    path = Path(checkpoint) if checkpoint is not None else None
    fingerprint = _fingerprint(x, config)
    start, history = (0, TrainHistory())
    if path is not None:
        start, history = _load_checkpoint(
            path, net=net, optimizer=optimizer, generator=generator, fingerprint=fingerprint
        )
        if start:
            logger.info("resuming from epoch %d/%d (%s)", start, config.epochs, path)
    data = x.to(device)
    net.train()
    for epoch in range(start, config.epochs):
        order = torch.randperm(len(data), generator=generator).to(device)
        total = 0.0
        for begin in range(0, len(data), config.batch_size):
            batch = data[order[begin : begin + config.batch_size]]
            inputs = batch
            if config.input_noise > 0:
                noise = torch.randn(batch.shape, generator=generator).to(device)
                inputs = (batch + config.input_noise * noise).clamp(0.0, 1.0)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                net(inputs), batch, reduction="sum"
            )
            optimizer.zero_grad(set_to_none=True)
            (loss / len(batch)).backward()
            optimizer.step()
            total += loss.item()
        history.epoch_loss.append(total / len(data))
        if path is not None:
            _save_checkpoint(
                path,
                net=net,
                optimizer=optimizer,
                generator=generator,
                epoch=epoch + 1,
                history=history,
                fingerprint=fingerprint,
            )
        if on_epoch is not None:
            on_epoch(epoch + 1, config.epochs, history.epoch_loss[-1])
    net.eval()
    weights = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    model = OneClassAutoencoder.from_weights(
        config, weights, error_mean=1.0, error_std=1.0, device=device
    )
    distances = model.distances(x)
    model.error_mean_ = float(distances.mean())
    model.error_std_ = float(distances.std())
    model.history_ = history
    return model


def train_guard(
    images: str | os.PathLike,
    *,
    out: str | os.PathLike,
    config: AutoencoderConfig | None = None,
    resume: bool = True,
    on_epoch: EpochCallback | None = None,
    device: str = "cpu",
) -> OneClassAutoencoder:
    """Train on the images in folder ``images`` and save the guard to ``out`` (.safetensors).

    With ``resume`` an interrupted run continues from ``<out>.ckpt``, which is removed at the end.
    """
    config = config or AutoencoderConfig()
    features = folder_features(images, feature_extractor=config.feature_extractor)
    config = config.replace(input_dim=int(features.shape[1]))
    out = Path(out)
    checkpoint = out.with_name(out.name + ".ckpt") if resume else None
    model = train_autoencoder(
        features, config=config, checkpoint=checkpoint, on_epoch=on_epoch, device=device
    )
    save_autoencoder(model, out)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    logger.info(
        "trained a guard on %d images: mu=%.4g sigma=%.4g -> %s",
        len(features),
        model.error_mean_,
        model.error_std_,
        out,
    )
    return model
