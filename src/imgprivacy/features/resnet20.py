"""The CIFAR-10 ResNet-20 (He et al. 2016, option-A shortcuts) as a feature extractor.

The network is written in plain torch and its weights are read from the ``.npz`` copy of the
pretrained checkpoint (``pretrained/resnet20-12fca82f_state_dict.npz`` in the shared data; no
unpickling). The feature is the 64-d global-average-pooled vector before the classifier: the
paper's "pre-trained ResNet" on the user's device (sec. 2.1, D = 64 here instead of Keras' 256).

The pooled features are averages of ReLU outputs: >= 0 but unbounded. They are divided per
dimension by a fixed scale (their 99.5th percentile over the CIFAR-10 training images, stored in
``resnet20_cifar_scale.json`` beside this module) and clipped to [0, 1], which the autoencoder's
sigmoid output and BCE loss need. The same scale is used by the edge client, the service and the
reproductions, so a file's features are identical everywhere.
"""

from __future__ import annotations

import functools
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from imgprivacy.data.paths import data_file
from imgprivacy.errors import CorruptFileError, InvalidInputError
from imgprivacy.safetensors_io import tensor_problems

WEIGHTS_FILE = "pretrained/resnet20-12fca82f_state_dict.npz"
SCALE_FILE = Path(__file__).with_name("resnet20_cifar_scale.json")
# Input normalisation the checkpoint was trained with (data README, sec. 8).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
BATCH = 256  # images per forward pass (bounds memory; large enough to amortise overhead)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus the option-A shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        # Option A: subsample by 2 and zero-pad planes // 4 channels on each side.
        self.pad = planes // 4 if (stride != 1 or in_planes != planes) else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x
        if self.pad:
            shortcut = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    """ResNet-6n+2 for 32x32 images; ``n = 3`` is ResNet-20. Key names follow upstream."""

    def __init__(self, *, blocks: int = 3, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        planes = [(16, 16, 1), (16, 32, 2), (32, 64, 2)]
        for index, (in_planes, out_planes, stride) in enumerate(planes, start=1):
            layer = [BasicBlock(in_planes, out_planes, stride)]
            layer += [BasicBlock(out_planes, out_planes, 1) for _ in range(blocks - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*layer))
        self.linear = nn.Linear(64, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 32, 32) normalised images -> (N, 64) pooled features."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x))


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """float32 tensors from an ``.npz`` state dict (``allow_pickle=False``)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: torch.from_numpy(np.array(archive[name])) for name in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise CorruptFileError(
            f"Could not read the ResNet-20 weights from {path}: {exc}. Replace the file with an "
            "intact copy (see the data README for its sha256)."
        ) from exc


def build_resnet20(state: dict[str, torch.Tensor], *, source: str = "state dict") -> CifarResNet:
    """A ResNet-20 in eval mode holding ``state``; every name or shape mismatch reported once."""
    net = CifarResNet(blocks=3)
    expected = {
        k: tuple(v.shape)
        for k, v in net.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    problems = tensor_problems(state, expected, dtype=None, check_finite=False, list_limit=5)
    if problems:
        raise CorruptFileError("; ".join(f"{source}: {p}" for p in problems))
    net.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=False)
    return net.eval()


@functools.lru_cache(maxsize=4)
def _cached_network(path: str) -> CifarResNet:
    return build_resnet20(read_state_dict(path), source=path)


def load_resnet20(data_dir: str | os.PathLike | None = None) -> CifarResNet:
    """The pretrained CIFAR-10 ResNet-20 (cached per process; read-only, eval mode)."""
    return _cached_network(str(data_file(WEIGHTS_FILE, data_dir)))


def to_network_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, 32, 32, 3) RGB -> normalised float (N, 3, 32, 32)."""
    tensor = images if torch.is_tensor(images) else torch.as_tensor(np.asarray(images))
    if tensor.ndim != 4 or tuple(tensor.shape[1:]) != (32, 32, 3):
        hint = " Add the batch axis with images[None]." if tensor.ndim == 3 else ""
        raise InvalidInputError(
            f"Expected RGB images of shape (N, 32, 32, 3), got {tuple(tensor.shape)}.{hint}"
        )
    if tensor.dtype != torch.uint8:
        raise InvalidInputError(
            f"Expected uint8 images in [0, 255], got dtype {tensor.dtype}. "
            "Convert with (x * 255).round().astype(np.uint8)."
        )
    x = tensor.permute(0, 3, 1, 2).to(torch.float32) / 255.0
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def raw_features(net: CifarResNet, images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, 64) unscaled pooled features, computed in batches of ``BATCH``."""
    x = to_network_input(images)
    with torch.inference_mode():
        parts = [net.features(x[i : i + BATCH]) for i in range(0, len(x), BATCH)]
    return torch.cat(parts) if parts else torch.empty(0, 64)


def predict(net: CifarResNet, images: np.ndarray | torch.Tensor) -> np.ndarray:
    """(N,) predicted CIFAR-10 classes (checks the port against the recorded accuracy)."""
    x = to_network_input(images)
    with torch.inference_mode():
        parts = [net(x[i : i + BATCH]).argmax(1) for i in range(0, len(x), BATCH)]
    return torch.cat(parts).numpy() if parts else np.empty(0, np.int64)


@functools.lru_cache(maxsize=4)
def load_scale(path: str | os.PathLike = SCALE_FILE) -> torch.Tensor:
    """The stored (64,) per-dimension scale of the pooled features (cached; do not modify)."""
    try:
        values = json.loads(Path(path).read_text())["scale"]
        scale = torch.tensor(values, dtype=torch.float32)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptFileError(f"Could not read the feature scale from {path}: {exc}.") from exc
    if scale.shape != (64,) or not bool((scale > 0).all()):
        raise CorruptFileError(f"{path}: expected 64 positive scale values, got {scale.shape}.")
    return scale


def fit_scale(features: torch.Tensor, *, quantile: float = 0.995) -> torch.Tensor:
    """Per-dimension ``quantile`` of raw features (how the stored scale was computed)."""
    return torch.quantile(features.to(torch.float32), quantile, dim=0).clamp_min(1e-6)


@dataclass(frozen=True)
class ResNet20Features:
    """64-d pooled ResNet-20 features scaled to [0, 1].

    The weights come from the shared data folder (``--data-dir`` / ``$IMGPRIVACY_DATA``), the
    scale from ``resnet20_cifar_scale.json``; both are loaded on first use.
    """

    data_dir: str | None = None  # folder holding pretrained/ (None: the default data folder)
    name: str = "resnet20-cifar"
    input_size: tuple[int, int] = (32, 32)  # (height, width)
    mode: str = "RGB"
    dim: int = 64

    def transform(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (N, 32, 32, 3) RGB -> (N, 64) float32 in [0, 1].

        Raises
        ------
        InvalidInputError
            For another shape or dtype.
        """
        raw = raw_features(load_resnet20(self.data_dir), images)
        return (raw / load_scale()).clamp_(0.0, 1.0)
