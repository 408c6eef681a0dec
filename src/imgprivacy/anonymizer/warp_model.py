"""The warp-game anonymizer: ``fit`` / ``transform`` / ``cluster_ids`` / ``save`` / ``load``.

Training (:mod:`~imgprivacy.anonymizer.warp_game`) uses the private label only; the clusters
(:mod:`~imgprivacy.anonymizer.substitution.spectral_clusters`) use no label at all. A released
image is an original training image from the central pool of the warped input's cluster
(``pool_size`` images nearest the cluster's centre; 1 = its medoid), drawn independently of the
input, so what any attacker reads is at most the cluster index.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> images = rng.integers(0, 256, size=(40, 8, 8), dtype=np.uint8)
>>> config = WarpGameConfig(image_size=8, hidden=8, private_hidden=8, epochs=1, n_prototypes=3)
>>> model = WarpAnonymizer(config).fit(images, np.repeat(np.arange(4), 10))
>>> model.transform(images[:5]).shape, bool(model.cluster_ids(images[:5]).max() < 3)
((5, 8, 8), True)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from imgprivacy.anonymizer.losses import empirical_prior
from imgprivacy.anonymizer.model import as_pixels, encode_labels
from imgprivacy.anonymizer.persistence import (
    WARP_FILE,
    config_from_metadata,
    load_model_file,
    model_file_bytes,
    read_model_bytes,
    save_model_file,
)
from imgprivacy.anonymizer.substitution import get_substitution
from imgprivacy.anonymizer.warp_game import ShearWarp, WarpGameConfig, WarpGameTrainer
from imgprivacy.errors import CorruptFileError, InvalidInputError, NotFittedError
from imgprivacy.safetensors_io import tensor_problems

FORMAT = WARP_FILE.name
FORMAT_VERSION = WARP_FILE.version
WARP_PREFIX = "warp."


class WarpAnonymizer:
    """Removes a private label by a normalising warp trained with eq. (12), then clusters.

    Attributes
    ----------
    warp_ : ShearWarp
        The trained warp.
    substitution_ : SubstitutionMethod
        The fitted substitution (``config.substitution``; spectral clusters by default).
    classes_ : numpy.ndarray
        The private classes seen by :meth:`fit`.
    history_ : list[dict]
        One record per epoch of the game.
    """

    def __init__(self, config: WarpGameConfig | None = None, *, device: str = "cpu"):
        self.config = config or WarpGameConfig()
        self.device = device

    def fit(self, images, private_labels) -> WarpAnonymizer:
        """Train on (N, S, S) images and their (N,) private labels; returns ``self``."""
        x = as_pixels(images, image_size=self.config.image_size, what="training images")
        classes, z = encode_labels(private_labels, len(x))
        self.config = self.config.replace(n_private=len(classes))
        trainer = WarpGameTrainer(
            self.config, prior=empirical_prior(z, len(classes)), device=self.device
        )
        trainer.fit(x, z)
        self.warp_ = trainer.warp.eval()
        self.classes_ = classes
        self.history_ = trainer.history
        method = get_substitution(self.config.substitution).from_config(self.config)
        self.substitution_ = method.fit(x, np.asarray(private_labels), autoencode=self._warp)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "warp_"):
            raise NotFittedError(
                "This WarpAnonymizer is not fitted yet. Call fit(images, private_labels) or "
                "WarpAnonymizer.load(path)."
            )

    def _warp(self, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
        with torch.inference_mode():
            return torch.cat(
                [
                    self.warp_(x[i : i + batch_size].to(self.device))[0].cpu()
                    for i in range(0, len(x), batch_size)
                ]
            )

    def warped(self, images) -> np.ndarray:
        """The warp's outputs (uint8, (N, S, S)): what the game produced, before substitution."""
        self._check_fitted()
        x = as_pixels(images, image_size=self.config.image_size)
        side = self.config.image_size
        pixels = np.rint(self._warp(x).clamp(0, 1).numpy() * 255).astype(np.uint8)
        return pixels.reshape(len(x), side, side)

    def cluster_ids(self, images) -> np.ndarray:
        """(N,) the released cluster of each image (what every attacker can at most read)."""
        self._check_fitted()
        if not hasattr(self.substitution_, "assign"):
            raise InvalidInputError(
                f"Substitution {self.config.substitution!r} has no clusters; use "
                "substitution='spectral-clusters'."
            )
        x = as_pixels(images, image_size=self.config.image_size)
        return self.substitution_.assign(self._warp(x)).numpy()

    def transform(self, images, *, batch_size: int = 2048) -> np.ndarray:
        """Anonymize (N, S, S) grey images into uint8 (N, S, S) released images."""
        self._check_fitted()
        x = as_pixels(images, image_size=self.config.image_size)
        released = self.substitution_.transform(self._warp(x), batch_size=batch_size).numpy()
        side = self.config.image_size
        return released.reshape(len(x), side, side)

    # -- persistence ----------------------------------------------------------------------------
    def _file_contents(self) -> tuple[dict[str, torch.Tensor], dict]:
        self._check_fitted()
        tensors = {WARP_PREFIX + k: v for k, v in self.warp_.state_dict().items()}
        state, state_metadata = self.substitution_.state()
        tensors.update(state)
        metadata = {
            "config": self.config.to_dict(),
            "classes": [c.item() if hasattr(c, "item") else c for c in self.classes_],
            "substitution_state": state_metadata,
            "history": self.history_,
        }
        return tensors, metadata

    def to_bytes(self) -> bytes:
        tensors, metadata = self._file_contents()
        return model_file_bytes(format=WARP_FILE, tensors=tensors, metadata=metadata)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model (safetensors + JSON config) atomically."""
        tensors, metadata = self._file_contents()
        return save_model_file(path, format=WARP_FILE, tensors=tensors, metadata=metadata)

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "model", device: str = "cpu"):
        tensors, metadata = read_model_bytes(data, format=WARP_FILE, source=source)
        return cls._from_contents(tensors, metadata, source=source, device=device)

    @classmethod
    def _from_contents(
        cls, tensors: dict[str, torch.Tensor], metadata: dict, *, source: str, device: str
    ) -> WarpAnonymizer:
        config = config_from_metadata(WarpGameConfig, metadata, source=source)
        warp = ShearWarp(config.image_size, config.hidden, config.max_shear)
        weights = {
            k[len(WARP_PREFIX) :]: v for k, v in tensors.items() if k.startswith(WARP_PREFIX)
        }
        expected = {k: tuple(v.shape) for k, v in warp.state_dict().items()}
        problems = tensor_problems(weights, expected)
        if problems:
            raise CorruptFileError(f"{source}: warp weights: " + "; ".join(problems))
        warp.load_state_dict(weights)
        method = get_substitution(config.substitution)
        state = {k: v for k, v in tensors.items() if not k.startswith(WARP_PREFIX)}
        model = cls(config, device=device)
        model.warp_ = warp.to(device).eval()
        model.substitution_ = method.from_state(
            state, metadata.get("substitution_state") or {}, config=config, source=source
        )
        model.classes_ = np.asarray(metadata.get("classes", []))
        model.history_ = list(metadata.get("history", []))
        return model

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str = "cpu") -> WarpAnonymizer:
        """Read a model written by :meth:`save`, checking it against its declared architecture."""
        tensors, metadata = load_model_file(path, format=WARP_FILE)
        return cls._from_contents(tensors, metadata, source=str(path), device=device)
