"""Two pretrained CIFAR-10 ResNets as one 128-d feature: ResNet-20 (mirror-averaged) and ResNet-56.

The first 64 dimensions are the ResNet-20 pooled features of the image and of its mirror image,
averaged, then scaled like ``resnet20-cifar`` (its stored per-dimension scale, clipped to
[0, 1]); the last 64 are the ResNet-56 pooled features, scaled the same way by their own stored
scale (``resnet56_cifar_scale.json``: the 99.5th percentile of each dimension over the lossless
subset's 4000 training images, as for ResNet-20). Both networks are the He et al. CIFAR variant
(:class:`~imgprivacy.features.resnet20.CifarResNet`, 3 and 9 blocks per stage).

Why: with ``resnet20-cifar`` the nearest user model is the right one for 91-92% of CIFAR-10
test images, the ResNet-20's own accuracy, and those it gets wrong are what another user's
model claims from an owner at the wide intervals the paper's adversary calls for
(docs/results.md, "CIFAR-10: the paper's adversary"). Averaging over the mirror image raises the
ResNet-20 to 93.1% on the lossless test images, and the pair of networks separates the users'
models further.

The ResNet-56 weights exist only as the upstream legacy checkpoint (``resnet56-4bfd9763.th``).
It is read into memory, its sha256 compared with the pinned :data:`RESNET56_SHA256` (the data
README's), and those same bytes are read with ``torch.load(weights_only=True)``, torch's
restricted unpickler that builds tensors and plain containers and refuses any other object (no
code runs).
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from imgprivacy.data.paths import data_file
from imgprivacy.errors import CorruptFileError
from imgprivacy.features.resnet20 import (
    CifarResNet,
    load_resnet20,
    load_scale,
    raw_features,
)
from imgprivacy.safetensors_io import tensor_problems

RESNET56_FILE = "pretrained/resnet56-4bfd9763.th"
# sha256 of the upstream file (data README); the name carries only its first 8 hex digits
RESNET56_SHA256 = "4bfd97631478d6b638d2764fd2baff3edb1d7d82252d54439343b6596b9b5367"
RESNET56_SCALE_FILE = Path(__file__).with_name("resnet56_cifar_scale.json")


def read_legacy_checkpoint(
    path: str | os.PathLike, *, sha256: str | None = None
) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of an upstream ``{'best_prec1', 'state_dict'}`` checkpoint, without
    the ``module.`` prefix. The file's sha256 must equal ``sha256`` (without it: start with the
    hex hash in its name, the torch-hub convention); the bytes checked are the bytes loaded.

    Raises
    ------
    CorruptFileError
        When the hash does not match, the file is not a weights-only checkpoint, or it holds
        no ``state_dict``.
    """
    path = Path(path)
    expected = sha256 or path.stem.rsplit("-", 1)[-1]
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if not digest.startswith(expected):
        raise CorruptFileError(
            f"{path}: sha256 {digest[:12]}... does not start with {expected!r}"
            f"{'' if sha256 else ' from its name'}. "
            "Replace the file with an intact copy (see the data README for its sha256)."
        )
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        state = checkpoint["state_dict"]
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise CorruptFileError(
            f"Could not read the ResNet-56 checkpoint {path}: {exc}. Replace the file with an "
            "intact copy (see the data README)."
        ) from exc
    return {k.removeprefix("module."): v.to(torch.float32) for k, v in state.items()}


def build_resnet56(state: dict[str, torch.Tensor], *, source: str = "state dict") -> CifarResNet:
    """A ResNet-56 in eval mode holding ``state``; name or shape mismatches reported once."""
    net = CifarResNet(blocks=9)
    expected = {
        k: tuple(v.shape)
        for k, v in net.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    problems = tensor_problems(state, expected, dtype=None, check_finite=False, list_limit=5)
    if problems:
        raise CorruptFileError("; ".join(f"{source}: {p}" for p in problems))
    net.load_state_dict(state, strict=False)
    return net.eval()


@functools.lru_cache(maxsize=4)
def _cached_resnet56(path: str) -> CifarResNet:
    return build_resnet56(read_legacy_checkpoint(path, sha256=RESNET56_SHA256), source=path)


def load_resnet56(data_dir: str | os.PathLike | None = None) -> CifarResNet:
    """The pretrained CIFAR-10 ResNet-56 (cached per process; read-only, eval mode)."""
    return _cached_resnet56(str(data_file(RESNET56_FILE, data_dir)))


def mirrored(images: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """(N, H, W, 3) images flipped left to right."""
    if torch.is_tensor(images):
        return torch.flip(images, dims=(2,)) if images.ndim == 4 else images
    array = np.asarray(images)
    return np.ascontiguousarray(array[:, :, ::-1]) if array.ndim == 4 else array


@dataclass(frozen=True)
class ResNetPairFeatures:
    """128-d features in [0, 1]: [ResNet-20 mirror-averaged, ResNet-56], each scaled."""

    data_dir: str | None = None  # folder holding pretrained/ (None: the default data folder)
    name: str = "resnet-pair-cifar"
    input_size: tuple[int, int] = (32, 32)  # (height, width)
    mode: str = "RGB"
    dim: int = 128

    def transform(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (N, 32, 32, 3) RGB -> (N, 128) float32 in [0, 1].

        Raises
        ------
        InvalidInputError
            For another shape or dtype.
        """
        net20 = load_resnet20(self.data_dir)
        raw20 = (raw_features(net20, images) + raw_features(net20, mirrored(images))) / 2
        raw56 = raw_features(load_resnet56(self.data_dir), images)
        scaled20 = (raw20 / load_scale()).clamp_(0.0, 1.0)
        scaled56 = (raw56 / load_scale(RESNET56_SCALE_FILE)).clamp_(0.0, 1.0)
        return torch.cat([scaled20, scaled56], dim=1)
