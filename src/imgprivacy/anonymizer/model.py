"""The user-facing anonymizer: ``fit`` on labelled images, ``transform`` new ones, save / load.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> images = rng.integers(0, 256, size=(64, 8, 8), dtype=np.uint8)
>>> writers = np.repeat(np.arange(4), 16)
>>> config = AnonymizerConfig(image_size=8, ae_hidden=16, code_dim=4, disc_hidden=8,
...     private_hidden=8, pretrain_epochs=1, disc_pretrain_epochs=1, adversarial_epochs=1)
>>> anonymizer = Anonymizer(config).fit(images, writers)
>>> anonymizer.transform(images[:3]).shape
(3, 8, 8)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from imgprivacy.anonymizer.config import AnonymizerConfig
from imgprivacy.anonymizer.losses import empirical_prior
from imgprivacy.anonymizer.networks import build_autoencoder
from imgprivacy.anonymizer.persistence import (
    MODEL_FILE,
    load_checkpoint,
    load_model_file,
    model_contents,
    model_file_bytes,
    model_file_contents,
    save_checkpoint,
    save_model_file,
)
from imgprivacy.anonymizer.substitution import NoSubstitution, get_substitution
from imgprivacy.anonymizer.target_identity import TargetIdentitySampler
from imgprivacy.anonymizer.trainer import AdversarialHistory, AnonymizerTrainer
from imgprivacy.errors import InvalidInputError, NotFittedError
from imgprivacy.progress import ProgressFactory, resolve

logger = logging.getLogger(__name__)


def as_pixels(
    images: np.ndarray | torch.Tensor, *, image_size: int, what: str = "images"
) -> torch.Tensor:
    """Validate (N, S, S) grey images (uint8 0-255 or float 0-1) into a float (N, S*S) tensor.

    Raises
    ------
    InvalidInputError
        For a wrong shape (with the fix), colour images, non-finite or out-of-range values.
    """
    array = (
        images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    )
    expected = f"(N, {image_size}, {image_size})"
    if array.ndim == 4 and array.shape[-1] in (3, 4):
        raise InvalidInputError(
            f"Expected grey {what} of shape {expected}, got colour images {array.shape}. "
            "Convert them to grey (mode 'L') first, e.g. load_image_folder(..., mode='L')."
        )
    if array.ndim == 2 and array.shape == (image_size, image_size):
        raise InvalidInputError(
            f"Expected {what} of shape {expected}, got one image {array.shape}. "
            "Add the batch axis with x[None]."
        )
    if array.ndim != 3 or array.shape[1:] != (image_size, image_size):
        raise InvalidInputError(
            f"Expected {what} of shape {expected}, got {array.shape}. "
            f"Resize them to {image_size}x{image_size} (load_image_folder(..., size=...))."
        )
    if len(array) == 0:
        raise InvalidInputError(f"Expected at least one image in {what}, got none.")
    if array.dtype == np.uint8:
        pixels = array.astype(np.float32) / 255.0
    else:
        pixels = array.astype(np.float32)
        if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 1:
            raise InvalidInputError(
                f"Expected float {what} in [0, 1] (or uint8 in [0, 255]), got values in "
                f"[{np.nanmin(pixels):.3g}, {np.nanmax(pixels):.3g}]."
            )
    return torch.from_numpy(pixels.reshape(len(pixels), -1))


def encode_labels(labels, n_images: int) -> tuple[np.ndarray, torch.Tensor]:
    """(sorted classes, labels as indices 0..K-1); at least two classes are needed."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n_images:
        raise InvalidInputError(
            f"Expected one private label per image, shape ({n_images},), got {labels.shape}."
        )
    classes, index = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise InvalidInputError(
            f"Expected private labels with at least 2 classes, got only {classes.tolist()}: "
            "with a single class there is nothing to hide."
        )
    return classes, torch.as_tensor(index, dtype=torch.long)


