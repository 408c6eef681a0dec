"""Train the provider's face extractor (identity classification on public faces)."""

from __future__ import annotations

import hashlib
import logging
import math

import numpy as np
import torch
import torch.nn.functional as F

from imgprivacy.errors import InvalidInputError
from imgprivacy.features.faces import FaceExtractorModel, FaceNet, FaceNetConfig
from imgprivacy.progress import ProgressFactory, resolve

logger = logging.getLogger(__name__)

SCALE_QUANTILE = 0.995  # raw embedding value mapped to 1 (per dimension), on the training faces


def _augment(x: torch.Tensor, *, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to ``shift`` pixels (edge-padded) and horizontal flips."""
    n, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift), mode="replicate")
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
    rows = (dy.view(n, 1) + torch.arange(h)).view(n, 1, h, 1).expand(n, 1, h, w + 2 * shift)
    cropped = padded.gather(2, rows)
    cols = (dx.view(n, 1) + torch.arange(w)).view(n, 1, 1, w).expand(n, 1, h, w)
    out = cropped.gather(3, cols)
    flip = torch.rand(n, generator=generator) < 0.5
    out[flip] = out[flip].flip(3)
    return out


def train_face_net(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    config: FaceNetConfig | None = None,
    device: str = "cpu",
    progress: ProgressFactory | None = None,
) -> FaceExtractorModel:
    """Train :class:`FaceNet` to tell the identities in ``labels`` apart.

    Parameters
    ----------
    images
        uint8 grey faces (N, H, W) at ``config.input_size``.
    labels
        (N,) identity of each face (any integers; mapped to 0..C-1 in sorted order).
    progress
        Advanced once per epoch, with the mean loss and training accuracy as its status.

    Returns
    -------
    FaceExtractorModel
        The network, its feature scale and ``info`` (identities, training accuracy).
    """
    identities = np.unique(labels)
    config = (config or FaceNetConfig()).__class__(
        **{**(config or FaceNetConfig()).to_dict(), "num_classes": len(identities)}
    )
    images = np.asarray(images)
    if images.ndim != 3 or tuple(images.shape[1:]) != config.input_size or images.dtype != np.uint8:
        raise InvalidInputError(
            f"Expected uint8 faces of shape (N, {config.input_size[0]}, {config.input_size[1]}), "
            f"got {images.dtype} {images.shape}."
        )
    if len(identities) < 2:
        raise InvalidInputError(f"Expected faces of at least 2 identities, got {len(identities)}.")
    targets = torch.as_tensor(np.searchsorted(identities, labels))
    generator = torch.Generator().manual_seed(config.seed)  # shuffling and augmentation
    # Initialisation and dropout draw from torch's global generator (and dropout on a GPU from
    # the device's): seed it for this training only and give the caller's state back afterwards.
    target = torch.device(device)
    with torch.random.fork_rng(devices=[target.index or 0] if target.type == "cuda" else []):
        torch.manual_seed(config.seed)
        net = FaceNet(config).to(device)
        _fit(net, images, targets, generator=generator, progress=progress)
    net.eval().cpu()
    model = FaceExtractorModel(net=net, scale=torch.ones(config.embedding_dim), info={})
    raw = model.raw_features(images)
    model.scale = torch.quantile(raw, SCALE_QUANTILE, dim=0).clamp_min(1e-3)
    accuracy = float((model.predict(images) == targets.numpy()).mean())
    model.info = {
        "identities": [int(i) for i in identities],
        "train_images": len(images),
        "train_data_sha256": faces_fingerprint(images, labels),
        "train_accuracy": accuracy,
        "scale_quantile": SCALE_QUANTILE,
    }
    return model


def _fit(
    net: FaceNet,
    images: np.ndarray,
    targets: torch.Tensor,
    *,
    generator: torch.Generator,
    progress: ProgressFactory | None,
) -> None:
    """Adam with a cosine schedule on shuffled, augmented batches (``generator`` draws both)."""
    config = net.config
    device = next(net.parameters()).device
    x = net.prepare(torch.as_tensor(images))
    optimizer = torch.optim.Adam(
        net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    steps = config.epochs * math.ceil(len(x) / config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    advance = resolve(progress)("training faces-cnn", config.epochs)
    for epoch in range(config.epochs):
        net.train()
        order = torch.randperm(len(x), generator=generator)
        total, correct = 0.0, 0
        for start in range(0, len(x), config.batch_size):
            rows = order[start : start + config.batch_size]
            batch = _augment(x[rows], shift=config.shift, generator=generator).to(device)
            logits = net(batch)
            loss = F.cross_entropy(logits, targets[rows].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(rows)
            correct += int((logits.argmax(1).cpu() == targets[rows]).sum())
        logger.debug("face net epoch %d loss %.4f", epoch + 1, total / len(x))
        advance(f"loss {total / len(x):.3f} train acc {correct / len(x):.1%}")


def faces_fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
    """sha256 of the training faces and their identities: which data an extractor saw."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return digest.hexdigest()
