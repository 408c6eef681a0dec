"""The code-match anonymizer: each face replaced by the target's real image with the same expression.

1. An encoder learns a code in which pose, light and noise do not count (contrastive training
   on nuisance-augmented views, :mod:`~imgprivacy.anonymizer.code_match_trainer`); no label.
2. The identity is removed from the code with the identity labels: every code is standardised
   with its identity's training mean and spread (``code_means_``, ``code_stds_``) or, with
   ``whiten=True``, centred and whitened with its identity's full training covariance
   (:func:`identity_whiteners`). What is left is where a face sits *within its own identity's*
   cloud - its expression.
3. Each image is released as the target identity's training image whose standardised code is
   nearest (:class:`~imgprivacy.anonymizer.substitution.code_nearest.CodeNearestSubstitution`):
   a real image of the target, pixel for pixel.

The identity of an image to release is given to :meth:`CodeMatchAnonymizer.transform` or, when it
is not, read from its code by a linear classifier fitted on the training codes
(``identity_weights_``). Expression labels are never used.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> images = rng.integers(0, 256, size=(24, 12, 12), dtype=np.uint8)
>>> config = CodeMatchConfig(image_size=12, channels=2, code_dim=4, projection_dim=4,
...     epochs=1, batch_size=8)
>>> model = CodeMatchAnonymizer(config).fit(images, np.repeat([0, 1, 2], 8))
>>> released = model.transform(images[:3])
>>> released.shape, bool((released[:, None] == images[:8][None]).all((2, 3)).any(1).all())
((3, 12, 12), True)
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from imgprivacy.anonymizer.code_match_trainer import (
    CodeMatchConfig,
    CodeMatchTrainer,
    build_code_match_networks,
)
from imgprivacy.anonymizer.losses import empirical_prior
from imgprivacy.anonymizer.model import as_pixels, encode_labels
from imgprivacy.anonymizer.persistence import (
    CODE_MATCH_FILE,
    config_from_metadata,
    load_model_file,
    save_model_file,
)
from imgprivacy.anonymizer.substitution.code_nearest import CodeNearestSubstitution
from imgprivacy.anonymizer.trainer import AdversarialHistory
from imgprivacy.errors import CorruptFileError, InvalidInputError, NotFittedError
from imgprivacy.safetensors_io import tensor_problems

CODE_MATCH_FORMAT = CODE_MATCH_FILE.name
STATS = ("code_means", "code_stds", "identity_weights", "identity_bias")
WHITENING_RIDGE = 1e-2  # the default CodeMatchConfig.whiten_ridge


def identity_whiteners(
    codes: torch.Tensor, identity: torch.Tensor, n_classes: int, *, ridge: float = WHITENING_RIDGE
) -> torch.Tensor:
    """Every identity's ZCA whitening matrix (K, C, C) of its centred codes.

    ``(codes - mean_k) @ W_k`` has the identity matrix as covariance within identity k, so
    neither its spread nor its correlations tell the identities apart; ZCA is the whitening
    that rotates the codes least, which keeps the identities' axes aligned.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> codes = torch.randn(400, 3, generator=g) @ torch.tensor([[2.0, 0, 0], [1, 1, 0], [0, 0, 3]])
    >>> w = identity_whiteners(codes, torch.zeros(400, dtype=torch.long), 1, ridge=0.0)
    >>> white = (codes - codes.mean(0)) @ w[0]
    >>> bool(torch.allclose(white.T @ white / 400, torch.eye(3), atol=1e-4))
    True
    """
    whiteners = []
    for k in range(n_classes):
        x = codes[identity == k].double()
        x = x - x.mean(0)
        cov = x.T @ x / max(len(x), 1) + ridge * torch.eye(codes.shape[1], dtype=torch.float64)
        values, vectors = torch.linalg.eigh(cov)
        values = values.clamp_min(1e-12)
        whiteners.append(vectors @ torch.diag(values.rsqrt()) @ vectors.T)
    return torch.stack(whiteners).float()


def fit_linear_classifier(
    codes: torch.Tensor, labels: torch.Tensor, n_classes: int, *, steps: int = 300
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax regression (full-batch Adam, small weight decay): weights (K, C), bias (K,)."""
    mean, std = codes.mean(0), codes.std(0) + 1e-6
    x = (codes - mean) / std
    weights = torch.zeros(n_classes, codes.shape[1], requires_grad=True)
    bias = torch.zeros(n_classes, requires_grad=True)
    optimizer = torch.optim.Adam([weights, bias], lr=0.05, weight_decay=1e-4)
    for _ in range(steps):
        loss = F.cross_entropy(x @ weights.T + bias, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    # fold the standardisation into the weights: logits = codes @ W'.T + b'
    folded = (weights / std).detach()
    return folded, (bias - (folded * mean).sum(1)).detach()


class CodeMatchAnonymizer:
    """Releases the target identity's training image with the nearest identity-free code.

    Attributes
    ----------
    encoder_ : torch.nn.Module
        Pixels (B, S*S) -> codes (B, code_dim).
    code_means_, code_stds_ : torch.Tensor
        (K, code_dim) every identity's training mean and spread of the codes.
    identity_weights_, identity_bias_ : torch.Tensor
        The linear identity classifier on codes, (K, code_dim) and (K,).
    substitution_ : CodeNearestSubstitution
        The target's training images and their standardised codes.
    classes_ : numpy.ndarray
        The identities seen by :meth:`fit`; ``target_identity`` indexes this array.
    """

    def __init__(self, config: CodeMatchConfig | None = None, *, device: str = "cpu"):
        self.config = config or CodeMatchConfig()
        self.device = device

    def fit(
        self,
        images,
        private_labels,
        *,
        on_epoch: Callable[[CodeMatchTrainer, dict], None] | None = None,
    ) -> CodeMatchAnonymizer:
        """Train on grey images (N, S, S) and their identities (N,); returns ``self``."""
        x = as_pixels(images, image_size=self.config.image_size, what="training images")
        classes, identity = encode_labels(private_labels, len(x))
        self.config = self.config.replace(n_private=len(classes))
        self._check_target(self.config.target_identity)
        prior = empirical_prior(identity, len(classes))
        trainer = CodeMatchTrainer(self.config, prior=prior, device=self.device)
        trainer.fit(x, identity, on_epoch=on_epoch)
        self.classes_ = classes
        self.history_ = trainer.history
        self.encoder_ = trainer.nets.encoder.eval()
        codes = self._encode(x)
        k = len(classes)
        self.code_means_ = torch.stack([codes[identity == c].mean(0) for c in range(k)])
        self.code_stds_ = torch.stack(
            [codes[identity == c].std(0, correction=0) + 1e-3 for c in range(k)]
        )
        self.identity_weights_, self.identity_bias_ = fit_linear_classifier(codes, identity, k)
        self._train = (x, identity.numpy())
        self.substitution_ = self._fit_substitution(self.config.target_identity)
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
                "This CodeMatchAnonymizer is not fitted yet. Call fit(images, identities) or load "
                "a saved one with CodeMatchAnonymizer.load(path)."
            )

    def _encode(self, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
        out = []
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                out.append(self.encoder_(x[start : start + batch_size].to(self.device)).cpu())
        return torch.cat(out)

    def _standardised(self, codes: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        return (codes - self.code_means_[identity]) / self.code_stds_[identity]

    def _fit_substitution(self, target: int) -> CodeNearestSubstitution:
        x, identity = self._train
        method = CodeNearestSubstitution(target_identity=target)
        if self.config.whiten:  # queries are centred codes; the substitution whitens them
            codes, ids = self._encode(x), torch.as_tensor(identity)
            whiteners = identity_whiteners(
                codes, ids, self.config.n_private, ridge=self.config.whiten_ridge
            )

            def whitened(pixels: torch.Tensor) -> torch.Tensor:
                return (self._encode(pixels) - self.code_means_[target]) @ whiteners[target]

            return method.fit(x, identity, autoencode=whitened, query_maps=whiteners)

        def target_codes(pixels: torch.Tensor) -> torch.Tensor:
            ids = torch.full((len(pixels),), target, dtype=torch.long)
            return self._standardised(self._encode(pixels), ids)

        return method.fit(x, identity, autoencode=target_codes)

    def retarget(self, target_identity: int) -> CodeMatchAnonymizer:
        """A copy that releases ``target_identity`` (no retraining; a model fitted in this
        session, since the target's training images are needed)."""
        self._check_fitted()
        self._check_target(target_identity)
        if not hasattr(self, "_train"):
            raise InvalidInputError(
                "Retargeting needs the training images, which a loaded model does not keep: fit "
                "a model with target_identity set instead."
            )
        model = copy.copy(self)
        model.config = self.config.replace(target_identity=target_identity)
        model.substitution_ = self._fit_substitution(target_identity)
        return model

    def predict_identity(self, images) -> np.ndarray:
        """Identity indices (N,) read from the codes by the fitted linear classifier."""
        self._check_fitted()
        codes = self._encode(as_pixels(images, image_size=self.config.image_size))
        return (codes @ self.identity_weights_.T + self.identity_bias_).argmax(1).numpy()

    def transform(self, images, *, identities=None, batch_size: int = 2048) -> np.ndarray:
        """Release grey images (N, S, S) as uint8 (N, S, S) training images of the target.

        ``identities`` (N,) are the images' identity indices (positions in ``classes_``); when
        omitted they are read from the codes.
        """
        self._check_fitted()
        x = as_pixels(images, image_size=self.config.image_size)
        codes = self._encode(x, batch_size)
        if identities is None:
            ids = (codes @ self.identity_weights_.T + self.identity_bias_).argmax(1)
        else:
            ids = torch.as_tensor(np.asarray(identities), dtype=torch.long)
            if ids.shape != (len(x),) or ids.min() < 0 or ids.max() >= self.config.n_private:
                raise InvalidInputError(
                    f"Expected identities as {len(x)} indices in 0..{self.config.n_private - 1}, "
                    f"got shape {tuple(ids.shape)} with values {ids.min()}..{ids.max()}."
                )
        if self.config.whiten:
            released = self.substitution_.transform(codes - self.code_means_[ids], groups=ids)
        else:
            released = self.substitution_.transform(self._standardised(codes, ids))
        side = self.config.image_size
        return released.numpy().reshape(len(released), side, side)

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the model (safetensors: encoder, statistics, references; JSON config)."""
        self._check_fitted()
        tensors = {f"encoder.{k}": v for k, v in self.encoder_.state_dict().items()}
        tensors |= {name: getattr(self, f"{name}_") for name in STATS}
        tensors |= self.substitution_.state()[0]
        metadata = {
            "config": self.config.to_dict(),
            "classes": [c.item() if hasattr(c, "item") else c for c in self.classes_],
            "history": self.history_.epochs,
        }
        return save_model_file(path, format=CODE_MATCH_FILE, tensors=tensors, metadata=metadata)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str = "cpu") -> CodeMatchAnonymizer:
        """Read a model written by :meth:`save`, checking every tensor against its config."""
        source = str(path)
        tensors, metadata = load_model_file(path, format=CODE_MATCH_FILE)
        config = config_from_metadata(CodeMatchConfig, metadata, source=source)
        encoder = build_code_match_networks(config).encoder
        k, c = config.n_private, config.code_dim
        expected = {f"encoder.{n}": tuple(v.shape) for n, v in encoder.state_dict().items()}
        expected |= {"code_means": (k, c), "code_stds": (k, c), "identity_weights": (k, c)}
        expected["identity_bias"] = (k,)
        names = CodeNearestSubstitution.tensor_names
        weights = {n: v for n, v in tensors.items() if n not in names}
        problems = tensor_problems(weights, expected, dtype=None)  # BatchNorm counts are int64
        if problems:
            raise CorruptFileError([f"{source}: {p}" for p in problems])
        encoder.load_state_dict(
            {n[len("encoder.") :]: v for n, v in tensors.items() if n.startswith("encoder.")}
        )
        model = cls(config, device=device)
        model.encoder_ = encoder.to(device).eval()
        for name in STATS:
            setattr(model, f"{name}_", tensors[name])
        model.substitution_ = CodeNearestSubstitution.from_state(
            {n: tensors[n] for n in names if n in tensors}, {}, config=config, source=source
        )
        model.classes_ = np.asarray(metadata["classes"])
        model.history_ = AdversarialHistory(list(metadata.get("history", [])))
        return model