class Anonymizer:
    """Removes a private label (e.g. the writer) from images while keeping the rest.

    Parameters
    ----------
    config
        Hyper-parameters; ``n_private`` is set from the labels given to :meth:`fit`.
    device
        Torch device for training and anonymization.

    Attributes
    ----------
    autoencoder_ : torch.nn.Module
        The trained autoencoder (outputs are logits; their sigmoid is the image).
    substitution_ : SubstitutionMethod
        The fitted substitution ``config.substitution`` names (what :meth:`transform` releases).
    classes_ : numpy.ndarray
        The private classes seen by :meth:`fit`, in label-index order.
    history_ : AdversarialHistory
        One record per training epoch.
    """

    def __init__(self, config: AnonymizerConfig | None = None, *, device: str = "cpu"):
        self.config = config or AnonymizerConfig()
        self.device = device

    def fit(
        self,
        images: np.ndarray | torch.Tensor,
        private_labels,
        *,
        checkpoint: str | os.PathLike | None = None,
        resume: bool = False,
        progress: ProgressFactory | None = None,
        on_epoch: Callable[[AnonymizerTrainer, dict], None] | None = None,
    ) -> Anonymizer:
        """Train on images (N, S, S) and their private labels (N,); returns ``self``.

        With ``checkpoint``, the full training state is written there atomically after every
        epoch; with ``resume=True`` and an existing checkpoint, training continues from it (the
        config may change training fields such as ``lam`` but not the architecture).
        """
        x = as_pixels(images, image_size=self.config.image_size, what="training images")
        classes, z = encode_labels(private_labels, len(x))
        self.config = self.config.replace(n_private=len(classes))
        target = self.config.target_identity
        sampler = None
        if target is not None:
            if target not in classes.tolist():
                raise InvalidInputError(
                    f"Expected target_identity to be one of the private labels "
                    f"{classes.tolist()}, got {target!r}."
                )
            target_class = int(np.flatnonzero(classes == target)[0])
            sampler = TargetIdentitySampler(
                x,
                z,
                target_identity=target_class,
                batch_size=self.config.batch_size,
                seed=self.config.seed,
                device=self.device,
            )
        if resume and checkpoint is not None and Path(checkpoint).is_file():
            trainer = load_checkpoint(checkpoint, config=self.config, device=self.device)
            logger.info("resuming from %s after epoch %d", checkpoint, trainer.epoch)
        else:
            prior = empirical_prior(z, len(classes))
            trainer = AnonymizerTrainer(self.config, prior=prior, device=self.device)
        advance = resolve(progress)("training anonymizer", self.config.total_epochs)
        for _ in range(trainer.epoch):
            advance("resumed")

        def after_epoch(run: AnonymizerTrainer, record: dict) -> None:
            if checkpoint is not None:
                save_checkpoint(run, checkpoint)
            status = f"{record['phase']} " + " ".join(
                f"{k}={record[k]:.3f}"
                for k in ("reconstruction_bce", "ae_gap", "private_accuracy")
                if k in record
            )
            advance(status)
            if on_epoch is not None:
                on_epoch(run, record)

        trainer.fit(x, z, real_sampler=sampler, on_epoch=after_epoch)
        self.classes_ = classes
        self.history_ = trainer.history
        self.autoencoder_ = trainer.nets.autoencoder.eval()
        method = get_substitution(self.config.substitution).from_config(self.config)
        self.substitution_ = method.fit(x, np.asarray(private_labels), autoencode=self._autoencode)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "autoencoder_"):
            raise NotFittedError(
                "This Anonymizer is not fitted yet. Call fit(images, private_labels) or load a "
                "saved one with Anonymizer.load(path)."
            )

    def _autoencode(self, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                batch = x[start : start + batch_size].to(self.device)
                outputs.append(torch.sigmoid(self.autoencoder_(batch)).cpu())
        return torch.cat(outputs)

    def transform(
        self,
        images: np.ndarray | torch.Tensor,
        *,
        batch_size: int = 2048,
        substitution: bool = True,
    ) -> np.ndarray:
        """Anonymize grey images (N, S, S) into uint8 (N, S, S), in batches.

        With ``substitution`` each autoencoded image is then replaced by the fitted
        ``substitution_`` (the method ``config.substitution`` names, see
        :mod:`~imgprivacy.anonymizer.substitution`); ``False`` returns the autoencoder's outputs
        alone (for analysis).
        """
        self._check_fitted()
        x = as_pixels(images, image_size=self.config.image_size)
        outputs = self._autoencode(x, batch_size)
        method = self.substitution_ if substitution else NoSubstitution()
        released = method.transform(outputs, batch_size=batch_size).numpy()
        side = self.config.image_size
        return released.reshape(len(released), side, side)

    def fit_transform(
        self,
        images: np.ndarray | torch.Tensor,
        private_labels,
        *,
        batch_size: int = 2048,
        **fit_params,
    ) -> np.ndarray:
        """:meth:`fit` on ``images`` and their private labels, then :meth:`transform` them.

        ``fit_params`` go to :meth:`fit` (``checkpoint``, ``resume``, ``progress``,
        ``on_epoch``); the result is the same as ``fit(...)`` followed by ``transform(images)``:
        uint8 images (N, S, S).
        """
        return self.fit(images, private_labels, **fit_params).transform(
            images, batch_size=batch_size
        )

    # -- persistence ----------------------------------------------------------------------------
    def _file_contents(self) -> tuple[dict[str, torch.Tensor], dict]:
        self._check_fitted()
        weights = {k: v.detach().cpu() for k, v in self.autoencoder_.state_dict().items()}
        return model_file_contents(
            config=self.config,
            autoencoder=weights,
            substitution=self.substitution_,
            classes=[c.item() if hasattr(c, "item") else c for c in self.classes_],
            history=self.history_.epochs,
        )

    def to_bytes(self) -> bytes:
        tensors, metadata = self._file_contents()
        return model_file_bytes(format=MODEL_FILE, tensors=tensors, metadata=metadata)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model (safetensors + JSON config) atomically."""
        tensors, metadata = self._file_contents()
        return save_model_file(path, format=MODEL_FILE, tensors=tensors, metadata=metadata)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str = "cpu") -> Anonymizer:
        """Read a model written by :meth:`save`, checking it against its declared architecture."""
        tensors, metadata = load_model_file(path, format=MODEL_FILE)
        contents = model_contents(tensors, metadata, source=str(path))
        model = cls(contents.config, device=device)
        net = build_autoencoder(contents.config)
        net.load_state_dict(contents.autoencoder)
        model.autoencoder_ = net.to(device).eval()
        model.substitution_ = contents.substitution
        model.classes_ = np.asarray(contents.classes)
        model.history_ = AdversarialHistory(contents.history)
        return model
