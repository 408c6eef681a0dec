"""The identity-swap anonymizer: every face rendered as one target identity, its expression kept.

A Fader-network-style conditional autoencoder (:mod:`~imgprivacy.anonymizer.swap_networks`,
trained by :mod:`~imgprivacy.anonymizer.swap_trainer`): the encoder's code z is made
identity-free by the eq. (12) game against an identity adversary, the decoder renders z as a
given identity. :meth:`SwapAnonymizer.transform` releases ``decoder(z, target)`` or, with
``substitution="code-nearest"``, the target's real training image whose code is nearest to z.
Only identity labels are used in training; one trained model serves every target
(:meth:`SwapAnonymizer.retarget`).

Examples
--------
>>> rng = np.random.default_rng(0)
>>> images = rng.integers(0, 256, size=(24, 12, 12), dtype=np.uint8)
>>> config = SwapConfig(image_size=12, channels=2, code_dim=4, adversary_hidden=8, epochs=1)
>>> model = SwapAnonymizer(config).fit(images, np.repeat([0, 1, 2], 8))
>>> model.transform(images[:2]).shape, model.retarget(2).transform(images[:2]).dtype
((2, 12, 12), dtype('uint8'))
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from imgprivacy.anonymizer.losses import empirical_prior
from imgprivacy.anonymizer.model import as_pixels, encode_labels
from imgprivacy.anonymizer.persistence import (
    SWAP_FILE,
    config_from_metadata,
    load_model_file,
    save_model_file,
)
from imgprivacy.anonymizer.substitution import NoSubstitution, get_substitution
from imgprivacy.anonymizer.substitution.base import SubstitutionMethod, to_uint8
from imgprivacy.anonymizer.swap_config import SwapConfig
from imgprivacy.anonymizer.swap_trainer import SwapTrainer, build_swap_networks
from imgprivacy.anonymizer.trainer import AdversarialHistory
from imgprivacy.errors import CorruptFileError, InvalidInputError, NotFittedError
from imgprivacy.safetensors_io import tensor_problems

SWAP_FORMAT = SWAP_FILE.name
SWAP_FORMAT_VERSION = SWAP_FILE.version


class SwapAnonymizer:
    """Renders every face as ``config.target_identity`` while keeping the rest (expression).

    Attributes
    ----------
    encoder_, decoder_ : torch.nn.Module
        The trained encoder (pixels -> code) and conditional decoder ((code, identity) -> logits).
    substitution_ : SubstitutionMethod
        What :meth:`transform` releases for the current target.
    classes_ : numpy.ndarray
        The identities seen by :meth:`fit`; ``target_identity`` indexes this array.
    history_ : AdversarialHistory
        One record per training epoch.
    """

    def __init__(self, config: SwapConfig | None = None, *, device: str = "cpu"):
        self.config = config or SwapConfig()
        self.device = device

    def fit(
        self,
        images,
        private_labels,
        *,
        on_epoch: Callable[[SwapTrainer, dict], None] | None = None,
    ) -> SwapAnonymizer:
        """Train on grey images (N, S, S) and their identities (N,); returns ``self``."""
        x = as_pixels(images, image_size=self.config.image_size, what="training images")
        classes, identity = encode_labels(private_labels, len(x))
        self.config = self.config.replace(n_private=len(classes))
        self._check_target(self.config.target_identity)
        trainer = SwapTrainer(
            self.config, prior=empirical_prior(identity, len(classes)), device=self.device
        )
        trainer.fit(x, identity, on_epoch=on_epoch)
        self.classes_ = classes
        self.history_ = trainer.history
        self.encoder_ = trainer.nets.encoder.eval()
        self.decoder_ = trainer.nets.decoder.eval()
        self._train = (x, identity.numpy())
        self.substitution_ = self._fit_substitution(self.config)
        return self

    def _check_target(self, target: int) -> None:
        if not 0 <= target < self.config.n_private:
            raise InvalidInputError(
                f"Expected target_identity among the identity indices 0..{self.config.n_private - 1}"
                f", got {target!r}."
            )

    def _check_fitted(self) -> None:
        if not hasattr(self, "encoder_"):
            raise NotFittedError(
                "This SwapAnonymizer is not fitted yet. Call fit(images, identities) or load a "
                "saved one with SwapAnonymizer.load(path)."
            )

    def _fit_substitution(self, config: SwapConfig) -> SubstitutionMethod:
        method = get_substitution(config.substitution).from_config(config)
        x, identity = self._train
        return method.fit(x, identity, autoencode=self._encode)

    def retarget(self, target_identity: int) -> SwapAnonymizer:
        """A copy that releases ``target_identity`` (no retraining; needs the training images,
        so only on a model fitted in this session)."""
        self._check_fitted()
        self._check_target(target_identity)
        model = copy.copy(self)
        model.config = self.config.replace(target_identity=target_identity)
        if not hasattr(self, "_train"):
            if self.config.substitution != "none":
                raise InvalidInputError(
                    "Retargeting a loaded model with substitution='code-nearest' needs the "
                    "training images: fit a new model with target_identity set instead."
                )
            return model
        model.substitution_ = self._fit_substitution(model.config)
        return model

    def _batched(self, fn, x: torch.Tensor, batch_size: int) -> torch.Tensor:
        out = []
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                out.append(fn(x[start : start + batch_size].to(self.device)).cpu())
        return torch.cat(out)

    def _encode(self, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
        return self._batched(self.encoder_, x, batch_size)

    def encode(self, images, *, batch_size: int = 2048) -> np.ndarray:
        """The identity-free codes (N, code_dim) of grey images (N, S, S)."""
        self._check_fitted()
        x = as_pixels(images, image_size=self.config.image_size)
        return self._encode(x, batch_size).numpy()

    def transform(self, images, *, batch_size: int = 2048, substitution: bool = True) -> np.ndarray:
        """Release grey images (N, S, S) as uint8 (N, S, S) rendered as the target identity.

        ``substitution=False`` returns ``decoder(z, target)`` even when the config substitutes.
        """
        self._check_fitted()
        x = as_pixels(images, image_size=self.config.image_size)
        codes = self._encode(x, batch_size)
        target = self.config.target_identity
        method = self.substitution_ if substitution else NoSubstitution()
        if isinstance(method, NoSubstitution):

            def render(z: torch.Tensor) -> torch.Tensor:
                ids = torch.full((len(z),), target, dtype=torch.long, device=z.device)
                return torch.sigmoid(self.decoder_(z, ids))

            released = to_uint8(self._batched(render, codes, batch_size))
        else:
            released = method.transform(codes, batch_size=batch_size)
        side = self.config.image_size
        return released.numpy().reshape(len(released), side, side)

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the model (safetensors: weights, substitution state; JSON config) atomically."""
        self._check_fitted()
        tensors = {f"encoder.{k}": v for k, v in self.encoder_.state_dict().items()}
        tensors |= {f"decoder.{k}": v for k, v in self.decoder_.state_dict().items()}
        sub_tensors, sub_metadata = self.substitution_.state()
        tensors |= sub_tensors
        metadata = {
            "config": self.config.to_dict(),
            "classes": [c.item() if hasattr(c, "item") else c for c in self.classes_],
            "substitution_state": sub_metadata,
            "history": self.history_.epochs,
        }
        return save_model_file(path, format=SWAP_FILE, tensors=tensors, metadata=metadata)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str = "cpu") -> SwapAnonymizer:
        """Read a model written by :meth:`save`, checking every tensor against its config."""
        source = str(path)
        tensors, metadata = load_model_file(path, format=SWAP_FILE)
        config = config_from_metadata(SwapConfig, metadata, source=source)
        with torch.device("meta"):
            nets = build_swap_networks(config)
        expected = {
            f"{part}.{k}": tuple(v.shape)
            for part in ("encoder", "decoder")
            for k, v in getattr(nets, part).state_dict().items()
        }
        method = get_substitution(config.substitution)
        weights = {k: v for k, v in tensors.items() if k not in method.tensor_names}
        problems = tensor_problems(weights, expected, dtype=None)  # BatchNorm counts are int64
        if problems:
            raise CorruptFileError([f"{source}: {p}" for p in problems])
        model = cls(config, device=device)
        real = build_swap_networks(config)
        for part in ("encoder", "decoder"):
            prefix = f"{part}."
            state = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
            getattr(real, part).load_state_dict(state)
        model.encoder_ = real.encoder.to(device).eval()
        model.decoder_ = real.decoder.to(device).eval()
        sub = {k: v for k, v in tensors.items() if k in method.tensor_names}
        model.substitution_ = method.from_state(
            sub, metadata.get("substitution_state") or {}, config=config, source=source
        )
        model.classes_ = np.asarray(metadata["classes"])
        model.history_ = AdversarialHistory(list(metadata.get("history", [])))
        return model
