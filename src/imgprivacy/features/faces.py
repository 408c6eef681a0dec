"""The provider's face extractor: a small CNN trained for identity classification.

In the DOCL paper the provider pre-trains a network in the cloud and every device uses it to turn
faces into feature vectors. imgprivacy's provider trains :class:`FaceNet` on public faces (the
Extended Yale B identities that are not DOCL users, see :class:`imgprivacy.data.faces.IdentitySplit`)
with ``imgprivacy features train-face-extractor``; the embedding layer before the classifier is the
feature. The file is safetensors + JSON metadata (config, training identities, accuracy); the
per-dimension feature scale (99.5th percentile on the training faces) is stored in it as the tensor
``scale``, so every user of the file scales features to [0, 1] identically.

The extractor ``faces-cnn`` loads the file named by ``$IMGPRIVACY_FACE_EXTRACTOR``, else the user
cache (``$XDG_CACHE_HOME/imgprivacy/faces-cnn.safetensors``, ``~/.cache`` by default).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save as save_bytes
from torch import nn

from imgprivacy import __version__
from imgprivacy.errors import CorruptFileError, DataNotFoundError, InvalidInputError
from imgprivacy.fileio import write_atomic
from imgprivacy.safetensors_io import read_safetensors

FORMAT = "imgprivacy.features.faces-cnn"
FORMAT_VERSION = 1
METADATA_KEY = "imgprivacy"
PATH_ENV_VAR = "IMGPRIVACY_FACE_EXTRACTOR"
FILE_NAME = "faces-cnn.safetensors"
BATCH = 256  # images per forward pass when extracting


@dataclass(frozen=True)
class FaceNetConfig:
    """Architecture and training of the face extractor (embedded in every saved file)."""

    input_size: tuple[int, int] = (96, 84)  # (height, width) of the grey input faces
    downsample: int = 2  # average-pool factor applied first (96x84 -> 48x42)
    channels: tuple[int, ...] = (16, 32, 64, 128)  # conv-BN-ReLU-maxpool stages
    embedding_dim: int = 256  # D, the feature size (must exceed the DOCL representation M)
    num_classes: int = 22  # identities of the training set
    dropout: float = 0.3  # on the embedding, during training only
    epochs: int = 40  # passes over the training faces
    batch_size: int = 64  # faces per gradient step
    learning_rate: float = 2e-3  # Adam step size (cosine-decayed to 0)
    weight_decay: float = 5e-4  # L2 penalty
    shift: int = 3  # random translation (pixels, after downsampling) for augmentation
    seed: int = 0  # seeds initialisation, shuffling and augmentation

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(self.input_size))
        object.__setattr__(self, "channels", tuple(self.channels))
        problems = []
        for name in ("downsample", "embedding_dim", "num_classes", "epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if not self.channels or any(c < 1 for c in self.channels):
            problems.append(f"channels must be positive integers, got {self.channels!r}")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if problems:
            raise InvalidInputError([f"Invalid FaceNetConfig: {p}" for p in problems])

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["input_size"] = list(self.input_size)
        values["channels"] = list(self.channels)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> FaceNetConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInputError(f"Unknown FaceNetConfig fields {unknown}.")
        return cls(**values)


class FaceNet(nn.Module):
    """Per-image standardisation -> conv stages -> flatten -> ReLU embedding -> classifier."""

    def __init__(self, config: FaceNetConfig):
        super().__init__()
        self.config = config
        stages, in_channels = [], 1
        for out_channels in config.channels:
            stages += [
                nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            in_channels = out_channels
        self.stages = nn.Sequential(*stages)
        height, width = (s // config.downsample for s in config.input_size)
        for _ in config.channels:
            height, width = -(-height // 2), -(-width // 2)
        self.embed = nn.Linear(in_channels * height * width, config.embedding_dim)
        self.head = nn.Linear(config.embedding_dim, config.num_classes)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W) -> standardised, downsampled float (N, 1, h, w)."""
        x = images.to(torch.float32).unsqueeze(1)
        if self.config.downsample > 1:
            x = F.avg_pool2d(x, self.config.downsample)
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True).clamp_min(1.0)
        return (x - mean) / std  # lighting strength varies wildly in Yale B

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """Prepared (N, 1, h, w) -> (N, D) non-negative embedding."""
        return F.relu(self.embed(self.stages(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embedding = F.dropout(self.embedding(x), self.config.dropout, self.training)
        return self.head(embedding)


@dataclass
class FaceExtractorModel:
    """A trained :class:`FaceNet` with its feature scale and provenance."""

    net: FaceNet
    scale: torch.Tensor  # (D,) raw embedding value mapped to 1
    info: dict  # training identities, accuracy, data set (JSON-serialisable)

    @property
    def config(self) -> FaceNetConfig:
        return self.net.config

    def raw_features(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(N, D) unscaled embeddings of uint8 faces (N, H, W)."""
        tensor = images if torch.is_tensor(images) else torch.as_tensor(np.asarray(images))
        expected = self.config.input_size
        if tensor.ndim != 3 or tuple(tensor.shape[1:]) != expected:
            hint = " Add the batch axis with images[None]." if tensor.ndim == 2 else ""
            raise InvalidInputError(
                f"Expected grey faces of shape (N, {expected[0]}, {expected[1]}), got "
                f"{tuple(tensor.shape)}.{hint} imgprivacy.data.load_images resizes files."
            )
        if tensor.dtype != torch.uint8:
            raise InvalidInputError(f"Expected uint8 faces in [0, 255], got dtype {tensor.dtype}.")
        self.net.eval()
        with torch.inference_mode():
            parts = [
                self.net.embedding(self.net.prepare(tensor[i : i + BATCH]))
                for i in range(0, len(tensor), BATCH)
            ]
        return torch.cat(parts) if parts else torch.empty(0, self.config.embedding_dim)

    def features(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(N, D) float32 features in [0, 1]."""
        return (self.raw_features(images) / self.scale).clamp_(0.0, 1.0)

    def predict(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """Index (into ``info['identities']``) of the most likely training identity."""
        with torch.inference_mode():
            logits = self.net.head(self.raw_features(images))
        return logits.argmax(1).numpy()


def face_extractor_to_bytes(model: FaceExtractorModel) -> bytes:
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
    tensors["scale"] = model.scale.detach().cpu().to(torch.float32).contiguous()
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "imgprivacy_version": __version__,
        "config": model.config.to_dict(),
        "info": model.info,
    }
    return save_bytes(tensors, metadata={METADATA_KEY: json.dumps(metadata)})


def face_extractor_from_bytes(data: bytes, *, source: str = "face extractor") -> FaceExtractorModel:
    """Parse and validate a file written by :func:`save_face_extractor` (no pickle).

    Raises
    ------
    CorruptFileError
        When the bytes are not an imgprivacy face extractor or do not match their config.
    """
    tensors, metadata = read_safetensors(
        data,
        source=source,
        expected="an imgprivacy face extractor",
        hint="Write it with `imgprivacy features train-face-extractor`.",
    )
    if metadata.get("format") != FORMAT or metadata.get("format_version") != FORMAT_VERSION:
        raise CorruptFileError(
            f"{source}: expected format {FORMAT!r} version {FORMAT_VERSION}, got "
            f"{metadata.get('format')!r} version {metadata.get('format_version')!r}."
        )
    try:
        config = FaceNetConfig.from_dict(metadata["config"])
    except (InvalidInputError, TypeError, KeyError) as exc:
        raise CorruptFileError(f"{source}: invalid config: {exc}") from exc
    net = FaceNet(config)
    expected = {f"net.{k}": tuple(v.shape) for k, v in net.state_dict().items()}
    expected["scale"] = (config.embedding_dim,)
    problems = [f"missing tensor {k}" for k in sorted(set(expected) - set(tensors))]
    problems += [f"unexpected tensor {k}" for k in sorted(set(tensors) - set(expected))]
    for name, shape in expected.items():
        tensor = tensors.get(name)
        if tensor is not None and tuple(tensor.shape) != shape:
            problems.append(f"{name} has shape {tuple(tensor.shape)}, expected {shape}")
        elif tensor is not None and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            problems.append(f"{name} contains NaN or infinite values")
    if not problems and not bool((tensors["scale"] > 0).all()):
        problems.append("scale must be positive")
    if problems:
        raise CorruptFileError(f"{source}: " + "; ".join(problems))
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    return FaceExtractorModel(net=net.eval(), scale=tensors["scale"], info=metadata.get("info", {}))


def save_face_extractor(model: FaceExtractorModel, path: str | os.PathLike) -> Path:
    """Write ``model`` atomically to ``path`` (safetensors + JSON metadata)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, face_extractor_to_bytes(model))


def default_path() -> Path:
    """``$IMGPRIVACY_FACE_EXTRACTOR``, else ``$XDG_CACHE_HOME/imgprivacy/faces-cnn.safetensors``."""
    from_env = os.environ.get(PATH_ENV_VAR)
    if from_env:
        return Path(from_env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "imgprivacy" / FILE_NAME


@functools.lru_cache(maxsize=4)
def _cached(path: str, mtime_ns: int) -> FaceExtractorModel:
    del mtime_ns  # part of the key: a retrained file is read again
    return face_extractor_from_bytes(Path(path).read_bytes(), source=path)


def load_face_extractor(path: str | os.PathLike | None = None) -> FaceExtractorModel:
    """The face extractor at ``path`` (default: :func:`default_path`), cached per process.

    Raises
    ------
    DataNotFoundError
        When there is no file, with the command that creates it.
    """
    path = Path(path) if path is not None else default_path()
    if not path.is_file():
        raise DataNotFoundError(
            f"No face extractor at {path}. Train it with `imgprivacy features "
            f"train-face-extractor --out {path}` (about a minute on a CPU) or point "
            f"{PATH_ENV_VAR} at an existing file."
        )
    return _cached(str(path.resolve()), path.stat().st_mtime_ns)


@dataclass(frozen=True)
class FaceCNNFeatures:
    """Face embeddings of the provider's CNN, scaled to [0, 1] (D = 256 by default)."""

    path: str | None = None  # the extractor file (None: $IMGPRIVACY_FACE_EXTRACTOR or the cache)
    name: str = "faces-cnn"
    mode: str = "L"

    def model(self) -> FaceExtractorModel:
        return load_face_extractor(self.path)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.model().config.input_size

    @property
    def dim(self) -> int:
        return self.model().config.embedding_dim

    def transform(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 grey faces (N, 96, 84) -> (N, D) float32 in [0, 1]."""
        return self.model().features(images)
